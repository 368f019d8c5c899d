package whoami

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/podnet/podnet/internal/dns/dnstest"
)

func TestSetup(t *testing.T) {
	dnstest.RunSetup(t, setup, []dnstest.SetupCase{
		{In: "whoami"},
		{In: "whoami extra", Err: "Testfile:1 - Error during parsing: Wrong argument count or unexpected line ending after 'extra'"},
	})
}

func TestWhoami(t *testing.T) {
	s := dnstest.Start(t, ".:0 {\n whoami\n}\n")
	r := dnstest.Query(t, s.Addr, "Example.org.", dns.TypeA)
	if !r.Authoritative || len(r.Answer) != 0 || len(r.Extra) != 2 {
		t.Fatalf("reply %v", r)
	}
	a, ok := r.Extra[0].(*dns.A)
	if !ok || a.A.String() != "127.0.0.1" || a.Hdr.Name != "Example.org." {
		t.Fatalf("A: %v", r.Extra[0])
	}
	srv, ok := r.Extra[1].(*dns.SRV)
	if !ok || srv.Hdr.Name != "_udp.Example.org." || srv.Port == 0 {
		t.Fatalf("SRV: %v", r.Extra[1])
	}
	out := dnstest.Dig(t, s.Addr, "+tcp", ".", "NS")
	if !strings.Contains(out, "_tcp.\t") {
		t.Fatalf("dig . over TCP:\n%s", out)
	}
}
