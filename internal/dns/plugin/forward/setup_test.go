package forward

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/dnstest"
	_ "github.com/podnet/podnet/internal/dns/plugin/hosts"
	_ "github.com/podnet/podnet/internal/dns/plugin/whoami"
)

func TestParse(t *testing.T) {
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("search example.org\nnameserver 127.0.0.1\nnameserver ::1\noptions ndots:5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []dnstest.ParseCase[Config]{
		{In: "forward . 127.0.0.1", Want: func(c Config) bool {
			return c.From == "." && len(c.To) == 1 && c.To[0] == "127.0.0.1:53" && c.MaxFails == 2 && c.Expire == 10*time.Second && c.Policy == Random
		}},
		{In: "forward example.org dns://127.0.0.1:5300 [::1]:5301 ::1 " + resolv, Want: func(c Config) bool {
			return c.From == "example.org." && strings.Join(c.To, ",") == "127.0.0.1:5300,[::1]:5301,[::1]:53,127.0.0.1:53,[::1]:53"
		}},
		{In: "forward . 127.0.0.1 {\n except a.org B.org\n force_tcp\n prefer_udp\n expire 3s\n max_fails 0\n policy round_robin\n health_check 2s no_rec domain example.org\n max_concurrent 100\n next NXDOMAIN\n failover SERVFAIL REFUSED\n read_timeout 1s\n}", Want: func(c Config) bool {
			return strings.Join(c.Except, ",") == "a.org.,b.org." && c.ForceTCP && c.PreferUDP && c.Expire == 3*time.Second && c.MaxFails == 0 &&
				c.Policy == RoundRobin && c.HCInterval == 2*time.Second && c.HCNoRec && c.HCDomain == "example.org." && c.MaxConcurrent == 100 &&
				len(c.Next) == 1 && c.Next[0] == dns.RcodeNameError && len(c.Failover) == 2 && c.ReadTimeout == time.Second
		}},
		{In: "forward", Err: "Testfile:1 - Error during parsing: Wrong argument count"},
		{In: "forward .", Err: "Testfile:1 - Error during parsing: Wrong argument count"},
		{In: "forward . tls://127.0.0.1", Err: "Testfile:1 - Error during parsing: 'tls' is not supported as a destination protocol in forward: tls://127.0.0.1"},
		{In: "forward . dns.example.org", Err: `Testfile:1 - Error during parsing: not an IP address or file: "dns.example.org"`},
		{In: "forward . 127.0.0.1 {\n policy fastest\n}", Err: "Testfile:2 - Error during parsing: unknown policy 'fastest'"},
		{In: "forward . 127.0.0.1 {\n bogus\n}", Err: "Testfile:2 - Error during parsing: unknown property 'bogus'"},
		{In: "forward . 127.0.0.1 {\n max_fails x\n}", Err: "Testfile:2 - Error during parsing: max_fails: invalid number 'x'"},
		{In: "forward . 127.0.0.1 {\n max_concurrent -1\n}", Err: "Testfile:2 - Error during parsing: max_concurrent can't be negative: -1"},
		{In: "forward . 127.0.0.1 {\n expire -1s\n}", Err: "Testfile:2 - Error during parsing: expire can't be negative: -1s"},
		{In: "forward . 127.0.0.1 {\n health_check 1s bogus\n}", Err: "Testfile:2 - Error during parsing: health_check: unknown option bogus"},
		{In: "forward . 127.0.0.1 {\n next WHAT\n}", Err: "Testfile:2 - Error during parsing: WHAT is not a valid rcode"},
		{In: "forward . 127.0.0.1 {\n failover NOERROR\n}", Err: "Testfile:2 - Error during parsing: NoError cannot be used in failover"},
		{In: "forward . 127.0.0.1 {\n force_tcp yes\n}", Err: "Testfile:2 - Error during parsing: Wrong argument count"},
		{In: "forward . 127.0.0.1 {\n tls\n}", Err: "Testfile:2 - Error during parsing: 'tls' is not supported by podnet dns"},
		{In: "forward . " + strings.Repeat("127.0.0.1 ", 16), Err: "more than 15 TOs configured: 16"},
	}
	dnstest.RunParse(t, func(c *pdns.Controller) (Config, error) {
		c.Next()
		return parseStanza(c)
	}, tests)
}

// TestServer forwards through one of our servers to another (the
// upstream answers from hosts), checked with dig over UDP and TCP.
func TestServer(t *testing.T) {
	up := dnstest.Start(t, ".:0 {\n hosts {\n  10.0.0.1 web.example.org\n  fallthrough\n }\n whoami\n}\n")
	s := dnstest.Start(t, ".:0 {\n forward . "+up.Addr+" {\n  except local.test\n }\n hosts {\n  10.9.9.9 x.local.test\n  fallthrough\n }\n}\n")
	r := dnstest.Query(t, s.Addr, "Web.Example.org.", dns.TypeA)
	if r.Rcode != 0 || !r.Authoritative || len(r.Answer) != 1 || r.Question[0].Name != "Web.Example.org." {
		t.Fatalf("forwarded A: %v", r)
	}
	out := dnstest.Dig(t, s.Addr, "+tcp", "web.example.org", "A")
	if !strings.Contains(out, "10.0.0.1") || !strings.Contains(out, "flags: qr aa rd") {
		t.Fatalf("dig +tcp:\n%s", out)
	}
	// whoami upstream: the address it saw is ours, over TCP when the client used TCP.
	out = dnstest.Dig(t, s.Addr, "+tcp", "other.org", "A")
	if !strings.Contains(out, "_tcp.other.org.") {
		t.Fatalf("TCP not kept:\n%s", out)
	}
	r = dnstest.Query(t, s.Addr, "x.local.test.", dns.TypeA)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "10.9.9.9" {
		t.Fatalf("except: %v", r)
	}
}
