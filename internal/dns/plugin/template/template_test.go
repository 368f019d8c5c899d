package template

import (
	"context"
	"regexp"
	"strings"
	"testing"
	gotmpl "text/template"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

func mustTmpl(t *testing.T, s ...string) []*gotmpl.Template {
	var out []*gotmpl.Template
	for _, x := range s {
		tm, err := NewRecordTemplate("answer", x)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tm)
	}
	return out
}

type nextNX struct{ n int }

func (n *nextNX) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	n.n++
	return dns.RcodeNameError, nil
}
func (n *nextNX) Name() string { return "nx" }

func TestTemplate(t *testing.T) {
	ip := &Template{Class: dns.ClassINET, Type: dns.TypeA, Zones: []string{"example."},
		Regex:  []*regexp.Regexp{regexp.MustCompile(`^ip-(?P<a>[0-9]+)-(?P<b>[0-9]+)-(?P<c>[0-9]+)-(?P<d>[0-9]+)[.]example[.]$`)},
		Answer: mustTmpl(t, `{{ .Name }} 60 IN A {{ .Group.a }}.{{ .Group.b }}.{{ .Group.c }}.{{ .Group.d }}`)}
	ip.Fall.SetZonesFromArgs(nil)
	nx := &Template{Class: dns.ClassANY, Type: dns.TypeANY, Zones: []string{"invalid."},
		Rcode:     dns.RcodeNameError,
		Regex:     []*regexp.Regexp{regexp.MustCompile(".*")},
		Authority: mustTmpl(t, `invalid. 60 {{ .Class }} SOA ns.invalid. hostmaster.invalid. (1 60 60 60 60)`)}
	strict := &Template{Class: dns.ClassINET, Type: dns.TypeTXT, Zones: []string{"strict."},
		Regex: []*regexp.Regexp{regexp.MustCompile(`^only\.strict\.$`)}, Answer: mustTmpl(t, `{{ .Name }} 5 IN TXT "{{ index .Match 0 }} {{ .Type }} {{ .Remote }}"`)}
	next := &nextNX{}
	h := &Handler{Next: next, Zones: []string{"example.", "invalid.", "strict."}, Templates: []*Template{ip, nx, strict}}
	ask := func(name string, qt uint16) (int, *dns.Msg) {
		r := new(dns.Msg)
		r.SetQuestion(name, qt)
		rec := plugutil.NewRecorder(nil)
		rc, err := h.ServeDNS(context.Background(), rec, r)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return rc, rec.Msg
	}
	rc, m := ask("IP-10-1-2-3.example.", dns.TypeA)
	if rc != 0 || !m.Authoritative || m.Answer[0].String() != "ip-10-1-2-3.example.\t60\tIN\tA\t10.1.2.3" || m.Question[0].Name != "IP-10-1-2-3.example." {
		t.Fatalf("ip template: %v", m)
	}
	if rc, _ := ask("other.example.", dns.TypeA); rc != dns.RcodeNameError || next.n != 1 {
		t.Fatalf("fallthrough to next: rc %d, next %d", rc, next.n)
	}
	rc, m = ask("x.invalid.", dns.TypeMX)
	if rc != dns.RcodeNameError || m.Rcode != dns.RcodeNameError || len(m.Ns) != 1 || m.Ns[0].Header().Rrtype != dns.TypeSOA {
		t.Fatalf("nxdomain template: %d %v", rc, m)
	}
	rc, m = ask("only.strict.", dns.TypeTXT)
	if rc != 0 || !strings.Contains(m.Answer[0].String(), `"only.strict. TXT 127.0.0.1"`) {
		t.Fatalf("txt template: %v", m)
	}
	if rc, _ := ask("nope.strict.", dns.TypeTXT); rc != dns.RcodeServerFailure {
		t.Fatalf("no match without fallthrough: rc %d", rc)
	}
	if rc, _ := ask("elsewhere.org.", dns.TypeA); rc != dns.RcodeNameError {
		t.Fatalf("out of zones: rc %d", rc)
	}
}
