package serviceipam

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseRanges(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{"10.96.0.0/12", ""},
		{"10.96.0.1/12", "host bits set"},
		{"fd00::/108", "only IPv4"},
		{"10.96.0.0/30", "too small"},
		{"nope", "service CIDR"},
	} {
		_, err := ParseIPRange(tc.in)
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("ParseIPRange(%q) = %v, want %q", tc.in, err, tc.err)
		}
	}
	for _, tc := range []struct{ in, err string }{
		{"30000-32767", ""},
		{"30000", "FROM-TO"},
		{"32767-30000", "FROM <= TO"},
		{"0-10", "1 <= FROM"},
		{"1-70000", "TO <= 65535"},
	} {
		_, err := ParsePortRange(tc.in)
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("ParsePortRange(%q) = %v, want %q", tc.in, err, tc.err)
		}
	}
	r, _ := ParseIPRange("10.96.0.0/12")
	if r.DNS() != netip.MustParseAddr("10.96.0.10") {
		t.Errorf("DNS %s", r.DNS())
	}
	for ip, want := range map[string]bool{"10.96.0.0": false, "10.111.255.255": false, "10.96.0.1": true, "10.111.255.254": true, "10.112.0.1": false} {
		if r.Contains(netip.MustParseAddr(ip)) != want {
			t.Errorf("Contains(%s) != %v", ip, want)
		}
	}
}
