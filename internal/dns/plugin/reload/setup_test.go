package reload

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/dnstest"
	_ "github.com/podnet/podnet/internal/dns/plugin/debug"
	_ "github.com/podnet/podnet/internal/dns/plugin/whoami"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

func TestSetup(t *testing.T) {
	for _, tt := range []struct {
		in, err          string
		interval, jitter time.Duration
	}{
		{"reload", "", 30 * time.Second, 15 * time.Second},
		{"reload 10s", "", 10 * time.Second, 5 * time.Second},
		{"reload 10s 1s", "", 10 * time.Second, time.Second},
		{"reload 10s 9s", "", 10 * time.Second, 5 * time.Second},
		{"reload 1s", "Testfile:1 - Error during parsing: interval value must be greater or equal to 2s", 0, 0},
		{"reload 10s 100ms", "Testfile:1 - Error during parsing: jitter value must be greater or equal to 1s", 0, 0},
		{"reload ten", "Testfile:1 - Error during parsing: invalid interval 'ten'", 0, 0},
		{"reload 10s x", "Testfile:1 - Error during parsing: invalid jitter 'x'", 0, 0},
		{"reload 1 2 3", "Testfile:1 - Error during parsing: Wrong argument count or unexpected line ending after '3'", 0, 0},
	} {
		c := pdns.NewTestController(tt.in)
		err := setup(c)
		if (err == nil) != (tt.err == "") || err != nil && err.Error() != tt.err {
			t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
			continue
		}
		if err == nil {
			v, _ := c.Config().Get(name)
			r := v.(*Reload)
			if r.Interval != tt.interval || r.Jitter != tt.jitter {
				t.Errorf("%q: interval %v jitter %v", tt.in, r.Interval, r.Jitter)
			}
		}
	}
}

func waitRcode(t *testing.T, addr string, rcode int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := dnstest.Query(t, addr, "a.example.org.", dns.TypeA)
		if r.Rcode == rcode {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("rcode stayed %s, want %s", dns.RcodeToString[r.Rcode], dns.RcodeToString[rcode])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReloadOnChange(t *testing.T) {
	minInterval, minJitter = 10*time.Millisecond, 0
	t.Cleanup(func() { minInterval, minJitter = 2*time.Second, time.Second })
	file := filepath.Join(t.TempDir(), "Corefile")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	first := "example.org:0 {\n reload 50ms 10ms\n whoami\n}\n"
	write(first)
	s := dnstest.StartWith(t, first, dnstest.Options{File: file})
	waitRcode(t, s.Addr, dns.RcodeSuccess)

	// A good change: the chain is now empty, REFUSED.
	write("example.org:0 {\n reload 50ms 10ms\n debug\n}\n")
	waitRcode(t, s.Addr, dns.RcodeRefused)

	// A bad change: counted, logged, the previous one keeps serving.
	before := promtest.ToFloat64(failedCount)
	write("example.org:0 {\n reload 50ms 10ms\n whoamii\n}\n")
	deadline := time.Now().Add(5 * time.Second)
	for promtest.ToFloat64(failedCount) == before {
		if time.Now().After(deadline) {
			t.Fatal("the bad Corefile was never tried")
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitRcode(t, s.Addr, dns.RcodeRefused)

	// Fixed again: reloaded.
	write(first)
	waitRcode(t, s.Addr, dns.RcodeSuccess)
}
