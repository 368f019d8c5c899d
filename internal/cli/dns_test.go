package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/podnet/podnet/internal/testutil"
)

func runPodnet(ctx context.Context, args ...string) (string, error) {
	var out, errOut bytes.Buffer
	root := NewRoot(&out, &errOut)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String() + errOut.String(), err
}

func TestDNSFlags(t *testing.T) {
	for _, args := range [][]string{{"dns", "-version"}, {"dns", "--version"}} {
		out, err := runPodnet(context.Background(), args...)
		if err != nil || !strings.HasPrefix(out, "podnet-dns-1.15.0\n") {
			t.Errorf("%v: %v %q", args, err, out)
		}
	}
	out, err := runPodnet(context.Background(), "dns", "-plugins")
	if err != nil || !strings.Contains(out, "Other plugins:\n") || !strings.Contains(out, "  dns.whoami\n") || !strings.Contains(out, "  dns.reload\n") {
		t.Errorf("-plugins: %v %q", err, out)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "Corefile")
	os.WriteFile(bad, []byte(".:0 {\n  errors\n  log\n  forwrd . 127.0.0.1\n}\n"), 0o644)
	_, err = runPodnet(context.Background(), "dns", "--conf="+bad)
	if err == nil || err.Error() != bad+":4 - Error during parsing: unknown directive 'forwrd'" {
		t.Errorf("bad Corefile: %v", err)
	}
	if _, err := runPodnet(context.Background(), "dns", "-conf", filepath.Join(dir, "none")); err == nil || !strings.Contains(err.Error(), "reading the Corefile") {
		t.Errorf("missing Corefile: %v", err)
	}
	if _, err := runPodnet(context.Background(), "dns", "-nope"); err == nil {
		t.Error("unknown flag accepted")
	}
}

func TestDNSServes(t *testing.T) {
	for _, style := range []string{"-", "--"} {
		t.Run(style, func(t *testing.T) {
			port := testutil.FreePort(t)
			file := filepath.Join(t.TempDir(), "Corefile")
			os.WriteFile(file, []byte(".:{$PODNET_TEST_NOTSET}\n bind 127.0.0.1\n whoami\n"), 0o644)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				_, err := runPodnet(ctx, "dns", style+"conf", file, style+"dns.port", fmt.Sprint(port), style+"quiet")
				done <- err
			}()
			addr := fmt.Sprintf("127.0.0.1:%d", port)
			m := new(dns.Msg)
			m.SetQuestion("example.org.", dns.TypeA)
			c := &dns.Client{Timeout: 200 * time.Millisecond}
			deadline := time.Now().Add(5 * time.Second)
			for {
				r, _, err := c.Exchange(m, addr)
				if err == nil && r.Rcode == dns.RcodeSuccess && len(r.Extra) == 2 {
					break
				}
				select {
				case err := <-done:
					t.Fatalf("podnet dns exited: %v", err)
				default:
				}
				if time.Now().After(deadline) {
					t.Fatalf("no answer on %s: %v %v", addr, r, err)
				}
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("stop: %v", err)
			}
		})
	}
}
