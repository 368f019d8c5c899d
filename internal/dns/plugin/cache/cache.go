// Package cache is the DNS server's `cache` plugin: replies from the rest of
// the chain kept by (qname, qtype, qclass, DO, CD) in a success and a denial
// store, served with decremented TTLs, refreshed early when popular
// (prefetch), and served past expiry when the upstream fails (serve_stale).
//
// The TTL rules are CoreDNS 1.15's: an entry lives for the smallest TTL in
// the reply, clamped to [MINTTL, TTL] of its class (success 5..3600 s,
// denial 5..1800 s by default), and every record of a reply carries that
// same TTL. Truncated replies, errors other than SERVFAIL, NXDOMAIN without
// SOA and SOA-less NOERROR replies whose answer does not answer the question
// are not cached; SERVFAIL is kept for `servfail` (5 s).
package cache

import (
	"context"
	"math"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

// Defaults, as CoreDNS has them.
const (
	DefaultCapacity = 10000
	maxPosTTL       = 3600 * time.Second
	maxNegTTL       = 1800 * time.Second
	minDefaultTTL   = 5 * time.Second
)

// Config is the parsed `cache` block.
type Config struct {
	Zones []string

	SuccessCap, DenialCap       int
	SuccessTTL, SuccessMinTTL   time.Duration
	DenialTTL, DenialMinTTL     time.Duration
	ServfailTTL                 time.Duration
	Prefetch                    int
	PrefetchDuration            time.Duration
	PrefetchPercentage          int
	StaleUpTo                   time.Duration // 0: serve_stale off
	VerifyStale                 bool
	VerifyTimeout               time.Duration
	StaleTTL                    time.Duration
	StaleRecheck                time.Duration
	DisableSuccess, DisableDeny []string
	KeepTTL                     bool
}

// DefaultConfig is `cache` with no arguments.
func DefaultConfig() Config {
	return Config{
		Zones:      []string{"."},
		SuccessCap: DefaultCapacity, DenialCap: DefaultCapacity,
		SuccessTTL: maxPosTTL, SuccessMinTTL: minDefaultTTL,
		DenialTTL: maxNegTTL, DenialMinTTL: minDefaultTTL,
		ServfailTTL:      minDefaultTTL,
		PrefetchDuration: time.Minute, PrefetchPercentage: 10,
	}
}

// Cache is the plugin handler.
type Cache struct {
	Next plugutil.Handler
	cfg  Config
	pos  *store
	neg  *store
	now  func() time.Time
	// Metrics is notified of hits, misses and sizes; nil means no metrics.
	Metrics *Metrics
	// ServerName gives the server label for metrics from a request's context.
	ServerName func(context.Context) string
	zones      string // the zones label
}

// New makes a cache handler from cfg.
func New(cfg Config) *Cache {
	return &Cache{cfg: cfg, pos: newStore(cfg.SuccessCap), neg: newStore(cfg.DenialCap), now: time.Now,
		zones: strings.Join(cfg.Zones, ",")}
}

// Name implements the plugin interface.
func (c *Cache) Name() string { return "cache" }

// Len returns the number of success and denial entries.
func (c *Cache) Len() (success, denial int) { return c.pos.Len(), c.neg.Len() }

func (c *Cache) server(ctx context.Context) string {
	if c.ServerName == nil {
		return ""
	}
	return c.ServerName(ctx)
}

// key is the 64-bit FNV-1 hash (hash/fnv's New64) of the flags, type,
// class and name, computed without allocating.
func key(qname string, qtype, qclass uint16, do, cd bool) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	var b [6]byte
	if do {
		b[0] = 1
	}
	if cd {
		b[1] = 1
	}
	b[2], b[3] = byte(qtype>>8), byte(qtype)
	b[4], b[5] = byte(qclass>>8), byte(qclass)
	for _, c := range b {
		h *= prime
		h ^= uint64(c)
	}
	for i := 0; i < len(qname); i++ {
		h *= prime
		h ^= uint64(qname[i])
	}
	return h
}

// ServeDNS implements the plugin interface.
func (c *Cache) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if r.Opcode != dns.OpcodeQuery || len(r.Question) == 0 {
		return plugutil.NextOrFailure(c.Name(), c.Next, ctx, w, r)
	}
	// Later plugins must not see our changes, nor we theirs: whatever goes
	// on down the chain gets a copy. A hit only reads r.
	q := r.Question[0]
	qname := strings.ToLower(q.Name)
	if !plugutil.Zones(c.cfg.Zones).Contains(qname) {
		return plugutil.NextOrFailure(c.Name(), c.Next, ctx, w, r.Copy())
	}
	do, cd, ad := plugutil.DO(r), r.CheckingDisabled, r.AuthenticatedData
	k := key(qname, q.Qtype, q.Qclass, do, cd)
	now := c.now()
	server := c.server(ctx)

	it := c.get(k, q, now, server)
	if it == nil {
		refresh := r.Copy()
		refresh.AuthenticatedData = true
		cw := &writer{ResponseWriter: w, c: c, req: refresh, key: k, qname: qname, do: do, ad: ad, server: server}
		ret, err := plugutil.NextOrFailure(c.Name(), c.Next, ctx, cw, refresh)
		if err != nil && ret == dns.RcodeServerFailure && ctx.Err() == nil && cw.last == nil && c.cfg.ServfailTTL > 0 {
			m := new(dns.Msg)
			m.SetRcode(refresh, dns.RcodeServerFailure)
			cw.prefetch = true
			_ = cw.WriteMsg(m)
		}
		return ret, err
	}

	rc := r // copied below when the chain will see it
	ttl := it.ttl(now)
	stale := ttl <= 0
	if stale || c.cfg.Prefetch > 0 {
		rc = r.Copy()
	}
	if stale {
		if c.cfg.VerifyStale {
			if served, ret, err := c.verify(ctx, w, rc, it, k, qname, do, ad, server); served {
				return ret, err
			}
		}
		now = now.Add(time.Duration(ttl) * time.Second) // the stale reply carries TTL 0
		if !c.cfg.VerifyStale {
			c.prefetch(ctx, it, rc, k, qname, do, server, now, true)
		}
		c.Metrics.servedStale(server, c.zonesLabel())
	} else if c.shouldPrefetch(it, now) {
		c.prefetch(ctx, it, rc, k, qname, do, server, now, false)
	}
	if c.cfg.KeepTTL {
		now = it.stored
	}
	var resp *dns.Msg
	if stale && c.cfg.StaleTTL > 0 {
		resp = it.toMsg(r, uint32(c.cfg.StaleTTL/time.Second), do, ad)
	} else {
		resp = it.toMsg(r, uint32(max(it.ttl(now), 0)), do, ad)
	}
	if err := w.WriteMsg(resp); err != nil {
		return dns.RcodeServerFailure, err
	}
	return dns.RcodeSuccess, nil
}

func (c *Cache) zonesLabel() string { return c.zones }

// usable says whether an entry with ttl seconds left may be served.
func (c *Cache) usable(ttl int) bool {
	return ttl > 0 || (c.cfg.StaleUpTo > 0 && -ttl < int(c.cfg.StaleUpTo.Seconds()))
}

// get looks in the denial store, then the success store. A cached SERVFAIL
// does not shadow a usable positive entry.
func (c *Cache) get(k uint64, q dns.Question, now time.Time, server string) *item {
	c.Metrics.request(server, c.zonesLabel())
	if it, ok := c.neg.Get(k); ok && it.matches(q.Name, q.Qtype, q.Qclass) && c.usable(it.ttl(now)) {
		if it.rcode == dns.RcodeServerFailure {
			if p, ok := c.pos.Get(k); ok && p.matches(q.Name, q.Qtype, q.Qclass) && c.usable(p.ttl(now)) {
				c.Metrics.hit(server, "success", c.zonesLabel())
				return p
			}
		}
		c.Metrics.hit(server, "denial", c.zonesLabel())
		return it
	}
	if it, ok := c.pos.Get(k); ok && it.matches(q.Name, q.Qtype, q.Qclass) && c.usable(it.ttl(now)) {
		c.Metrics.hit(server, "success", c.zonesLabel())
		return it
	}
	c.Metrics.miss(server, c.zonesLabel())
	return nil
}

func (c *Cache) shouldPrefetch(it *item, now time.Time) bool {
	if c.cfg.Prefetch <= 0 {
		return false
	}
	it.update(c.cfg.PrefetchDuration, now)
	threshold := int(math.Ceil(float64(c.cfg.PrefetchPercentage) / 100 * float64(it.origTTL)))
	return it.popularity() >= c.cfg.Prefetch && it.ttl(now) <= threshold
}

// prefetch refreshes it in the background, at most once at a time.
func (c *Cache) prefetch(ctx context.Context, it *item, r *dns.Msg, k uint64, qname string, do bool, server string, now time.Time, stale bool) {
	recheck := time.Duration(0)
	if stale {
		recheck = c.cfg.StaleRecheck
	}
	if !it.beginRefresh(c.now(), recheck) {
		return
	}
	req := r.Copy()
	req.AuthenticatedData = true
	cw := &writer{c: c, req: req, key: k, qname: qname, do: do, ad: true, prefetch: true, server: server, verify: stale}
	ctx = context.WithoutCancel(ctx)
	go func() {
		c.Metrics.prefetchInc(server, c.zonesLabel())
		_, _ = plugutil.NextOrFailure(c.Name(), c.Next, ctx, cw, req)
		ok := cw.last != nil && (!stale || cw.refreshed)
		if ok && cw.item != nil {
			// Keep the popularity the old entry had gathered.
			cw.item.setPopularity(now, it.popularity())
		}
		it.endRefresh(c.now(), recheck, ok)
	}()
}

// verify asks the chain before serving a stale entry (serve_stale verify).
// It reports whether a fresh reply was served.
func (c *Cache) verify(ctx context.Context, w dns.ResponseWriter, r *dns.Msg, it *item, k uint64, qname string, do, ad bool, server string) (bool, int, error) {
	recheck := c.cfg.StaleRecheck
	track := recheck > 0 || c.cfg.VerifyTimeout > 0
	if track && !it.beginRefresh(c.now(), recheck) {
		return false, 0, nil
	}
	req := r.Copy()
	req.AuthenticatedData = true
	if c.cfg.VerifyTimeout == 0 {
		cw := &writer{ResponseWriter: w, c: c, req: req, key: k, qname: qname, do: do, ad: ad, server: server, verify: true}
		ret, err := plugutil.NextOrFailure(c.Name(), c.Next, ctx, cw, req)
		if track {
			it.endRefresh(c.now(), recheck, cw.refreshed)
		}
		if cw.refreshed {
			return true, ret, err
		}
		return false, 0, nil
	}
	cw := &writer{c: c, req: req, key: k, qname: qname, do: do, ad: ad, prefetch: true, server: server, verify: true}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = plugutil.NextOrFailure(c.Name(), c.Next, context.WithoutCancel(ctx), cw, req)
		it.endRefresh(c.now(), recheck, cw.refreshed)
	}()
	t := time.NewTimer(c.cfg.VerifyTimeout)
	defer t.Stop()
	select {
	case <-done:
		if !cw.refreshed || cw.item == nil {
			return false, 0, nil
		}
		now := c.now()
		if c.cfg.KeepTTL {
			now = cw.item.stored
		}
		if err := w.WriteMsg(cw.item.toMsg(r, uint32(max(cw.item.ttl(now), 0)), do, ad)); err != nil {
			return true, dns.RcodeServerFailure, err
		}
		return true, dns.RcodeSuccess, nil
	case <-t.C:
		return false, 0, nil
	}
}
