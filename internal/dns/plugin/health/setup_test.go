package health

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/dnstest"
	_ "github.com/podnet/podnet/internal/dns/plugin/whoami"
	"github.com/podnet/podnet/internal/testutil"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

func init() { checkEvery = 20 * time.Millisecond }

func TestSetup(t *testing.T) {
	for _, tt := range []struct {
		in, err, addr string
		lameduck      time.Duration
	}{
		{"health", "", ":8080", 0},
		{"health localhost:8091", "", "localhost:8091", 0},
		{"health {\n lameduck 5s\n}", "", ":8080", 5 * time.Second},
		{"health :8080 :8081", "Testfile:1 - Error during parsing: Wrong argument count or unexpected line ending after ':8081'", "", 0},
		{"health 8080", "Testfile:1 - Error during parsing: invalid address '8080': address 8080: missing port in address", "", 0},
		{"health {\n lameduck x\n}", "Testfile:2 - Error during parsing: lameduck: invalid duration 'x'", "", 0},
		{"health {\n lameduck\n}", "Testfile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'lameduck'", "", 0},
		{"health {\n fast\n}", "Testfile:2 - Error during parsing: unknown property 'fast'", "", 0},
		{"health\nhealth", "Testfile:2 - Error during parsing: health: only one health directive per server block", "", 0},
	} {
		c := pdns.NewTestController(tt.in)
		err := setup(c)
		if (err == nil) != (tt.err == "") || err != nil && err.Error() != tt.err {
			t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
			continue
		}
		if err != nil {
			continue
		}
		v, _ := c.Config().Get(name)
		h := v.(*Health)
		if h.Addr != tt.addr || h.Lameduck != tt.lameduck {
			t.Errorf("%q: %+v", tt.in, h)
		}
	}
}

func histCount() uint64 {
	var m dto.Metric
	requestDuration.Write(&m)
	return m.GetHistogram().GetSampleCount()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHealthAcrossReloadAndLameduck(t *testing.T) {
	port := testutil.FreePort(t)
	cf := fmt.Sprintf(".:0 {\n health 127.0.0.1:%d {\n  lameduck 300ms\n }\n whoami\n}\n", port)
	s := dnstest.Start(t, cf)
	url := fmt.Sprintf("http://127.0.0.1:%d/health", port)
	if code, body := get(t, url); code != 200 || body != "OK" {
		t.Fatalf("/health: %d %q", code, body)
	}
	// The self-check records its duration.
	deadline := time.Now().Add(5 * time.Second)
	for promtest.CollectAndCount(requestDuration) == 0 || histCount() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no self-check recorded")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A reload to the same address keeps /health up.
	if err := s.Reload(pdns.Input{File: "Corefile", Contents: []byte(cf)}); err != nil {
		t.Fatal(err)
	}
	if code, _ := get(t, url); code != 200 {
		t.Fatalf("/health after reload: %d", code)
	}
	// Stop: during the lameduck period DNS still answers.
	addr := s.Addr
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- s.Stop() }()
	if r := dnstest.Query(t, addr, "lame.duck.", dns.TypeA); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("during lameduck: %v", r)
	}
	<-done
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("stopped after %v, before the lameduck period", d)
	}
	if _, err := http.Get(url); err == nil {
		t.Fatal("/health still answers after stop")
	}
}
