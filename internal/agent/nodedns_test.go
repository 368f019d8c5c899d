package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podnet/podnet/internal/api"
	_ "github.com/podnet/podnet/internal/dns/plugin/all"
)

func TestRenderNodeCorefile(t *testing.T) {
	up := filepath.Join(t.TempDir(), "up.conf")
	if err := os.WriteFile(up, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := string(RenderNodeCorefile(api.DefaultCorefile, "10.96.0.10", up))
	if !strings.HasPrefix(got, ".:53 {\n    bind 10.96.0.10\n    errors\n") || !strings.Contains(got, "forward . "+up+" {\n       max_concurrent 1000\n    }") {
		t.Errorf("rendered:\n%s", got)
	}
	if err := checkCorefile("Corefile", []byte(got)); err != nil {
		t.Errorf("rendered default does not load: %v", err)
	}
	none := string(RenderNodeCorefile(api.DefaultCorefile, "10.96.0.10", "none"))
	if strings.Contains(none, "forward") || strings.Contains(none, "max_concurrent") || !strings.Contains(none, "    cache 30\n") {
		t.Errorf("forward not dropped:\n%s", none)
	}
	if err := checkCorefile("Corefile", []byte(none)); err != nil {
		t.Errorf("rendered without forward does not load: %v\n%s", err, none)
	}
	// A block with its own bind keeps it; every other block gets one.
	two := "a.example:53 {\n    bind 127.0.0.1\n    whoami\n}\n# c {\nb.example {\n    whoami # }\n}\n"
	out := string(RenderNodeCorefile(two, "10.96.0.10", ""))
	if strings.Count(out, "bind") != 2 || !strings.Contains(out, "b.example {\n    bind 10.96.0.10\n") {
		t.Errorf("two blocks:\n%s", out)
	}
	if err := checkCorefile("Corefile", []byte(".:53 {\n    forwrd . 127.0.0.1\n}\n")); err == nil || !strings.Contains(err.Error(), "unknown directive 'forwrd'") {
		t.Errorf("bad Corefile: %v", err)
	}
}

func TestNodeDNSRules(t *testing.T) {
	r := NodeDNSRules("10.96.0.10")
	for _, want := range []string{
		"delete table inet podnet-dns",
		"type filter hook prerouting priority raw;",
		"ip daddr 10.96.0.10 udp dport 53 notrack",
		"ip saddr 10.96.0.10 tcp sport 53 notrack",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("rules lack %q:\n%s", want, r)
		}
	}
	if !strings.Contains(NodeDNSRules("fd00::a"), "ip6 daddr fd00::a udp dport 53 notrack") {
		t.Errorf("IPv6 rules")
	}
}

// FuzzRenderNodeCorefile: whatever a ConfigMap holds, rendering never
// panics, and a Corefile that loads still loads once rendered (the bind
// and the dropped forward keep it well-formed).
func FuzzRenderNodeCorefile(f *testing.F) {
	f.Add(api.DefaultCorefile)
	f.Add(".:53 {\n    whoami\n}\n")
	f.Add("a:53 {\n forward . /etc/resolv.conf {\n  max_fails 2\n }\n whoami\n}\nb {\n bind 127.0.0.1\n whoami\n}\n")
	f.Add("{{{\n}}}\n#{\n")
	f.Fuzz(func(t *testing.T, src string) {
		out := RenderNodeCorefile(src, "10.96.0.10", "none")
		if checkCorefile("Corefile", []byte(src)) != nil {
			return
		}
		if strings.Contains(src, "import") || strings.Contains(src, "\"") || strings.Contains(src, "`") || strings.Contains(src, "forward") {
			return // snippets, quoted braces and forward's own args are out of the line-based scope
		}
		if err := checkCorefile("Corefile", out); err != nil && !strings.Contains(err.Error(), "bind") {
			t.Fatalf("%q loads, rendered %q does not: %v", src, out, err)
		}
	})
}
