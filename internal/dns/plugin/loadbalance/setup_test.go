package loadbalance

import (
	"context"
	"testing"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/dnstest"
)

func TestSetup(t *testing.T) {
	dnstest.RunSetup(t, setup, []dnstest.SetupCase{
		{In: "loadbalance"},
		{In: "loadbalance round_robin"},
		{In: "loadbalance weighted /etc/w", Err: "Testfile:1 - Error during parsing: unknown policy 'weighted': only round_robin is supported"},
		{In: "loadbalance round_robin x", Err: "Testfile:1 - Error during parsing: Wrong argument count or unexpected line ending after 'x'"},
		{In: "loadbalance round_robin {\n prefer 10.0.0.0/8\n}", Err: "Testfile:2 - Error during parsing: round_robin takes no options, got 'prefer'"},
	})
}

type capture struct {
	dns.ResponseWriter
	m *dns.Msg
}

func (c *capture) WriteMsg(m *dns.Msg) error { c.m = m; return nil }

func TestShuffle(t *testing.T) {
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	answer := []dns.RR{
		rr("www.example.org. 60 IN CNAME a.example.org."),
		rr("a.example.org. 60 IN A 10.0.0.1"),
		rr("a.example.org. 60 IN A 10.0.0.2"),
		rr("a.example.org. 60 IN A 10.0.0.3"),
		rr("a.example.org. 60 IN AAAA fd00::1"),
		rr("a.example.org. 60 IN TXT \"x\""),
	}
	h := RoundRobin{Next: pdns.HandlerFunc(func(_ context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = append([]dns.RR(nil), answer...)
		return dns.RcodeSuccess, w.WriteMsg(m)
	})}
	firsts := map[string]bool{}
	for i := 0; i < 200; i++ {
		q := new(dns.Msg)
		q.SetQuestion("www.example.org.", dns.TypeA)
		c := &capture{}
		h.ServeDNS(context.Background(), c, q)
		a := c.m.Answer
		if len(a) != len(answer) {
			t.Fatalf("lost records: %v", a)
		}
		if a[0].Header().Rrtype != dns.TypeCNAME || a[1].Header().Rrtype != dns.TypeTXT {
			t.Fatalf("CNAME/other not first: %v", a)
		}
		switch x := a[2].(type) {
		case *dns.A:
			firsts[x.A.String()] = true
		case *dns.AAAA:
			firsts[x.AAAA.String()] = true
		}
	}
	if len(firsts) != 4 {
		t.Fatalf("first address over 200 replies took %d values, want all 4: %v", len(firsts), firsts)
	}
}
