package rewrite

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/dnstest"
	_ "github.com/podnet/podnet/internal/dns/plugin/file"
	_ "github.com/podnet/podnet/internal/dns/plugin/hosts"
)

func TestParse(t *testing.T) {
	dnstest.RunParse(t, parse, []dnstest.ParseCase[[]Rule]{
		{In: "rewrite name a.org b.org", Want: func(r []Rule) bool { return len(r) == 1 }},
		{In: "rewrite name a.org b.org\nrewrite continue type A AAAA\nrewrite ttl x.org 30", Want: func(r []Rule) bool { return len(r) == 3 }},
		{In: "rewrite stop {\n name regex (.*)\\.a\\.org {1}.b.org\n answer name (.*)\\.b\\.org {1}.a.org\n}", Want: func(r []Rule) bool { return len(r) == 1 }},
		{In: "rewrite", Err: "Testfile:1 - Error during parsing: no rule type specified for rewrite"},
		{In: "rewrite\nrewrite name regex ( b", Err: "Testfile:1 - Error during parsing: no rule type specified"},
		{In: "rewrite name a.org b.org\nrewrite name regex ( b", Err: "Testfile:2 - Error during parsing: invalid regex matching pattern: ("},
		{In: "rewrite bogus a b", Err: `Testfile:1 - Error during parsing: invalid rule type "bogus"`},
		{In: "rewrite name suffix .a .b answer auto answer name x y", Err: "auto name answer rule cannot be combined"},
		{In: "rewrite ttl x.org 20-10", Err: "Testfile:1 - Error during parsing: invalid TTL '20-10' for a ttl rule"},
	})
}

func TestServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	os.WriteFile(path, []byte("$ORIGIN example.org.\n@ 3600 IN SOA ns h 1 2 3 4 5\n@ IN NS ns\nns IN A 192.0.2.53\nwww IN CNAME web\nweb 3600 IN A 192.0.2.80\n"), 0o644)
	s := dnstest.Start(t, "example.net:0 example.org:0 {\n rewrite name suffix .example.net .example.org answer auto\n rewrite ttl web.example.org 60\n file "+path+" example.org\n}\n")
	r := dnstest.Query(t, s.Addr, "WWW.example.net.", dns.TypeA)
	if r.Rcode != 0 || r.Question[0].Name != "WWW.example.net." || len(r.Answer) != 2 ||
		r.Answer[0].String() != "www.example.net.\t3600\tIN\tCNAME\tweb.example.net." || r.Answer[1].Header().Name != "web.example.net." {
		t.Fatalf("suffix rewrite: %v", r)
	}
	out := dnstest.Dig(t, s.Addr, "nothing.example.net", "A")
	if !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, ";nothing.example.net.") {
		t.Fatalf("NXDOMAIN through rewrite:\n%s", out)
	}
}
