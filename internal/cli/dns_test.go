package cli

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

// TestDNSReloadOnSIGUSR1: the podnet binary, as the agent runs it, takes
// SIGUSR1 as "reload the Corefile now": a new Corefile is served at once,
// and a bad one is logged while the old one keeps answering.
func TestDNSReloadOnSIGUSR1(t *testing.T) {
	bin := filepath.Join(testutil.Binaries(t), "podnet")
	dir := t.TempDir()
	file := filepath.Join(dir, "Corefile")
	port := testutil.FreePort(t)
	write := func(ip string) {
		t.Helper()
		c := fmt.Sprintf(".:%d {\n    bind 127.0.0.1\n    hosts {\n        %s a.test\n    }\n}\n", port, ip)
		if err := os.WriteFile(file, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("192.0.2.1")
	logFile, err := os.Create(filepath.Join(dir, "dns.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	log := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }
	cmd := exec.Command(bin, "dns", "-conf", file, "-quiet")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	answer := func() string {
		m := new(dns.Msg)
		m.SetQuestion("a.test.", dns.TypeA)
		c := &dns.Client{Timeout: 500 * time.Millisecond}
		r, _, err := c.Exchange(m, fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil || len(r.Answer) != 1 {
			return fmt.Sprint(err)
		}
		return r.Answer[0].(*dns.A).A.String()
	}
	waitFor := func(want string) time.Duration {
		t.Helper()
		start := time.Now()
		for answer() != want {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("never answered %s (last %q); log:\n%s", want, answer(), log())
			}
			time.Sleep(10 * time.Millisecond) // polling the server's answer
		}
		return time.Since(start)
	}
	waitFor("192.0.2.1")
	write("192.0.2.2")
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if took := waitFor("192.0.2.2"); took > time.Second {
		t.Errorf("SIGUSR1 reload took %v", took)
	}
	os.WriteFile(file, []byte(fmt.Sprintf(".:%d {\n    bind 127.0.0.1\n    hostz\n}\n", port)), 0o644)
	cmd.Process.Signal(syscall.SIGUSR1)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(log(), "reload failed") {
		if time.Now().After(deadline) {
			t.Fatalf("a bad Corefile was not reported:\n%s", log())
		}
		time.Sleep(10 * time.Millisecond) // polling the log
	}
	if !strings.Contains(log(), "unknown directive 'hostz'") {
		t.Errorf("the failure does not say why:\n%s", log())
	}
	if got := answer(); got != "192.0.2.2" {
		t.Errorf("after a bad reload the old Corefile must keep serving: %q", got)
	}
}
