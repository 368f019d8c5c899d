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
	render := func(src, up string) string {
		t.Helper()
		b, err := RenderNodeCorefile(src, "10.96.0.10", up)
		if err != nil {
			t.Fatalf("render %q: %v", src, err)
		}
		return string(b)
	}
	got := render(api.DefaultCorefile, up)
	if !strings.HasPrefix(got, ".:53 {\n    bind 10.96.0.10\n    errors\n") || !strings.Contains(got, "forward . "+up+" {\n        max_concurrent 1000\n    }") {
		t.Errorf("rendered:\n%s", got)
	}
	if err := checkCorefile("Corefile", []byte(got)); err != nil {
		t.Errorf("rendered default does not load: %v", err)
	}
	none := render(api.DefaultCorefile, "none")
	if strings.Contains(none, "forward") || strings.Contains(none, "max_concurrent") || !strings.Contains(none, "    cache 30\n") {
		t.Errorf("forward not dropped:\n%s", none)
	}
	if err := checkCorefile("Corefile", []byte(none)); err != nil {
		t.Errorf("rendered without forward does not load: %v\n%s", err, none)
	}
	// A block with its own bind keeps it; every other block gets one.
	two := "a.example:53 {\n    bind 127.0.0.1\n    whoami\n}\n# c {\nb.example {\n    whoami # }\n}\n"
	out := render(two, "")
	if strings.Count(out, "bind") != 2 || !strings.Contains(out, "b.example {\n    bind 10.96.0.10\n") {
		t.Errorf("two blocks:\n%s", out)
	}
	if err := checkCorefile("Corefile", []byte(".:53 {\n    forwrd . 127.0.0.1\n}\n")); err == nil || !strings.Contains(err.Error(), "unknown directive 'forwrd'") {
		t.Errorf("bad Corefile: %v", err)
	}
	// Snippets, quoted braces, one-line blocks and {$ENV} survive: the
	// rendering works on the parse tree, not on lines.
	tricky := "(common) {\n  errors\n  forward . /etc/resolv.conf { max_fails 2 }\n}\n" +
		"cluster.local:53 {\n  import common\n  template IN TXT { answer \"{{ .Name }} 60 IN TXT \\\"}{\\\"\" }\n  log . \"{$LOGFMT}\"\n}\n"
	t.Setenv("LOGFMT", "{type} {name}")
	out = render(tricky, up)
	for _, want := range []string{
		"cluster.local:53 {\n    bind 10.96.0.10\n    errors\n    forward . " + up + " { max_fails 2 }\n",
		`answer "{{ .Name }} 60 IN TXT \"}{\""`, `log . "{$LOGFMT}"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("tricky: rendered lacks %q:\n%s", want, out)
		}
	}
	if err := checkCorefile("Corefile", []byte(out)); err != nil {
		t.Errorf("tricky rendered does not load: %v\n%s", err, out)
	}
	if out := render(tricky, "none"); strings.Contains(out, "forward") || strings.Contains(out, "max_fails") {
		t.Errorf("forward from a snippet not dropped:\n%s", out)
	}
	// A parse error names the ConfigMap's own line.
	if _, err := RenderNodeCorefile(".:53 {\n  whoami\n\n  log {\n}\n", "10.96.0.10", ""); err == nil || !strings.Contains(err.Error(), "Corefile:") {
		t.Errorf("unbalanced: %v", err)
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
// and the dropped forward keep it well-formed), snippets and quotes too.
func FuzzRenderNodeCorefile(f *testing.F) {
	f.Add(api.DefaultCorefile)
	f.Add(".:53 {\n    whoami\n}\n")
	f.Add("a:53 {\n forward . /etc/resolv.conf {\n  max_fails 2\n }\n whoami\n}\nb {\n bind 127.0.0.1\n whoami\n}\n")
	f.Add("{{{\n}}}\n#{\n")
	f.Add("(s) {\n forward . /etc/resolv.conf { max_fails 1 }\n}\n. {\n import s\n log \"{\"\n}\n")
	f.Fuzz(func(t *testing.T, src string) {
		out, rerr := RenderNodeCorefile(src, "10.96.0.10", "none")
		if checkCorefile("Corefile", []byte(src)) != nil {
			return
		}
		if rerr != nil {
			t.Fatalf("%q loads but does not render: %v", src, rerr)
		}
		if err := checkCorefile("Corefile", out); err != nil && !strings.Contains(err.Error(), "bind") {
			t.Fatalf("%q loads, rendered %q does not: %v", src, out, err)
		}
	})
}
