package plugutil

import (
	"strings"
	"testing"
)

func TestHostZone(t *testing.T) {
	for in, want := range map[string]string{
		"Example.ORG":            "example.org.",
		"dns://example.org:1053": "example.org.",
		"example.org.:53":        "example.org.",
		"10.0.0.0/24":            "0.0.10.in-addr.arpa.",
		"10.0.0.0/8":             "10.in-addr.arpa.",
		"10.0.0.0/23":            "0.0.10.in-addr.arpa.,1.0.10.in-addr.arpa.",
		"10.0.4.0/22":            "4.0.10.in-addr.arpa.,5.0.10.in-addr.arpa.,6.0.10.in-addr.arpa.,7.0.10.in-addr.arpa.",
		"fd00::/8":               "d.f.ip6.arpa.",
		"fd00::/7":               "c.f.ip6.arpa.,d.f.ip6.arpa.",
		"dns://10.1.0.0/16:53":   "1.10.in-addr.arpa.",
	} {
		if got := strings.Join(HostZone(in), ","); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

func TestReverseAddr(t *testing.T) {
	for in, want := range map[string]string{
		"1.0.0.10.in-addr.arpa.": "10.0.0.1",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.": "fd00::1",
		"0.10.in-addr.arpa.":     "invalid IP",
		"x.0.0.10.in-addr.arpa.": "invalid IP",
		"example.org.":           "invalid IP",
	} {
		if got := ReverseAddr(in).String(); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}
