package cache

import (
	"context"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

// backend answers from a function and counts calls.
type backend struct {
	calls atomic.Int32
	mu    sync.Mutex
	reply func(r *dns.Msg) (*dns.Msg, int, error)
}

func (b *backend) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	b.calls.Add(1)
	b.mu.Lock()
	f := b.reply
	b.mu.Unlock()
	m, rc, err := f(r)
	if m != nil {
		return rc, w.WriteMsg(m)
	}
	return rc, err
}
func (b *backend) Name() string { return "backend" }

func aReply(ttl uint32) func(r *dns.Msg) (*dns.Msg, int, error) {
	return func(r *dns.Msg) (*dns.Msg, int, error) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		m.RecursionAvailable = true
		rr, _ := dns.NewRR(r.Question[0].Name + " 60 IN A 10.0.0.1")
		rr.Header().Ttl = ttl
		m.Answer = []dns.RR{rr}
		extra, _ := dns.NewRR("ns.example.org. 30 IN A 10.0.0.53")
		m.Extra = []dns.RR{extra}
		return m, 0, nil
	}
}

func nxReply(soaTTL uint32) func(r *dns.Msg) (*dns.Msg, int, error) {
	return func(r *dns.Msg) (*dns.Msg, int, error) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNameError)
		soa, _ := dns.NewRR("example.org. 300 IN SOA ns.example.org. h.example.org. 1 7200 3600 1209600 3600")
		soa.Header().Ttl = soaTTL
		m.Ns = []dns.RR{soa}
		return m, dns.RcodeNameError, nil
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newTestCache(cfg Config, b *backend) (*Cache, *clock) {
	c := New(cfg)
	c.Next = b
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	c.now = clk.now
	return c, clk
}

func query(t *testing.T, c *Cache, name string, qt uint16, do bool) (*dns.Msg, int) {
	t.Helper()
	r := new(dns.Msg)
	r.SetQuestion(name, qt)
	r.Id = 4242
	if do {
		r.SetEdns0(1232, true)
	}
	rec := plugutil.NewRecorder(nil)
	rc, _ := c.ServeDNS(context.Background(), rec, r)
	if rec.Msg != nil && rec.Msg.Id != 4242 {
		t.Fatalf("reply id %d", rec.Msg.Id)
	}
	return rec.Msg, rc
}

func TestHitDecrementsTTL(t *testing.T) {
	b := &backend{reply: aReply(100)}
	c, clk := newTestCache(DefaultConfig(), b)
	m, _ := query(t, c, "a.example.org.", dns.TypeA, false)
	// Every record carries the smallest TTL of the reply (the extra's 30).
	if m.Answer[0].Header().Ttl != 30 || m.Extra[0].Header().Ttl != 30 || !m.Authoritative {
		t.Fatalf("first reply: %v", m)
	}
	clk.add(10 * time.Second)
	m, _ = query(t, c, "A.example.ORG.", dns.TypeA, false)
	if b.calls.Load() != 1 {
		t.Fatalf("backend called %d times, want 1", b.calls.Load())
	}
	if m.Answer[0].Header().Ttl != 20 || m.Question[0].Name != "A.example.ORG." || !m.Authoritative || !m.RecursionAvailable {
		t.Fatalf("hit: %v", m)
	}
	// Other qtype, DO bit: other keys.
	query(t, c, "a.example.org.", dns.TypeAAAA, false)
	query(t, c, "a.example.org.", dns.TypeA, true)
	if b.calls.Load() != 3 {
		t.Fatalf("backend called %d times, want 3", b.calls.Load())
	}
	clk.add(21 * time.Second)
	query(t, c, "a.example.org.", dns.TypeA, false)
	if b.calls.Load() != 4 {
		t.Fatalf("expired entry served: %d calls", b.calls.Load())
	}
	// The AAAA query got an A record back: an answer that does not answer,
	// without SOA, is not cached.
	if s, d := c.Len(); s != 2 || d != 0 {
		t.Fatalf("len %d %d", s, d)
	}
}

func TestTTLCaps(t *testing.T) {
	cfg := DefaultConfig()
	cfg.SuccessTTL, cfg.SuccessMinTTL = 20*time.Second, 10*time.Second
	b := &backend{reply: aReply(1)}
	c, _ := newTestCache(cfg, b)
	m, _ := query(t, c, "min.example.org.", dns.TypeA, false)
	if m.Answer[0].Header().Ttl != 10 {
		t.Fatalf("min ttl: %v", m.Answer[0])
	}
	b.reply = aReply(5000)
	cfg2 := cfg
	c2, _ := newTestCache(cfg2, &backend{reply: func(r *dns.Msg) (*dns.Msg, int, error) {
		m, rc, err := aReply(5000)(r)
		m.Extra = nil
		return m, rc, err
	}})
	m, _ = query(t, c2, "max.example.org.", dns.TypeA, false)
	if m.Answer[0].Header().Ttl != 20 {
		t.Fatalf("max ttl: %v", m.Answer[0])
	}
}

func TestDenial(t *testing.T) {
	b := &backend{reply: nxReply(60)}
	c, clk := newTestCache(DefaultConfig(), b)
	m, rc := query(t, c, "nx.example.org.", dns.TypeA, false)
	if rc != dns.RcodeNameError || m.Rcode != dns.RcodeNameError {
		t.Fatalf("rcode %d", rc)
	}
	clk.add(5 * time.Second)
	m, rc = query(t, c, "nx.example.org.", dns.TypeA, false)
	if b.calls.Load() != 1 || rc != 0 || m.Rcode != dns.RcodeNameError || m.Ns[0].Header().Ttl != 55 {
		t.Fatalf("denial hit: calls=%d %v", b.calls.Load(), m)
	}
	if _, d := c.Len(); d != 1 {
		t.Fatalf("denial len %d", d)
	}
	// NXDOMAIN without SOA is not cached.
	b.reply = func(r *dns.Msg) (*dns.Msg, int, error) {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNameError)
		return m, dns.RcodeNameError, nil
	}
	query(t, c, "nosoa.example.org.", dns.TypeA, false)
	query(t, c, "nosoa.example.org.", dns.TypeA, false)
	if b.calls.Load() != 3 {
		t.Fatalf("soa-less NXDOMAIN cached: %d calls", b.calls.Load())
	}
}

func TestServfailCachedAndTruncatedNot(t *testing.T) {
	b := &backend{reply: func(r *dns.Msg) (*dns.Msg, int, error) {
		return nil, dns.RcodeServerFailure, context.DeadlineExceeded
	}}
	c, clk := newTestCache(DefaultConfig(), b)
	if _, rc := query(t, c, "sf.example.org.", dns.TypeA, false); rc != dns.RcodeServerFailure {
		t.Fatalf("rc %d", rc)
	}
	m, _ := query(t, c, "sf.example.org.", dns.TypeA, false)
	if b.calls.Load() != 1 || m == nil || m.Rcode != dns.RcodeServerFailure {
		t.Fatalf("servfail not cached: %d %v", b.calls.Load(), m)
	}
	clk.add(6 * time.Second)
	query(t, c, "sf.example.org.", dns.TypeA, false)
	if b.calls.Load() != 2 {
		t.Fatalf("servfail kept past 5s")
	}
	b.reply = func(r *dns.Msg) (*dns.Msg, int, error) {
		m, rc, err := aReply(300)(r)
		m.Truncated = true
		return m, rc, err
	}
	query(t, c, "tc.example.org.", dns.TypeA, false)
	m, _ = query(t, c, "tc.example.org.", dns.TypeA, false)
	if b.calls.Load() != 4 || !m.Truncated {
		t.Fatalf("truncated reply cached or TC lost: %d", b.calls.Load())
	}
}

func TestServeStaleAndPrefetch(t *testing.T) {
	cfg := DefaultConfig()
	cfg.StaleUpTo = time.Hour
	b := &backend{reply: aReply(60)}
	c, clk := newTestCache(cfg, b)
	query(t, c, "s.example.org.", dns.TypeA, false)
	clk.add(2 * time.Minute)
	b.mu.Lock()
	b.reply = func(r *dns.Msg) (*dns.Msg, int, error) { return nil, dns.RcodeServerFailure, context.DeadlineExceeded }
	b.mu.Unlock()
	m, rc := query(t, c, "s.example.org.", dns.TypeA, false)
	if rc != 0 || len(m.Answer) != 1 || m.Answer[0].Header().Ttl != 0 {
		t.Fatalf("stale: %d %v", rc, m)
	}
	waitFor(t, func() bool { return b.calls.Load() == 2 }) // the background refresh

	cfg = DefaultConfig()
	cfg.Prefetch, cfg.PrefetchPercentage = 2, 50
	b2 := &backend{reply: aReply(100)}
	c2, clk2 := newTestCache(cfg, b2)
	noExtra := func(r *dns.Msg) (*dns.Msg, int, error) {
		m, rc, err := aReply(100)(r)
		m.Extra = nil
		return m, rc, err
	}
	b2.reply = noExtra
	query(t, c2, "p.example.org.", dns.TypeA, false)
	clk2.add(10 * time.Second)
	query(t, c2, "p.example.org.", dns.TypeA, false)
	clk2.add(45 * time.Second) // 45 s left, under 50%
	query(t, c2, "p.example.org.", dns.TypeA, false)
	waitFor(t, func() bool { return b2.calls.Load() == 2 })
	waitFor(t, func() bool {
		m, _ := query(t, c2, "p.example.org.", dns.TypeA, false)
		return m.Answer[0].Header().Ttl == 100
	})
}

func TestZonesAndDisable(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Zones = []string{"example.org."}
	cfg.DisableSuccess = []string{"nocache.example.org."}
	b := &backend{reply: aReply(100)}
	c, _ := newTestCache(cfg, b)
	for range 2 {
		query(t, c, "a.example.net.", dns.TypeA, false)
		query(t, c, "x.nocache.example.org.", dns.TypeA, false)
	}
	if b.calls.Load() != 4 {
		t.Fatalf("calls %d, want 4", b.calls.Load())
	}
}

func TestStoreEviction(t *testing.T) {
	s := newStore(1024) // 4 per shard
	ev := 0
	for k := uint64(0); k < 256*10; k++ {
		if s.Add(k, &item{}) {
			ev++
		}
	}
	if s.Len() != 1024 || ev != 256*6 {
		t.Fatalf("len %d evictions %d", s.Len(), ev)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestKeyIsFNV64: the inlined hash is hash/fnv's New64 over the flags,
// type, class and name, as before.
func TestKeyIsFNV64(t *testing.T) {
	for _, tc := range []struct {
		name   string
		qt, qc uint16
		do, cd bool
	}{{"example.org.", dns.TypeA, dns.ClassINET, false, false}, {"", 0, 0, true, true}, {"a.b.c.", dns.TypeAAAA, dns.ClassCHAOS, true, false}} {
		h := fnv.New64()
		var b [6]byte
		if tc.do {
			b[0] = 1
		}
		if tc.cd {
			b[1] = 1
		}
		b[2], b[3] = byte(tc.qt>>8), byte(tc.qt)
		b[4], b[5] = byte(tc.qc>>8), byte(tc.qc)
		h.Write(b[:])
		h.Write([]byte(tc.name))
		if got, want := key(tc.name, tc.qt, tc.qc, tc.do, tc.cd), h.Sum64(); got != want {
			t.Errorf("key(%q) = %x, want %x", tc.name, got, want)
		}
	}
}
