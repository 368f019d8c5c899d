package cni_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/cni"
	"github.com/podnet/podnet/internal/testutil"
)

// Acceptance 5: 100 concurrent ADDs into 100 namespaces give 100 distinct
// addresses.
func TestConcurrentAdds(t *testing.T) {
	n := newNode(t)
	l := n.conflist("1.1.0", nil)
	base := n.warmBaseline(l)
	const N = 100
	pods := make([]*pod, N)
	for i := range pods {
		pods[i] = n.newPod()
	}
	ips := make([]string, N)
	var wg sync.WaitGroup
	errs := make(chan error, N)
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := n.add(l, p, nil)
			if err != nil {
				errs <- fmt.Errorf("ADD %d: %w", i, err)
				return
			}
			ips[i] = r.IPs[0].Address.IP.String()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]bool{}
	for _, ip := range ips {
		if ip == "" {
			continue
		}
		if seen[ip] {
			t.Errorf("duplicate address %s", ip)
		}
		seen[ip] = true
	}
	if len(seen) != N {
		t.Errorf("%d distinct addresses, want %d", len(seen), N)
	}
	for _, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.del(l, p); err != nil {
				t.Errorf("DEL: %v", err)
			}
		}()
	}
	wg.Wait()
	n.requireState(base)
}

// Acceptance 5: many ADD/DEL cycles bring the node back to its baseline.
// It also reports the ADD+DEL latency.
func TestAddDelCyclesNoLeak(t *testing.T) {
	n := newNode(t)
	l := n.conflist("1.1.0", nil)
	base := n.warmBaseline(l)
	cycles := 1000
	if testing.Short() {
		cycles = 50
	}
	const workers = 4
	ports := map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80}}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var total time.Duration
	start := time.Now()
	for w := 0; w < workers; w++ {
		p := n.newPod()
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < cycles; i += workers {
				var caps map[string]any
				if w == 0 {
					caps = ports // one worker also publishes a port
				}
				t0 := time.Now()
				if _, err := n.add(l, p, caps); err != nil {
					t.Errorf("cycle %d ADD: %v", i, err)
					return
				}
				if err := n.del(l, p); err != nil {
					t.Errorf("cycle %d DEL: %v", i, err)
					return
				}
				mu.Lock()
				total += time.Since(t0)
				mu.Unlock()
				p.id = "c" + testutil.UniqueName("", 20)
			}
		}(w)
	}
	wg.Wait()
	t.Logf("%d ADD+DEL cycles with %d workers in %v; mean ADD+DEL latency %v", cycles, workers, time.Since(start), total/time.Duration(cycles))
	n.requireState(base)
}

// TestAddDelLatency measures sequential ADD+DEL through libcni.
func TestAddDelLatency(t *testing.T) {
	n := newNode(t)
	l := n.conflist("1.1.0", nil)
	p := n.newPod()
	n.mustAdd(l, p, nil)
	_ = n.del(l, p)
	const N = 50
	var add, del time.Duration
	for i := 0; i < N; i++ {
		t0 := time.Now()
		n.mustAdd(l, p, map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80}}})
		t1 := time.Now()
		if err := n.del(l, p); err != nil {
			t.Fatal(err)
		}
		add += t1.Sub(t0)
		del += time.Since(t1)
	}
	t.Logf("sequential, %d runs: mean ADD %v, mean DEL %v", N, add/N, del/N)
}

// Acceptance 5: kill -9 of the plugin at every step of ADD, then GC, leaves
// no leak and never a duplicate address.
func TestCrashMidAddThenGC(t *testing.T) {
	n := newNode(t)
	l := n.conflist("1.1.0", nil)
	base := n.warmBaseline(l)
	steps := []string{"after-ip", "after-ports", "after-reserve", "after-bridge", "after-veth", "after-nft"}
	survivor := n.newPod()
	rs := n.mustAdd(l, survivor, nil)
	t.Cleanup(func() { _ = n.del(l, survivor) })
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			victim := n.newPod()
			os.Setenv(cni.CrashEnv, step)
			_, err := n.add(l, victim, map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80}}})
			os.Unsetenv(cni.CrashEnv)
			if err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("ADD with crash at %s: %v", step, err)
			}
			// Before GC, a new ADD never gets an address a crashed ADD holds.
			other := n.newPod()
			ro := n.mustAdd(l, other, nil)
			if podIP(t, ro) == podIP(t, rs) {
				t.Fatalf("duplicate address %s", podIP(t, ro))
			}
			if err := n.gc(l, survivor); err != nil {
				t.Fatalf("GC: %v", err)
			}
			if err := n.check(l, survivor); err != nil {
				t.Fatalf("survivor broken by GC: %v", err)
			}
			if err := n.check(l, other); err == nil {
				t.Fatalf("GC kept an attachment not in the valid list")
			}
			// The host port is free again.
			p := n.newPod()
			n.mustAdd(l, p, map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80}}})
			if err := n.del(l, p); err != nil {
				t.Fatal(err)
			}
		})
	}
	if err := n.del(l, survivor); err != nil {
		t.Fatal(err)
	}
	n.requireState(base)
}

// Acceptance 7: the real cnitool drives the plugin.
func TestCnitool(t *testing.T) {
	n := newNode(t)
	cnitool := testutil.GoTool(t, "github.com/containernetworking/cni/cnitool", "v1.3.1")
	confDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(confDir, "10-podnet.conflist"), n.conflistBytes("1.1.0", nil), 0o644); err != nil {
		t.Fatal(err)
	}
	p := n.newPod()
	run := func(args ...string) (string, error) {
		c := testutil.InNS(n.ns, cnitool, args...)
		c.Env = append(os.Environ(), "CNI_PATH="+pluginBinDir(t), "NETCONFPATH="+confDir, "CNI_IFNAME=eth0",
			"CNI_CACHE_DIR="+t.TempDir())
		out, err := c.CombinedOutput()
		return string(out), err
	}
	out, err := run("add", n.network, p.path)
	if err != nil || !strings.Contains(out, `"10.22.0.`) {
		t.Fatalf("cnitool add: %v\n%s", err, out)
	}
	t.Cleanup(func() { _, _ = run("del", n.network, p.path) })
	if out, err := run("check", n.network, p.path); err != nil {
		t.Fatalf("cnitool check: %v\n%s", err, out)
	}
	mustInNS(t, p.ns, "ping", "-c1", "-W2", "10.22.0.1")
	if out, err := run("del", n.network, p.path); err != nil {
		t.Fatalf("cnitool del: %v\n%s", err, out)
	}
	if _, err := inNS(p.ns, "ip", "link", "show", "eth0"); err == nil {
		t.Fatal("eth0 left after cnitool del")
	}
}
