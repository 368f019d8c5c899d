package loop

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/dnstest"
	_ "github.com/podnet/podnet/internal/dns/plugin/whoami"
)

func TestSetup(t *testing.T) {
	dnstest.RunSetup(t, setup, []dnstest.SetupCase{
		{In: "loop"},
		{In: "loop x", Err: "Testfile:1 - Error during parsing: Wrong argument count or unexpected line ending after 'x'"},
	})
}

// selfForward sends every query back to the server itself: a loop.
type selfForward struct{ cfg *pdns.Config }

func (selfForward) Name() string { return "testselfforward" }
func (f selfForward) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	c := &dns.Client{Timeout: 3 * time.Second}
	reply, _, err := c.Exchange(r, selfAddr(f.cfg.ListenAddrs()[0]))
	if err != nil {
		return dns.RcodeServerFailure, err
	}
	w.WriteMsg(reply)
	return dns.RcodeSuccess, nil
}

func init() {
	pdns.Directives = append(pdns.Directives, "testselfforward")
	pdns.Register("testselfforward", func(c *pdns.Controller) error {
		c.Next()
		cfg := c.Config()
		c.AddPlugin(func(pdns.Handler) pdns.Handler { return selfForward{cfg: cfg} })
		return nil
	})
}

func TestLoopDetectedNotFatal(t *testing.T) {
	s := dnstest.Start(t, ".:0 {\n loop\n testselfforward\n}\n")
	var l *Loop
	for _, h := range s.Instance().Handlers() {
		if x, ok := h.(*Loop); ok {
			l = x
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for !l.Looped() {
		if time.Now().After(deadline) {
			t.Fatal("loop not detected")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The process is alive and the block refuses to forward, fast.
	start := time.Now()
	r := dnstest.Query(t, s.Addr, "example.org.", dns.TypeA)
	if r.Rcode != dns.RcodeServerFailure || time.Since(start) > time.Second {
		t.Fatalf("after the loop: %s in %v", dns.RcodeToString[r.Rcode], time.Since(start))
	}
}

func TestNoLoop(t *testing.T) {
	s := dnstest.Start(t, ".:0 {\n loop\n whoami\n}\n")
	r := dnstest.Query(t, s.Addr, "example.org.", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess {
		t.Fatalf("rcode %s", dns.RcodeToString[r.Rcode])
	}
	for _, h := range s.Instance().Handlers() {
		if x, ok := h.(*Loop); ok && x.Looped() {
			t.Fatal("loop detected without a loop")
		}
	}
}
