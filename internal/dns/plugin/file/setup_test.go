package file

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/dnstest"
	_ "github.com/podnet/podnet/internal/dns/plugin/hosts"
)

func TestParse(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "db.example.org")
	os.WriteFile(good, []byte(exampleZone), 0o644)
	bad := filepath.Join(dir, "db.bad")
	os.WriteFile(bad, []byte("@ IN SOA a b 1 2 3 4 5\nx IN A 999.1.1.1\n"), 0o644)
	tests := []dnstest.ParseCase[*File]{
		{In: "file " + good + " example.org", Want: func(f *File) bool {
			return f.Reload == time.Minute && f.Zones["example.org."].Current().SOA != nil
		}},
		{In: "file /nonexistent/db example.org {\n reload 0\n reload_by_mtime\n fallthrough\n}", Want: func(f *File) bool {
			return f.Reload == 0 && f.ReloadByMtime && f.Fall.Through("x.example.org.") && f.Zones["example.org."].Current().SOA == nil
		}},
		{In: "file", Err: "Testfile:1 - Error during parsing: Wrong argument count"},
		{In: "file " + bad + " example.org", Err: "Testfile:1 - Error during parsing: failed to parse file"},
		{In: "file " + good + " example.net", Err: "Testfile:1 - Error during parsing: file"}, // SOA owner mismatch
		{In: "file " + good + " example.org {\n reload\n}", Err: "Testfile:2 - Error during parsing: reload duration value is expected"},
		{In: "file " + good + " example.org {\n reload x\n}", Err: "Testfile:2 - Error during parsing: invalid duration for reload 'x'"},
		{In: "file " + good + " example.org {\n bogus\n}", Err: "Testfile:2 - Error during parsing: unknown property 'bogus'"},
	}
	dnstest.RunParse(t, parse, tests)
}

func TestServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.example.org")
	if err := os.WriteFile(path, []byte(exampleZone), 0o644); err != nil {
		t.Fatal(err)
	}
	s := dnstest.Start(t, "example.org:0 {\n file "+path+"\n}\n"+
		"example.net:0 {\n hosts {\n  192.0.2.200 www.example.net\n }\n}\n")
	r := dnstest.Query(t, s.Addr, "nope.Example.org.", dns.TypeA)
	if r.Rcode != dns.RcodeNameError || !r.Authoritative || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
		t.Fatalf("NXDOMAIN: %v", r)
	}
	// The out-of-zone CNAME target is resolved through the server (the hosts block).
	r = dnstest.Query(t, s.Addr, "ext.example.org.", dns.TypeA)
	if r.Rcode != 0 || len(r.Answer) != 2 || r.Answer[1].(*dns.A).A.String() != "192.0.2.200" {
		t.Fatalf("CNAME to another block: %v", r)
	}
	out := dnstest.Dig(t, s.Addr, "+tcp", "example.org", "MX")
	for _, want := range []string{"flags: qr aa rd", "MX\t10 mail.example.org.", "AUTHORITY: 2", "mail.example.org.\t3600\tIN\tAAAA\t2001:db8::25"} {
		if !strings.Contains(out, want) {
			t.Fatalf("dig MX: no %q in\n%s", want, out)
		}
	}
	out = dnstest.Dig(t, s.Addr, "host.sub.example.org", "A")
	if !strings.Contains(out, "flags: qr rd;") || !strings.Contains(out, "sub.example.org.\t3600\tIN\tNS\tns.sub.example.org.") {
		t.Fatalf("referral:\n%s", out)
	}
}
