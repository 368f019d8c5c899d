package hosts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/dnstest"
)

func TestParse(t *testing.T) {
	tests := []dnstest.ParseCase[Options]{
		{In: "hosts", Want: func(o Options) bool {
			return o.Path == "/etc/hosts" && o.TTL == 3600 && o.Reload == 5*time.Second && o.Reverse && len(o.Origins) == 1 && o.Origins[0] == "."
		}},
		{In: "hosts /nonexistent example.org example.net", Want: func(o Options) bool {
			return o.Path == "/nonexistent" && len(o.Origins) == 2 && o.Origins[1] == "example.net."
		}},
		{In: "hosts { \n 10.0.0.1 a.example.org b \n ttl 30 \n reload 0 \n no_reverse \n fallthrough in-addr.arpa \n}", Want: func(o Options) bool {
			return len(o.Inline) == 1 && o.Inline[0] == "10.0.0.1 a.example.org b" && o.TTL == 30 && o.Reload == 0 && !o.Reverse &&
				len(o.Fall.Zones) == 1 && o.Fall.Zones[0] == "in-addr.arpa."
		}},
		{In: "hosts { \n fallthrough \n fallthrough_unsupported \n}", Want: func(o Options) bool { return o.FallUnsupported }},
		{In: "hosts { \n ttl \n}", Err: "Testfile:2 - Error during parsing: ttl needs a time in second"},
		{In: "hosts { \n ttl x \n}", Err: "Testfile:2 - Error during parsing: ttl needs a number of second"},
		{In: "hosts { \n ttl 0 \n}", Err: "Testfile:2 - Error during parsing: ttl provided is invalid"},
		{In: "hosts { \n ttl 65536 \n}", Err: "Testfile:2 - Error during parsing: ttl provided is invalid"},
		{In: "hosts { \n reload \n}", Err: "Testfile:2 - Error during parsing: reload needs a duration (zero seconds to disable)"},
		{In: "hosts { \n reload 5x \n}", Err: "Testfile:2 - Error during parsing: invalid duration for reload '5x'"},
		{In: "hosts { \n reload -1s \n}", Err: "Testfile:2 - Error during parsing: invalid negative duration for reload '-1s'"},
		{In: "hosts { \n fallthrough \n bogus \n}", Err: "Testfile:3 - Error during parsing: unknown property 'bogus'"},
		{In: "hosts { \n fallthrough_unsupported x \n}", Err: "Testfile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'x'"},
		{In: "hosts { \n fallthrough_unsupported \n}", Err: "requires fallthrough"},
		{In: "hosts\nhosts", Err: "Testfile:2 - Error during parsing: this plugin can only be used once per Server Block"},
	}
	dnstest.RunParse(t, parse, tests)
}

// TestServer runs the plugin in a real server and asks with dig and the
// miekg client.
func TestServer(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hosts")
	if err := os.WriteFile(path, []byte("10.0.0.1 web.example.org web\nfd00::1 web.example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := dnstest.Start(t, ".:0 {\n hosts "+path+" {\n  10.0.0.2 inline.example.org\n  reload 50ms\n }\n}\n")
	r := dnstest.Query(t, s.Addr, "WEB.example.org.", dns.TypeA)
	if r.Rcode != 0 || !r.Authoritative || len(r.Answer) != 1 || r.Answer[0].Header().Name != "web.example.org." || r.Question[0].Name != "WEB.example.org." {
		t.Fatalf("A: %v", r)
	}
	r = dnstest.Query(t, s.Addr, "web.", dns.TypeAAAA)
	if r.Rcode != 0 || !r.Authoritative || len(r.Answer) != 0 {
		t.Fatalf("NODATA: %v", r)
	}
	r = dnstest.Query(t, s.Addr, "missing.example.org.", dns.TypeA)
	if r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("unknown name: %v", r)
	}
	out := dnstest.Dig(t, s.Addr, "+tcp", "-x", "10.0.0.1")
	if !strings.Contains(out, "PTR\tweb.example.org.") || !strings.Contains(out, "PTR\tweb.") || !strings.Contains(out, "flags: qr aa rd") {
		t.Fatalf("dig -x:\n%s", out)
	}
	// The reload picks up a changed file.
	if err := os.WriteFile(path, []byte("10.0.0.7 web.example.org\n# longer now\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r = dnstest.Query(t, s.Addr, "web.example.org.", dns.TypeA)
		if len(r.Answer) == 1 && r.Answer[0].(*dns.A).A.String() == "10.0.0.7" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reload not seen: %v", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
