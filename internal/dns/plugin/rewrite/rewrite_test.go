package rewrite

import (
	"context"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

// echo answers with an A record at the asked name, a CNAME from it, and
// an SRV pointing below it; it records the question it saw.
type echo struct{ seen dns.Question }

func (e *echo) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	e.seen = r.Question[0]
	if strings.HasPrefix(r.Question[0].Name, "fail.") {
		return dns.RcodeServerFailure, nil
	}
	m := new(dns.Msg)
	m.SetReply(r)
	n := r.Question[0].Name
	a, _ := dns.NewRR(n + " 300 IN A 10.0.0.1")
	c, _ := dns.NewRR("alias." + n + " 300 IN CNAME " + n)
	srv, _ := dns.NewRR(n + " 300 IN SRV 0 0 80 host." + n)
	m.Answer = []dns.RR{a, c, srv}
	if strings.HasPrefix(n, "nx.") {
		m.Rcode = dns.RcodeNameError
		m.Answer = nil
	}
	return 0, w.WriteMsg(m)
}
func (e *echo) Name() string { return "echo" }

func run(t *testing.T, rules [][]string, qname string, qtype uint16) (*echo, *dns.Msg, int) {
	t.Helper()
	rw := &Rewrite{}
	for _, args := range rules {
		r, err := NewRule(args...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		rw.Rules = append(rw.Rules, r)
	}
	e := &echo{}
	rw.Next = e
	r := new(dns.Msg)
	r.SetQuestion(qname, qtype)
	rec := plugutil.NewRecorder(nil)
	rc, _ := rw.ServeDNS(context.Background(), rec, r)
	return e, rec.Msg, rc
}

func owners(m *dns.Msg) string {
	var s []string
	for _, rr := range m.Answer {
		f := strings.Fields(rr.String())
		s = append(s, f[0]+" "+f[len(f)-1])
	}
	return strings.Join(s, " | ")
}

func TestNameRules(t *testing.T) {
	tests := []struct {
		rule      []string
		q, seen   string
		answers   string
		unchanged bool
	}{
		{[]string{"name", "Example.NET", "example.org"}, "example.net.", "example.org.",
			"example.net. 10.0.0.1 | alias.example.net. example.net. | example.net. host.example.net.", false},
		{[]string{"name", "exact", "example.net.", "example.org."}, "EXAMPLE.net.", "example.org.",
			"example.net. 10.0.0.1 | alias.example.net. example.net. | example.net. host.example.net.", false},
		{[]string{"name", "suffix", ".schmoogle.com.", ".google.com."}, "www.schmoogle.com.", "www.google.com.",
			"www.google.com. 10.0.0.1 | alias.www.google.com. www.google.com. | www.google.com. host.www.google.com.", false},
		{[]string{"name", "suffix", ".schmoogle.com.", ".google.com.", "answer", "auto"}, "www.schmoogle.com.", "www.google.com.",
			"www.schmoogle.com. 10.0.0.1 | alias.www.schmoogle.com. www.schmoogle.com. | www.schmoogle.com. host.www.schmoogle.com.", false},
		{[]string{"name", "prefix", "foo", "bar"}, "foo.example.org.", "bar.example.org.",
			"bar.example.org. 10.0.0.1 | alias.bar.example.org. bar.example.org. | bar.example.org. host.bar.example.org.", false},
		{[]string{"name", "substring", "service.us-west-1.example.org", "service.us-west-1.consul"}, "ftp.service.us-west-1.example.org.", "ftp.service.us-west-1.consul.",
			"", false},
		{[]string{"name", "regex", `(.*)-(us-west-1)\.example\.org`, "{1}.service.{2}.consul", "answer", "auto"}, "ftp-us-west-1.example.org.", "ftp.service.us-west-1.consul.",
			"ftp-us-west-1.example.org. 10.0.0.1 | alias.ftp-us-west-1.example.org. ftp-us-west-1.example.org. | ftp-us-west-1.example.org. host.ftp-us-west-1.example.org.", false},
		{[]string{"name", "regex", `(.*)-(us-west-1)\.example\.org`, "{1}.service.{2}.consul", "answer", "name", `(.*)\.service\.(us-west-1)\.consul`, "{1}-{2}.example.org", "answer", "value", `host\.(.*)\.service\.(us-west-1)\.consul`, "h.{1}.{2}"},
			"ftp-us-west-1.example.org.", "ftp.service.us-west-1.consul.",
			"ftp-us-west-1.example.org. 10.0.0.1 | alias.ftp-us-west-1.example.org. ftp.service.us-west-1.consul. | ftp-us-west-1.example.org. h.ftp.us-west-1.", false},
		{[]string{"name", "exact", "other.org.", "x.org."}, "example.net.", "example.net.", "", true},
	}
	for _, tt := range tests {
		e, m, rc := run(t, [][]string{tt.rule}, tt.q, dns.TypeA)
		if rc != 0 || e.seen.Name != tt.seen {
			t.Errorf("%v: next saw %q (rc %d), want %q", tt.rule, e.seen.Name, rc, tt.seen)
			continue
		}
		if m.Question[0].Name != tt.q {
			t.Errorf("%v: question %q not restored to %q", tt.rule, m.Question[0].Name, tt.q)
		}
		if tt.answers != "" && owners(m) != tt.answers {
			t.Errorf("%v:\n got %s\nwant %s", tt.rule, owners(m), tt.answers)
		}
	}
}

func TestContinueTypeClassTTLRcode(t *testing.T) {
	e, m, _ := run(t, [][]string{
		{"continue", "name", "suffix", ".a.test", ".b.test"},
		{"name", "suffix", ".b.test", ".c.test"},
	}, "x.a.test.", dns.TypeA)
	if e.seen.Name != "x.c.test." || m.Question[0].Name != "x.a.test." {
		t.Errorf("continue chain: saw %s, question %s", e.seen.Name, m.Question[0].Name)
	}
	e, m, _ = run(t, [][]string{{"type", "ANY", "HINFO"}}, "x.test.", dns.TypeANY)
	if e.seen.Qtype != dns.TypeHINFO || m.Question[0].Qtype != dns.TypeANY {
		t.Errorf("type: saw %d, question %d", e.seen.Qtype, m.Question[0].Qtype)
	}
	r := new(dns.Msg)
	r.SetQuestion("x.test.", dns.TypeA)
	r.Question[0].Qclass = dns.ClassCHAOS
	rw := &Rewrite{}
	rule, _ := NewRule("class", "CH", "IN")
	rw.Rules = []Rule{rule}
	ec := &echo{}
	rw.Next = ec
	rec := plugutil.NewRecorder(nil)
	rw.ServeDNS(context.Background(), rec, r)
	if ec.seen.Qclass != dns.ClassINET || rec.Msg.Question[0].Qclass != dns.ClassCHAOS {
		t.Errorf("class rewrite: %v / %v", ec.seen, rec.Msg.Question[0])
	}
	_, m, _ = run(t, [][]string{{"ttl", "suffix", ".test", "10-20"}}, "x.test.", dns.TypeA)
	for _, rr := range m.Answer {
		if rr.Header().Ttl != 20 {
			t.Errorf("ttl clamp: %v", rr)
		}
	}
	_, m, _ = run(t, [][]string{{"rcode", "nx.test", "NXDOMAIN", "REFUSED"}}, "nx.test.", dns.TypeA)
	if m.Rcode != dns.RcodeRefused {
		t.Errorf("rcode: %d", m.Rcode)
	}
	// SERVFAIL from next: rewrite writes it, with the original question.
	_, m, rc := run(t, [][]string{{"name", "fail.test", "fail.example"}}, "fail.test.", dns.TypeA)
	if rc != 0 || m == nil || m.Rcode != dns.RcodeServerFailure || m.Question[0].Name != "fail.test." {
		t.Errorf("servfail path: rc %d %v", rc, m)
	}
	// A rewrite to an invalid name is SERVFAIL.
	_, _, rc = run(t, [][]string{{"name", "regex", "(.*)", "{1}{1}{1}{1}{1}{1}{1}{1}{1}{1}"}}, strings.Repeat("a", 60)+".test.", dns.TypeA)
	if rc != dns.RcodeServerFailure {
		t.Errorf("invalid rewrite: rc %d", rc)
	}
}

func TestRuleErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"stop"},
		{"bogus", "a", "b"},
		{"answer", "name", "a", "b"},
		{"name", "a"},
		{"name", "glob", "a", "b"},
		{"name", "regex", "(", "b"},
		{"name", "regex", "(a)", "{1}{2}"},
		{"name", "suffix", "a", "b", "answer"},
		{"name", "suffix", "a", "b", "answer", "nope"},
		{"name", "regex", "(a)", "b", "answer", "auto", "answer", "name", "x", "y"},
		{"type", "A"},
		{"type", "A", "BOGUS"},
		{"class", "IN", "XX"},
		{"ttl", "a.", "x"},
		{"ttl", "a.", "20-10"},
		{"ttl", "glob", "a.", "10"},
		{"rcode", "a.", "NXDOMAIN", "WHAT"},
		{"edns0", "local", "set", "0xffee", "abc"},
	} {
		if _, err := NewRule(args...); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func FuzzNewRule(f *testing.F) {
	f.Add("name regex (.*)\\.a {1}.b answer auto")
	f.Add("ttl suffix .x 1-")
	f.Fuzz(func(t *testing.T, s string) {
		rule, err := NewRule(strings.Fields(s)...)
		if err != nil {
			return
		}
		m := new(dns.Msg)
		m.SetQuestion("www.example.org.", dns.TypeA)
		rule.Apply(m, "www.example.org.")
	})
}
