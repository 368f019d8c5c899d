package bind

import (
	"fmt"
	"slices"
	"testing"

	pdns "github.com/podnet/podnet/internal/dns"
)

func TestSetup(t *testing.T) {
	interfaceAddrs = func(n string) ([]string, error) {
		if n == "eth9" {
			return []string{"192.0.2.1", "2001:db8::1"}, nil
		}
		return nil, fmt.Errorf("no such interface")
	}
	for _, tt := range []struct {
		in    string
		hosts []string
		err   string
	}{
		{"bind 127.0.0.1", []string{"127.0.0.1"}, ""},
		{"bind 127.0.0.1 ::1", []string{"127.0.0.1", "::1"}, ""},
		{"bind eth9", []string{"192.0.2.1", "2001:db8::1"}, ""},
		{"bind eth9 {\n except 2001:db8::1\n}", []string{"192.0.2.1"}, ""},
		{"bind 127.0.0.1\nbind 127.0.0.2 127.0.0.1", []string{"127.0.0.1", "127.0.0.2"}, ""},
		{"bind", nil, "Testfile:1 - Error during parsing: Wrong argument count or unexpected line ending after 'bind'"},
		{"bind 1.2.3", nil, "Testfile:1 - Error during parsing: not a valid IP address or interface name: '1.2.3'"},
		{"bind eth9 {\n only 1.2.3.4\n}", nil, "Testfile:2 - Error during parsing: unknown property 'only'"},
		{"bind eth9 {\n except\n}", nil, "Testfile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'except'"},
		{"bind 127.0.0.1 {\n except 127.0.0.1\n}", nil, "no address to bind to: every address is excluded by except"},
	} {
		c := pdns.NewTestController(tt.in)
		err := setup(c)
		if (err == nil) != (tt.err == "") || err != nil && err.Error() != tt.err {
			t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
			continue
		}
		if err == nil && !slices.Equal(c.Config().ListenHosts, tt.hosts) {
			t.Errorf("%q: hosts %v, want %v", tt.in, c.Config().ListenHosts, tt.hosts)
		}
	}
}
