package cache

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// item is one cached reply with what is needed to rebuild it for another
// query of the same key.
type item struct {
	name          string
	qtype, qclass uint16
	rcode         int
	aa, ad, ra    bool
	answer, ns    []dns.RR
	extra         []dns.RR // without OPT (hop by hop)

	origTTL uint32
	stored  time.Time

	// prefetch popularity: hits seen with no gap of the prefetch duration.
	mu   sync.Mutex
	last time.Time
	hits int

	refreshing atomic.Bool
	retryAfter atomic.Pointer[time.Time]
}

func newItem(m *dns.Msg, now time.Time, d time.Duration) *item {
	it := &item{rcode: m.Rcode, aa: m.Authoritative, ad: m.AuthenticatedData, ra: m.RecursionAvailable,
		answer: m.Answer, ns: m.Ns, origTTL: uint32(d.Seconds()), stored: now, last: now}
	if len(m.Question) > 0 {
		it.name, it.qtype, it.qclass = m.Question[0].Name, m.Question[0].Qtype, m.Question[0].Qclass
	}
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			it.extra = append(it.extra, rr)
		}
	}
	return it
}

// ttl is the remaining lifetime in seconds; <= 0 means expired.
func (it *item) ttl(now time.Time) int {
	return int(it.origTTL) - int(now.Sub(it.stored).Seconds())
}

func (it *item) matches(name string, qtype, qclass uint16) bool {
	return it.qtype == qtype && it.qclass == qclass && strings.EqualFold(it.name, name)
}

// toMsg builds the reply to r with every record's TTL set to ttl.
func (it *item) toMsg(r *dns.Msg, ttl uint32, do, ad bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = it.aa
	m.AuthenticatedData = it.ad && (do || ad)
	m.RecursionAvailable = it.ra
	m.Rcode = it.rcode
	m.Answer = withTTL(it.answer, ttl, true)
	m.Ns = withTTL(it.ns, ttl, true)
	m.Extra = withTTL(it.extra, ttl, true)
	return m
}

// update counts one hit for prefetch and returns the hits so far: a gap of
// d or more since the last hit restarts the count.
func (it *item) update(d time.Duration, now time.Time) int {
	it.mu.Lock()
	defer it.mu.Unlock()
	if it.last.Before(now.Add(-d)) {
		it.hits = 1
	} else {
		it.hits++
	}
	it.last = now
	return it.hits
}

func (it *item) popularity() int {
	it.mu.Lock()
	defer it.mu.Unlock()
	return it.hits
}

func (it *item) setPopularity(now time.Time, hits int) {
	it.mu.Lock()
	it.last, it.hits = now, hits
	it.mu.Unlock()
}

// beginRefresh claims the single in-flight refresh of this item.
func (it *item) beginRefresh(now time.Time, recheck time.Duration) bool {
	if recheck > 0 {
		if t := it.retryAfter.Load(); t != nil && now.Before(*t) {
			return false
		}
	}
	return it.refreshing.CompareAndSwap(false, true)
}

func (it *item) endRefresh(now time.Time, recheck time.Duration, ok bool) {
	if recheck > 0 && !ok {
		t := now.Add(recheck)
		it.retryAfter.Store(&t)
	} else {
		it.retryAfter.Store(nil)
	}
	it.refreshing.Store(false)
}

// withTTL returns rrs without OPT, every TTL set to ttl; copy makes new RRs.
func withTTL(rrs []dns.RR, ttl uint32, copyRRs bool) []dns.RR {
	out := make([]dns.RR, 0, len(rrs))
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT {
			continue
		}
		if copyRRs {
			rr = dns.Copy(rr)
		}
		rr.Header().Ttl = ttl
		out = append(out, rr)
	}
	return out
}
