package template

import (
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/dnstest"
	_ "github.com/podnet/podnet/internal/dns/plugin/hosts"
)

func TestParse(t *testing.T) {
	dnstest.RunParse(t, parse, []dnstest.ParseCase[*Handler]{
		{In: "template IN A", Want: func(h *Handler) bool { return len(h.Templates) == 1 }},
		{In: "template ANY ANY example.org example.net {\n match ^a ^b\n answer \"{{ .Name }} 5 IN A 1.2.3.4\"\n additional \"x. 5 IN A 1.1.1.1\"\n authority \"x. 5 IN NS y.\"\n rcode NXDOMAIN\n ederror 18 blocked\n fallthrough\n upstream\n}\ntemplate IN TXT", Want: func(h *Handler) bool { return len(h.Templates) == 2 }},
		{In: "template", Err: "Testfile:1 - Error during parsing: Wrong argument count"},
		{In: "template XX A", Err: "Testfile:1 - Error during parsing: invalid query class XX"},
		{In: "template IN XX", Err: "Testfile:1 - Error during parsing: invalid RR class XX"},
		{In: "template IN A {\n match (\n}", Err: "Testfile:2 - Error during parsing: could not parse regex: (,"},
		{In: "template IN A {\n answer \"{{ .Name \"\n}", Err: "Testfile:2 - Error during parsing: could not compile template"},
		{In: "template IN A {\n rcode NOPE\n}", Err: "Testfile:2 - Error during parsing: unknown rcode NOPE"},
		{In: "template IN A {\n ederror x\n}", Err: "Testfile:2 - Error during parsing: error parsing extended DNS error code x"},
		{In: "template IN A {\n var x 1\n}", Err: "Testfile:2 - Error during parsing: 'var' (expressions) is not supported"},
		{In: "template IN A {\n bogus\n}", Err: "Testfile:2 - Error during parsing: unknown property 'bogus'"},
	})
}

func TestServer(t *testing.T) {
	s := dnstest.Start(t, `example.org:0 {
    template IN A example.org {
        match "^[^.]+[.]apps[.]example[.]org[.]$"
        answer "{{ .Name }} 300 IN CNAME ingress.example.org."
        fallthrough
    }
    template ANY ANY invalid.example.org {
        rcode NXDOMAIN
        authority "invalid.example.org. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)"
    }
    hosts {
        192.0.2.10 ingress.example.org
    }
}
`)
	r := dnstest.Query(t, s.Addr, "Shop.apps.example.org.", dns.TypeA)
	if r.Rcode != 0 || !r.Authoritative || len(r.Answer) != 2 || r.Answer[1].(*dns.A).A.String() != "192.0.2.10" {
		t.Fatalf("CNAME followed: %v", r)
	}
	out := dnstest.Dig(t, s.Addr, "x.invalid.example.org", "MX")
	if !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "invalid.example.org.\t60\tIN\tSOA") {
		t.Fatalf("NXDOMAIN template:\n%s", out)
	}
	r = dnstest.Query(t, s.Addr, "ingress.example.org.", dns.TypeA)
	if len(r.Answer) != 1 {
		t.Fatalf("fallthrough to hosts: %v", r)
	}
}
