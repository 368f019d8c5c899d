package cache

import (
	"fmt"
	"net"
	"time"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

// writer sits between the rest of the chain and the client: it stores what
// is written (with TTLs capped) and passes it on unless prefetching.
type writer struct {
	dns.ResponseWriter
	c        *Cache
	req      *dns.Msg
	key      uint64
	qname    string
	do, ad   bool
	server   string
	prefetch bool // cache only, the client is not waiting
	verify   bool // serve_stale verify/refresh: only NOERROR/NXDOMAIN replace the entry

	last      *dns.Msg
	item      *item
	refreshed bool
}

var prefetchAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}

// RemoteAddr is TCP for prefetches, so upstream replies are not truncated.
func (w *writer) RemoteAddr() net.Addr {
	if w.ResponseWriter == nil {
		return prefetchAddr
	}
	return w.ResponseWriter.RemoteAddr()
}

// LocalAddr implements dns.ResponseWriter for writers without a client.
func (w *writer) LocalAddr() net.Addr {
	if w.ResponseWriter == nil {
		return prefetchAddr
	}
	return w.ResponseWriter.LocalAddr()
}

// WriteMsg caches res and sends it on.
func (w *writer) WriteMsg(res *dns.Msg) error {
	if res == nil {
		return fmt.Errorf("cache: nil reply")
	}
	if w.verify {
		w.refreshed = false
		if res.Truncated || !matchesQuery(w.req, res) {
			return nil
		}
		k := classify(res)
		if k == kindOtherError || k == kindMeta || k == kindUpdate ||
			(res.Rcode != dns.RcodeSuccess && res.Rcode != dns.RcodeNameError) {
			return nil
		}
		w.refreshed = true
	}
	res = res.Copy()
	w.item = nil
	k := classify(res)
	cfg := &w.c.cfg
	var d time.Duration
	switch k {
	case kindNameError, kindNoData:
		d = min(max(minimalTTL(res, k, cfg.DenialTTL), cfg.DenialMinTTL), cfg.DenialTTL)
	case kindServerError:
		d = cfg.ServfailTTL
	default:
		d = min(max(minimalTTL(res, k, cfg.SuccessTTL), cfg.SuccessMinTTL), cfg.SuccessTTL)
	}
	ttl := uint32(d.Seconds())
	res.Answer = withTTL(res.Answer, ttl, false)
	res.Ns = withTTL(res.Ns, ttl, false)
	opt := res.IsEdns0()
	res.Extra = withTTL(res.Extra, ttl, false)
	if d > 0 && cacheable(res, k) {
		if matchesQuery(w.req, res) {
			w.store(res, k, d)
		} else {
			w.c.Metrics.drop(w.server, w.c.zonesLabel())
		}
	}
	if opt != nil {
		res.Extra = append(res.Extra, opt) // hop by hop: not stored, but passed on
	}
	if !w.do && !w.ad {
		res.AuthenticatedData = false
	}
	w.last = res
	if w.prefetch || w.ResponseWriter == nil {
		return nil
	}
	return w.ResponseWriter.WriteMsg(res)
}

// Write is for callers that pack themselves; such replies are not cached.
func (w *writer) Write(b []byte) (int, error) {
	if w.prefetch || w.ResponseWriter == nil {
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func cacheable(m *dns.Msg, k kind) bool {
	switch {
	case m.Truncated, len(m.Question) == 0:
		return false
	case k == kindOtherError || k == kindMeta || k == kindUpdate:
		return false
	case k == kindNameError && !hasSOA(m):
		return false
	case k == kindNoError && !hasSOA(m) && len(m.Answer) > 0 && !answersQuestion(m):
		return false
	}
	return true
}

func (w *writer) store(m *dns.Msg, k kind, d time.Duration) {
	c := w.c
	name := m.Question[0].Name
	now := c.now()
	switch k {
	case kindNoError, kindDelegation:
		if plugutil.Zones(c.cfg.DisableSuccess).Contains(plugutil.Normalize(name)) {
			return
		}
		it := newItem(m, now, d)
		if c.pos.Add(w.key, it) {
			c.Metrics.evict(w.server, "success", c.zonesLabel())
		}
		if w.prefetch {
			c.neg.Remove(w.key)
		}
		w.item = it
	case kindNameError, kindNoData, kindServerError:
		if plugutil.Zones(c.cfg.DisableDeny).Contains(plugutil.Normalize(name)) {
			return
		}
		it := newItem(m, now, d)
		if c.neg.Add(w.key, it) {
			c.Metrics.evict(w.server, "denial", c.zonesLabel())
		}
		w.item = it
	}
	c.Metrics.size(w.server, c.zonesLabel(), c.pos.Len(), c.neg.Len())
}
