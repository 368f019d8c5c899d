package hosts

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

const hostsText = `# comment
127.0.0.1 localhost
10.0.0.1   web.example.org web   # trailing comment
10.0.0.2 web.example.org
fd00::1 web.example.org
::ffff:10.0.0.9 mapped.example.org
fe80::1%eth0 linklocal.example.org
192.168.1.10 *.wild.example.org
192.168.1.11 a.wild.example.org
not-an-ip bogus.example.org
10.0.0.3
`

type nextStub struct{ called int }

func (n *nextStub) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	n.called++
	m := new(dns.Msg)
	m.SetRcode(r, dns.RcodeNameError)
	return dns.RcodeNameError, w.WriteMsg(m)
}
func (n *nextStub) Name() string { return "stub" }

func newTestHosts(t *testing.T, mod func(*Options)) (*Hosts, *nextStub) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(path, []byte(hostsText), 0o644); err != nil {
		t.Fatal(err)
	}
	o := DefaultOptions()
	o.Path = path
	o.Origins = []string{"."}
	o.Inline = []string{"10.9.9.9 inline.example.org web.example.org"}
	if mod != nil {
		mod(&o)
	}
	h := New(o, nil)
	n := &nextStub{}
	h.Next = n
	return h, n
}

func ask(t *testing.T, h *Hosts, name string, qt uint16) (int, *dns.Msg) {
	t.Helper()
	r := new(dns.Msg)
	r.SetQuestion(name, qt)
	rec := plugutil.NewRecorder(nil)
	rc, err := h.ServeDNS(context.Background(), rec, r)
	if err != nil && rc != dns.RcodeServerFailure {
		t.Fatalf("%s: %v", name, err)
	}
	return rc, rec.Msg
}

func answers(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	return out
}

func TestServeDNS(t *testing.T) {
	h, next := newTestHosts(t, nil)
	tests := []struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string
	}{
		{"web.example.org.", dns.TypeA, 0, []string{
			"web.example.org. 3600 IN A 10.0.0.1", "web.example.org. 3600 IN A 10.0.0.2", "web.example.org. 3600 IN A 10.9.9.9"}},
		{"WEB.Example.ORG.", dns.TypeA, 0, []string{
			"web.example.org. 3600 IN A 10.0.0.1", "web.example.org. 3600 IN A 10.0.0.2", "web.example.org. 3600 IN A 10.9.9.9"}},
		{"web.example.org.", dns.TypeAAAA, 0, []string{"web.example.org. 3600 IN AAAA fd00::1"}},
		{"web.", dns.TypeA, 0, []string{"web. 3600 IN A 10.0.0.1"}},
		{"web.", dns.TypeAAAA, 0, nil}, // NODATA: known name, other family
		{"web.example.org.", dns.TypeMX, 0, nil},
		{"mapped.example.org.", dns.TypeA, 0, []string{"mapped.example.org. 3600 IN A 10.0.0.9"}},
		{"linklocal.example.org.", dns.TypeAAAA, 0, []string{"linklocal.example.org. 3600 IN AAAA fe80::1"}},
		{"x.wild.example.org.", dns.TypeA, 0, []string{"x.wild.example.org. 3600 IN A 192.168.1.10"}},
		{"a.wild.example.org.", dns.TypeA, 0, []string{"a.wild.example.org. 3600 IN A 192.168.1.11"}},
		{"1.2.3.4.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, nil}, // next
		{"1.0.0.10.in-addr.arpa.", dns.TypePTR, 0, []string{"1.0.0.10.in-addr.arpa. 3600 IN PTR web.example.org.", "1.0.0.10.in-addr.arpa. 3600 IN PTR web."}},
		{"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", dns.TypePTR, 0, []string{
			"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 3600 IN PTR web.example.org."}},
		{"missing.example.org.", dns.TypeA, dns.RcodeServerFailure, nil},
		{"deep.x.wild.example.org.", dns.TypeA, dns.RcodeServerFailure, nil},
		{"wild.example.org.", dns.TypeA, dns.RcodeServerFailure, nil},
		{"bogus.example.org.", dns.TypeA, dns.RcodeServerFailure, nil},
	}
	for _, tt := range tests {
		rc, m := ask(t, h, tt.name, tt.qtype)
		if rc != tt.rcode {
			t.Errorf("%s %s: rcode %d, want %d", tt.name, dns.TypeToString[tt.qtype], rc, tt.rcode)
			continue
		}
		if rc != 0 {
			continue
		}
		if !m.Authoritative || m.Question[0].Name != tt.name {
			t.Errorf("%s: aa=%v question=%v", tt.name, m.Authoritative, m.Question)
		}
		if got := answers(m); strings.Join(got, "|") != strings.Join(tt.answer, "|") {
			t.Errorf("%s %s:\n got %q\nwant %q", tt.name, dns.TypeToString[tt.qtype], got, tt.answer)
		}
	}
	if next.called != 1 {
		t.Errorf("next called %d times, want 1 (unknown PTR)", next.called)
	}
}

func TestFallthroughAndOptions(t *testing.T) {
	h, next := newTestHosts(t, func(o *Options) {
		o.Fall.SetZonesFromArgs([]string{"example.org"})
		o.FallUnsupported = true
		o.TTL = 60
		o.Reverse = false
	})
	if rc, _ := ask(t, h, "missing.example.org.", dns.TypeA); rc != dns.RcodeNameError {
		t.Errorf("fallthrough in scope: rcode %d", rc)
	}
	if rc, _ := ask(t, h, "missing.", dns.TypeA); rc != dns.RcodeServerFailure {
		t.Errorf("fallthrough out of scope: rcode %d", rc)
	}
	if rc, _ := ask(t, h, "web.example.org.", dns.TypeTXT); rc != dns.RcodeNameError {
		t.Errorf("fallthrough_unsupported: rcode %d", rc)
	}
	if _, m := ask(t, h, "web.example.org.", dns.TypeAAAA); m.Answer[0].Header().Ttl != 60 {
		t.Errorf("ttl %d", m.Answer[0].Header().Ttl)
	}
	if rc, _ := ask(t, h, "1.0.0.10.in-addr.arpa.", dns.TypePTR); rc != dns.RcodeNameError {
		t.Errorf("no_reverse: rcode %d", rc)
	}
	if next.called != 3 {
		t.Errorf("next called %d", next.called)
	}
}

func TestOriginsAndReload(t *testing.T) {
	h, _ := newTestHosts(t, func(o *Options) { o.Origins = []string{"wild.example.org."} })
	if rc, _ := ask(t, h, "web.example.org.", dns.TypeA); rc != dns.RcodeNameError {
		t.Errorf("out of zone goes to next: rcode %d", rc)
	}
	if rc, m := ask(t, h, "a.wild.example.org.", dns.TypeA); rc != 0 || len(m.Answer) != 1 {
		t.Errorf("in zone: rcode %d %v", rc, m)
	}
	// Entries outside the origins are not even kept (no PTR for them).
	if rc, _ := ask(t, h, "1.0.0.10.in-addr.arpa.", dns.TypePTR); rc != dns.RcodeNameError {
		t.Errorf("PTR of an out-of-zone entry: rcode %d", rc)
	}
	if err := os.WriteFile(h.opts.Path, []byte("10.1.1.1 b.wild.example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.Load()
	if rc, m := ask(t, h, "b.wild.example.org.", dns.TypeA); rc != 0 || answers(m)[0] != "b.wild.example.org. 3600 IN A 10.1.1.1" {
		t.Errorf("after reload: %d %v", rc, m)
	}
	if rc, _ := ask(t, h, "a.wild.example.org.", dns.TypeA); rc != dns.RcodeServerFailure {
		t.Errorf("entry removed from the file still answers: rcode %d", rc)
	}
	if got := h.Entries(); got != 2 { // one name plus its PTR
		t.Errorf("entries %d, want 2", got)
	}
}

func TestParseLongLine(t *testing.T) {
	text := "10.0.0.1 a.\n10.0.0.2 " + strings.Repeat("x", 3*maxLine) + "\n10.0.0.3 c.\n"
	m := Parse(strings.NewReader(text), []string{"."}, false)
	if len(m.name4["a."]) != 1 || len(m.name4["c."]) != 1 || m.Len() != 2 {
		t.Fatalf("long line broke parsing: %+v", m.name4)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(hostsText)
	f.Add("::1 localhost ip6-localhost\n#x\n\n1.2.3.4\t*.a.b c")
	f.Fuzz(func(t *testing.T, s string) {
		m := Parse(strings.NewReader(s), []string{"."}, true)
		for name, ips := range m.name4 {
			if !strings.HasSuffix(name, ".") || strings.ToLower(name) != name {
				t.Fatalf("name %q not normalized", name)
			}
			for _, ip := range ips {
				if ip.To4() == nil {
					t.Fatalf("non-v4 %v under %q", ip, name)
				}
			}
			// Every stored name must make a packable record.
			rr := &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET}, A: ips[0]}
			msg := new(dns.Msg)
			msg.Answer = []dns.RR{rr}
			if _, err := msg.Pack(); err != nil {
				t.Fatalf("unpackable name %q: %v", name, err)
			}
		}
	})
}
