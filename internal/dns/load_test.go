package dns_test

import (
	"strings"
	"testing"

	pdns "github.com/podnet/podnet/internal/dns"
	_ "github.com/podnet/podnet/internal/dns/plugin/all"
)

func load(s string) (*pdns.Instance, error) {
	return pdns.Load(pdns.Input{File: "Corefile", Contents: []byte(s)}, pdns.LoadOptions{Port: "53"})
}

func TestLoadErrors(t *testing.T) {
	for _, tt := range []struct{ in, err string }{
		{". {\n  errors\n  log\n  forwrd . 127.0.0.1\n}\n", "Corefile:4 - Error during parsing: unknown directive 'forwrd'"},
		{". {\n  health 8080\n}\n", "plugin/health: Corefile:2 - Error during parsing: invalid address '8080': address 8080: missing port in address"},
		{". {\n  whoami\n}\n.:53 {\n whoami\n}\n", "Corefile:4 - Error during parsing: cannot serve dns://.:53 - it is already defined"},
		{"example.org {\n}\nExample.ORG. {\n}\n", "Corefile:3 - Error during parsing: cannot serve dns://example.org.:53 - it is already defined"},
		{"tls://.:853 {\n whoami\n}\n", "Corefile:1 - Error during parsing: transport tls:// is not supported, only dns://"},
		{"a..b {\n}\n", `Corefile:1 - Error during parsing: server block key "a..b": "a..b" is not a valid domain name`},
		{"", "Corefile - Error during parsing: no server blocks"},
	} {
		_, err := load(tt.in)
		if err == nil || err.Error() != tt.err {
			t.Errorf("%q:\n got  %v\n want %s", tt.in, err, tt.err)
		}
	}
}

func TestLoadBlocks(t *testing.T) {
	inst, err := load(`
example.org:1053 example.net:1053 {
    bind 127.0.0.1
    whoami
}
example.org:1053 {
    bind 127.0.0.2
    whoami
}
10.0.0.0/8 {
    whoami
}
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(inst.Configs) != 3 {
		t.Fatalf("%d blocks", len(inst.Configs))
	}
	c := inst.Configs[0]
	if strings.Join(c.Zones, " ") != "example.org. example.net." || c.Port != "1053" || strings.Join(c.ListenHosts, " ") != "127.0.0.1" {
		t.Errorf("block 1: %+v", c)
	}
	if z := inst.Configs[2].Zones; len(z) != 1 || z[0] != "10.in-addr.arpa." || inst.Configs[2].Port != "53" {
		t.Errorf("block 3: %v", z)
	}
}

// The chain follows Directives, not the Corefile's order.
func TestChainOrder(t *testing.T) {
	inst, err := load(". {\n whoami\n loadbalance\n log\n errors\n prometheus :9999\n loop\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range inst.Configs[0].Handlers() {
		names = append(names, h.Name())
	}
	if got, want := strings.Join(names, " "), "prometheus errors log loadbalance loop whoami"; got != want {
		t.Fatalf("chain %s, want %s", got, want)
	}
	if inst.Configs[0].Chain().Name() != "prometheus" || inst.Configs[0].Handler("log") == nil {
		t.Fatal("Chain/Handler lookup")
	}
}

func TestEveryPluginHasAnOrder(t *testing.T) {
	for _, p := range pdns.Plugins() {
		if pdns.Order(p) < 0 {
			t.Errorf("plugin %s is not in Directives", p)
		}
	}
}
