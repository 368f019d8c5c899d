package file

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

const exampleZone = `$ORIGIN example.org.
$TTL 3600
@       IN SOA ns1 hostmaster 2026120201 7200 3600 1209600 300
        IN NS  ns1
        IN NS  ns2.example.net.
        IN MX  10 mail
        IN A   192.0.2.1
ns1     IN A   192.0.2.53
mail    IN A   192.0.2.25
mail    IN AAAA 2001:db8::25
www     IN CNAME web
web     IN A   192.0.2.80
loop1   IN CNAME loop2
loop2   IN CNAME loop1
self    IN CNAME self
ext     IN CNAME www.example.net.
dangling IN CNAME nothere
txt     IN TXT "v=spf1 -all"
_http._tcp IN SRV 0 5 80 web
*.wild  IN A   192.0.2.99
*.wild  IN TXT "wild"
a.ent.deep IN A 192.0.2.7
sub     IN NS  ns.sub
ns.sub  IN A   192.0.2.100
1.2.0.192.in-addr.arpa. IN PTR x.
`

func loadTest(t *testing.T) *File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "db.example.org")
	if err := os.WriteFile(path, []byte(exampleZone), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path, []string{"example.org."}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func sect(rrs []dns.RR) string {
	var s []string
	for _, rr := range rrs {
		f := strings.Fields(rr.String())
		// owner type rdata, without TTL and class
		s = append(s, f[0]+" "+f[3]+" "+strings.Join(f[4:], " "))
	}
	return strings.Join(s, "; ")
}

func TestLookup(t *testing.T) {
	f := loadTest(t)
	f.Resolve = func(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
		m := new(dns.Msg)
		rr, _ := dns.NewRR(name + " 60 IN A 198.51.100.1")
		m.Answer = []dns.RR{rr}
		return m, nil
	}
	tests := []struct {
		q                 string
		t                 uint16
		rcode             int
		aa                bool
		answer, ns, extra string
	}{
		{"example.org.", dns.TypeSOA, 0, true, "example.org. SOA ns1.example.org. hostmaster.example.org. 2026120201 7200 3600 1209600 300",
			"example.org. NS ns1.example.org.; example.org. NS ns2.example.net.", ""},
		{"example.org.", dns.TypeNS, 0, true, "example.org. NS ns1.example.org.; example.org. NS ns2.example.net.", "", "ns1.example.org. A 192.0.2.53"},
		{"Example.ORG.", dns.TypeA, 0, true, "example.org. A 192.0.2.1", "example.org. NS ns1.example.org.; example.org. NS ns2.example.net.", ""},
		{"example.org.", dns.TypeMX, 0, true, "example.org. MX 10 mail.example.org.", "example.org. NS ns1.example.org.; example.org. NS ns2.example.net.",
			"mail.example.org. A 192.0.2.25; mail.example.org. AAAA 2001:db8::25"},
		{"example.org.", dns.TypeTXT, 0, true, "", "example.org. SOA ns1.example.org. hostmaster.example.org. 2026120201 7200 3600 1209600 300", ""},
		{"nope.example.org.", dns.TypeA, dns.RcodeNameError, true, "", "example.org. SOA ns1.example.org. hostmaster.example.org. 2026120201 7200 3600 1209600 300", ""},
		{"www.example.org.", dns.TypeA, 0, true, "www.example.org. CNAME web.example.org.; web.example.org. A 192.0.2.80", "example.org. NS ns1.example.org.; example.org. NS ns2.example.net.", ""},
		{"www.example.org.", dns.TypeAAAA, 0, true, "www.example.org. CNAME web.example.org.", "example.org. NS ns1.example.org.; example.org. NS ns2.example.net.", ""},
		{"www.example.org.", dns.TypeCNAME, 0, true, "www.example.org. CNAME web.example.org.", "example.org. NS ns1.example.org.; example.org. NS ns2.example.net.", ""},
		{"dangling.example.org.", dns.TypeA, dns.RcodeNameError, true, "dangling.example.org. CNAME nothere.example.org.", "example.org. SOA ns1.example.org. hostmaster.example.org. 2026120201 7200 3600 1209600 300", ""},
		{"ext.example.org.", dns.TypeA, 0, true, "ext.example.org. CNAME www.example.net.; www.example.net. A 198.51.100.1", "example.org. NS ns1.example.org.; example.org. NS ns2.example.net.", ""},
		{"_http._tcp.example.org.", dns.TypeSRV, 0, true, "_http._tcp.example.org. SRV 0 5 80 web.example.org.", "example.org. NS ns1.example.org.; example.org. NS ns2.example.net.", "web.example.org. A 192.0.2.80"},
		{"x.wild.example.org.", dns.TypeA, 0, true, "x.wild.example.org. A 192.0.2.99", "example.org. NS ns1.example.org.; example.org. NS ns2.example.net.", ""},
		{"x.wild.example.org.", dns.TypeMX, 0, true, "", "example.org. SOA ns1.example.org. hostmaster.example.org. 2026120201 7200 3600 1209600 300", ""},
		{"y.x.wild.example.org.", dns.TypeA, 0, true, "y.x.wild.example.org. A 192.0.2.99", "example.org. NS ns1.example.org.; example.org. NS ns2.example.net.", ""},
		{"wild.example.org.", dns.TypeA, 0, true, "", "example.org. SOA ns1.example.org. hostmaster.example.org. 2026120201 7200 3600 1209600 300", ""}, // ENT
		{"deep.example.org.", dns.TypeA, 0, true, "", "example.org. SOA ns1.example.org. hostmaster.example.org. 2026120201 7200 3600 1209600 300", ""},
		{"b.ent.deep.example.org.", dns.TypeA, dns.RcodeNameError, true, "", "example.org. SOA ns1.example.org. hostmaster.example.org. 2026120201 7200 3600 1209600 300", ""},
		{"sub.example.org.", dns.TypeA, 0, false, "", "sub.example.org. NS ns.sub.example.org.", "ns.sub.example.org. A 192.0.2.100"},
		{"host.sub.example.org.", dns.TypeA, 0, false, "", "sub.example.org. NS ns.sub.example.org.", "ns.sub.example.org. A 192.0.2.100"},
		{"sub.example.org.", dns.TypeNS, 0, false, "", "sub.example.org. NS ns.sub.example.org.", "ns.sub.example.org. A 192.0.2.100"},
	}
	for _, tt := range tests {
		r := new(dns.Msg)
		r.SetQuestion(tt.q, tt.t)
		rec := plugutil.NewRecorder(nil)
		rc, err := f.ServeDNS(context.Background(), rec, r)
		if err != nil || rc != 0 {
			t.Errorf("%s %s: rc %d err %v", tt.q, dns.TypeToString[tt.t], rc, err)
			continue
		}
		m := rec.Msg
		if m.Rcode != tt.rcode || m.Authoritative != tt.aa || sect(m.Answer) != tt.answer || sect(m.Ns) != tt.ns || sect(m.Extra) != tt.extra {
			t.Errorf("%s %s:\n got rcode=%d aa=%v\n  an: %s\n  ns: %s\n  ex: %s\nwant rcode=%d aa=%v\n  an: %s\n  ns: %s\n  ex: %s",
				tt.q, dns.TypeToString[tt.t], m.Rcode, m.Authoritative, sect(m.Answer), sect(m.Ns), sect(m.Extra),
				tt.rcode, tt.aa, tt.answer, tt.ns, tt.extra)
		}
		if m.Question[0].Name != tt.q {
			t.Errorf("question case changed: %s", m.Question[0].Name)
		}
	}
	// A two-name CNAME loop stops after 8 hops with what it has (CoreDNS
	// does the same); out of zone goes to next (none: REFUSED).
	r := new(dns.Msg)
	r.SetQuestion("loop1.example.org.", dns.TypeA)
	rec := plugutil.NewRecorder(nil)
	if f.ServeDNS(context.Background(), rec, r); rec.Msg == nil || len(rec.Msg.Answer) != 10 {
		t.Errorf("loop: %v", rec.Msg)
	}
	for _, q := range []struct {
		name string
		rc   int
	}{{"self.example.org.", dns.RcodeServerFailure}, {"example.net.", dns.RcodeRefused}} {
		r := new(dns.Msg)
		r.SetQuestion(q.name, dns.TypeA)
		rec := plugutil.NewRecorder(nil)
		rc, _ := f.ServeDNS(context.Background(), rec, r)
		if rc != q.rc && (rec.Msg == nil || rec.Msg.Rcode != q.rc) {
			t.Errorf("%s: rc %d msg %v", q.name, rc, rec.Msg)
		}
	}
}

func TestParseErrorsAndReload(t *testing.T) {
	for _, bad := range []string{
		"@ IN A 1.2.3.4\n", // no SOA
		"$ORIGIN example.org.\nother.org. IN SOA a b 1 2 3 4 5\n",
		"@ IN SOA a b 1 2 3 4 5\nx IN A 300.1.1.1\n",
	} {
		if _, err := Parse(strings.NewReader(bad), "example.org.", "db"); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	f := loadTest(t)
	path := f.Zones["example.org."].Path
	os.WriteFile(path, []byte(strings.Replace(exampleZone, "192.0.2.80", "192.0.2.81", 1)), 0o644)
	f.ReloadNow()
	if got := f.Zones["example.org."].Current().names["web.example.org."][dns.TypeA][0].(*dns.A).A.String(); got != "192.0.2.80" {
		t.Fatalf("reloaded without a serial change: %s", got)
	}
	os.WriteFile(path, []byte(strings.Replace(strings.Replace(exampleZone, "192.0.2.80", "192.0.2.81", 1), "2026120201", "2026120202", 1)), 0o644)
	f.ReloadNow()
	if got := f.Zones["example.org."].Current().names["web.example.org."][dns.TypeA][0].(*dns.A).A.String(); got != "192.0.2.81" {
		t.Fatalf("not reloaded after serial change: %s", got)
	}
	os.WriteFile(path, []byte("garbage ( \n"), 0o644)
	f.ReloadNow()
	if f.Zones["example.org."].Current().Serial() != 2026120202 {
		t.Fatal("bad reload replaced the zone")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(exampleZone)
	f.Add("@ IN SOA a b 1 2 3 4 5\n* IN CNAME @\n")
	f.Fuzz(func(t *testing.T, s string) {
		if strings.Contains(s, "$INCLUDE") {
			return // no file access from the fuzzer
		}
		z, err := Parse(strings.NewReader(s), "example.org.", "fuzz")
		if err != nil {
			return
		}
		for _, q := range []string{"example.org.", "a.example.org.", "b.a.example.org.", "x.y.example.org."} {
			for _, qt := range []uint16{dns.TypeA, dns.TypeCNAME, dns.TypeNS, dns.TypeSOA, dns.TypeMX} {
				z.Lookup(q, qt, nil)
			}
		}
	})
}
