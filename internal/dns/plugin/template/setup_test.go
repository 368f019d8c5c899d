package template

import (
	"strings"
	"testing"

	"github.com/miekg/dns"

	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/dnstest"
	_ "github.com/podnet/podnet/internal/dns/plugin/hosts"
)

func TestParse(t *testing.T) {
	for _, tt := range []struct {
		in        string
		templates int
		err       string
	}{
		{"template IN A", 1, ""},
		{"template ANY ANY example.org example.net {\n match ^a ^b\n answer \"{{ .Name }} 5 IN A 1.2.3.4\"\n additional \"x. 5 IN A 1.1.1.1\"\n authority \"x. 5 IN NS y.\"\n rcode NXDOMAIN\n ederror 18 blocked\n fallthrough\n upstream\n}\ntemplate IN TXT", 2, ""},
		{"template", 0, "Testfile:1 - Error during parsing: Wrong argument count"},
		{"template XX A", 0, "Testfile:1 - Error during parsing: invalid query class XX"},
		{"template IN XX", 0, "Testfile:1 - Error during parsing: invalid RR class XX"},
		{"template IN A {\n match (\n}", 0, "Testfile:2 - Error during parsing: could not parse regex: (,"},
		{"template IN A {\n answer \"{{ .Name \"\n}", 0, "Testfile:2 - Error during parsing: could not compile template"},
		{"template IN A {\n rcode NOPE\n}", 0, "Testfile:2 - Error during parsing: unknown rcode NOPE"},
		{"template IN A {\n ederror x\n}", 0, "Testfile:2 - Error during parsing: error parsing extended DNS error code x"},
		{"template IN A {\n var x 1\n}", 0, "Testfile:2 - Error during parsing: 'var' (expressions) is not supported"},
		{"template IN A {\n bogus\n}", 0, "Testfile:2 - Error during parsing: unknown property 'bogus'"},
	} {
		h, err := parse(pdns.NewTestController(tt.in))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || len(h.Templates) != tt.templates {
			t.Errorf("%q: %v %v", tt.in, h, err)
		}
	}
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
