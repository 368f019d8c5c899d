package ready

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/dnstest"
	"github.com/podnet/podnet/internal/testutil"
)

func TestSetup(t *testing.T) {
	addrIs := func(addr string) func(*pdns.Controller) string {
		return func(c *pdns.Controller) string {
			if _, ok := c.Instance().Get(name + "@" + addr); !ok {
				return "no ready on " + addr
			}
			return ""
		}
	}
	dnstest.RunSetup(t, setup, []dnstest.SetupCase{
		{In: "ready", Want: addrIs(":8181")},
		{In: "ready localhost:8182", Want: addrIs("localhost:8182")},
		{In: "ready a b", Err: "Testfile:1 - Error during parsing: Wrong argument count or unexpected line ending after 'b'"},
		{In: "ready :x", Err: "Testfile:1 - Error during parsing: invalid address ':x': port \"x\" is not a number from 0 to 65535"},
		{In: "ready {\n x\n}", Err: "Testfile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'x'"},
		{In: "ready\nready", Err: "Testfile:2 - Error during parsing: ready: only one ready directive per server block"},
	})
}

// slow is a plugin that becomes ready when told.
type slow struct{ ready atomic.Bool }

func (s *slow) Name() string { return "slowpoke" }
func (s *slow) Ready() bool  { return s.ready.Load() }
func (s *slow) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	return dns.RcodeServerFailure, nil
}

var theSlow = &slow{}

func init() {
	pdns.Directives = append(pdns.Directives, "slowpoke")
	pdns.Register("slowpoke", func(c *pdns.Controller) error {
		c.Next()
		c.AddPlugin(func(pdns.Handler) pdns.Handler { return theSlow })
		return nil
	})
}

func TestReadyWaitsForPlugins(t *testing.T) {
	port := testutil.FreePort(t)
	dnstest.Start(t, fmt.Sprintf(".:0 {\n ready 127.0.0.1:%d\n slowpoke\n}\nexample.org:0 {\n ready 127.0.0.1:%d\n}\n", port, port))
	url := fmt.Sprintf("http://127.0.0.1:%d/ready", port)
	get := func() (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != 503 || body != "slowpoke" {
		t.Fatalf("before ready: %d %q", code, body)
	}
	theSlow.ready.Store(true)
	if code, body := get(); code != 200 || body != "OK" {
		t.Fatalf("after ready: %d %q", code, body)
	}
	theSlow.ready.Store(false) // once ready, not asked again
	if code, _ := get(); code != 200 {
		t.Fatalf("ready went back: %d", code)
	}
}
