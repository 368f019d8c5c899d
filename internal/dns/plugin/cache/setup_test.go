package cache

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/dnstest"
	_ "github.com/podnet/podnet/internal/dns/plugin/forward"
)

func TestParse(t *testing.T) {
	tests := []dnstest.ParseCase[Config]{
		{In: "cache", Want: func(c Config) bool {
			return c.SuccessCap == 10000 && c.SuccessTTL == time.Hour && c.DenialTTL == 30*time.Minute && c.SuccessMinTTL == 5*time.Second && c.ServfailTTL == 5*time.Second && c.Zones[0] == "."
		}},
		{In: "cache 30 example.org", Want: func(c Config) bool {
			return c.SuccessTTL == 30*time.Second && c.DenialTTL == 30*time.Second && len(c.Zones) == 1 && c.Zones[0] == "example.org."
		}},
		{In: "cache {\n success 2048 600 10\n denial 1024 60\n prefetch 5 30s 20%\n serve_stale 2h verify 100ms 30s 10s\n servfail 0\n disable success a.org b.org\n keepttl\n}", Want: func(c Config) bool {
			return c.SuccessCap == 2048 && c.SuccessTTL == 10*time.Minute && c.SuccessMinTTL == 10*time.Second && c.DenialCap == 1024 && c.DenialTTL == time.Minute &&
				c.Prefetch == 5 && c.PrefetchDuration == 30*time.Second && c.PrefetchPercentage == 20 && c.StaleUpTo == 2*time.Hour && c.VerifyStale &&
				c.VerifyTimeout == 100*time.Millisecond && c.StaleTTL == 30*time.Second && c.StaleRecheck == 10*time.Second && c.ServfailTTL == 0 &&
				strings.Join(c.DisableSuccess, ",") == "a.org.,b.org." && c.KeepTTL
		}},
		{In: "cache {\n serve_stale\n}", Want: func(c Config) bool { return c.StaleUpTo == time.Hour && !c.VerifyStale }},
		{In: "cache 0", Err: "Testfile:1 - Error during parsing: cache TTL can not be zero or negative: 0"},
		{In: "cache {\n success\n}", Err: "Testfile:2 - Error during parsing: Wrong argument count"},
		{In: "cache {\n success x\n}", Err: "Testfile:2 - Error during parsing: success: invalid capacity 'x'"},
		{In: "cache {\n denial 10 0\n}", Err: "Testfile:2 - Error during parsing: cache TTL can not be zero or negative: 0"},
		{In: "cache {\n success 10 10 -1\n}", Err: "Testfile:2 - Error during parsing: cache min TTL can not be negative: -1"},
		{In: "cache {\n prefetch 1 1m 5%\n}", Err: "Testfile:2 - Error during parsing: percentage should fall in range [10, 90]: 5"},
		{In: "cache {\n prefetch 1 1m 50\n}", Err: "Testfile:2 - Error during parsing: last character of percentage should be `%`, but is: '0'"},
		{In: "cache {\n prefetch -1\n}", Err: "Testfile:2 - Error during parsing: prefetch amount should be positive: -1"},
		{In: "cache {\n serve_stale 1h sometimes\n}", Err: "Testfile:2 - Error during parsing: invalid value for serve_stale refresh mode: sometimes"},
		{In: "cache {\n serve_stale 1h immediate 1500ms\n}", Err: "Testfile:2 - Error during parsing: serve_stale response TTL must be a whole number of seconds"},
		{In: "cache {\n servfail 6m\n}", Err: "Testfile:2 - Error during parsing: caching SERVFAIL responses over 5 minutes is not permitted"},
		{In: "cache {\n disable both\n}", Err: `Testfile:2 - Error during parsing: cache type for disable must be "success" or "denial"`},
		{In: "cache {\n keepttl now\n}", Err: "Testfile:2 - Error during parsing: Wrong argument count"},
		{In: "cache {\n bogus\n}", Err: "Testfile:2 - Error during parsing: unknown property 'bogus'"},
		{In: "cache\ncache", Err: "Testfile:2 - Error during parsing: this plugin can only be used once per Server Block"},
	}
	dnstest.RunParse(t, parse, tests)
}

// TestServer: cache in front of forward to a counting upstream on 127.0.0.1.
func TestServer(t *testing.T) {
	var calls atomic.Int32
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		calls.Add(1)
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		if strings.HasPrefix(r.Question[0].Name, "nx.") {
			m.Rcode = dns.RcodeNameError
			soa, _ := dns.NewRR("example.org. 60 IN SOA ns. host. 1 2 3 4 60")
			m.Ns = []dns.RR{soa}
		} else {
			rr, _ := dns.NewRR(r.Question[0].Name + " 300 IN A 10.0.0.1")
			m.Answer = []dns.RR{rr}
		}
		w.WriteMsg(m)
	})}
	go up.ActivateAndServe()
	t.Cleanup(func() { up.Shutdown() })
	s := dnstest.Start(t, ".:0 {\n cache 30\n forward . "+pc.LocalAddr().String()+"\n}\n")
	r := dnstest.Query(t, s.Addr, "a.example.org.", dns.TypeA)
	if r.Answer[0].Header().Ttl != 30 || !r.RecursionAvailable {
		t.Fatalf("first reply (TTL capped at 30): %v", r)
	}
	out := dnstest.Dig(t, s.Addr, "A.EXAMPLE.org", "A")
	if calls.Load() != 1 || !strings.Contains(out, ";A.EXAMPLE.org.") || !strings.Contains(out, "10.0.0.1") {
		t.Fatalf("calls %d, dig:\n%s", calls.Load(), out)
	}
	for range 2 {
		r = dnstest.Query(t, s.Addr, "nx.example.org.", dns.TypeA)
	}
	if calls.Load() != 2 || r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 {
		t.Fatalf("denial: calls %d %v", calls.Load(), r)
	}
	// DO bit is part of the key.
	m := new(dns.Msg)
	m.SetQuestion("a.example.org.", dns.TypeA)
	m.SetEdns0(1232, true)
	dnstest.Exchange(t, "udp", s.Addr, m)
	if calls.Load() != 3 {
		t.Fatalf("DO query served from the non-DO entry: %d calls", calls.Load())
	}
}
