package cni_test

import (
	"encoding/json"
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

// BenchmarkAddDel measures sequential ADD (with a published port) and
// DEL through libcni; it reports each as its own figure, and the node is
// back at its baseline afterwards (it was TestAddDelLatency, which only
// logged the numbers).
func BenchmarkAddDel(b *testing.B) {
	n := newNode(b)
	l := n.conflist("1.1.0", nil)
	base := n.warmBaseline(l)
	p := n.newPod()
	var add, del time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		n.mustAdd(l, p, map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80}}})
		t1 := time.Now()
		if err := n.del(l, p); err != nil {
			b.Fatal(err)
		}
		add += t1.Sub(t0)
		del += time.Since(t1)
	}
	b.StopTimer()
	b.ReportMetric(float64(add.Nanoseconds())/float64(b.N), "add-ns/op")
	b.ReportMetric(float64(del.Nanoseconds())/float64(b.N), "del-ns/op")
	n.requireState(base)
}

// Acceptance 5: kill -9 of the plugin at every step of ADD, then GC, leaves
// no leak and never a duplicate address. Issue 9, item 6: at every kill
// point, before and after the ADDs and the GC that follow it, no two
// attachments of any pod the test made (the survivor, every victim, every
// later pod) hold the same address, by their records, their reservations
// or the addresses on their eth0.
func TestCrashMidAddThenGC(t *testing.T) {
	n := newNode(t)
	l := n.conflist("1.1.0", nil)
	base := n.warmBaseline(l)
	steps := []string{"after-ip", "after-ports", "after-reserve", "after-bridge", "after-veth", "after-nft"}
	survivor := n.newPod()
	rs := n.mustAdd(l, survivor, nil)
	t.Cleanup(func() { _ = n.del(l, survivor) })
	all := []*pod{survivor}
	for _, step := range steps {
		t.Run(step, func(t *testing.T) {
			victim := n.newPod()
			all = append(all, victim)
			os.Setenv(cni.CrashEnv, step)
			_, err := n.add(l, victim, map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80}}})
			os.Unsetenv(cni.CrashEnv)
			if err == nil || !strings.Contains(err.Error(), "killed") {
				t.Fatalf("ADD with crash at %s: %v", step, err)
			}
			n.requireDistinctAddrs(t, "after the kill at "+step, all)
			// Before GC, a new ADD never gets an address a crashed ADD holds.
			other := n.newPod()
			all = append(all, other)
			ro := n.mustAdd(l, other, nil)
			if podIP(t, ro) == podIP(t, rs) {
				t.Fatalf("duplicate address %s", podIP(t, ro))
			}
			n.requireDistinctAddrs(t, "after an ADD following the kill at "+step, all)
			if err := n.gc(l, survivor); err != nil {
				t.Fatalf("GC: %v", err)
			}
			n.requireDistinctAddrs(t, "after GC following the kill at "+step, all)
			if err := n.check(l, survivor); err != nil {
				t.Fatalf("survivor broken by GC: %v", err)
			}
			if err := n.check(l, other); err == nil {
				t.Fatalf("GC kept an attachment not in the valid list")
			}
			// The host port is free again.
			p := n.newPod()
			all = append(all, p)
			n.mustAdd(l, p, map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80}}})
			n.requireDistinctAddrs(t, "after an ADD following GC at "+step, all)
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

// requireDistinctAddrs fails t if two attachment keys claim one address,
// where a key claims an address by its attachment record, by a
// reservation file it owns, or by the address on the eth0 of its pod
// (any of pods whose namespace still has one).
func (n *node) requireDistinctAddrs(t *testing.T, when string, pods []*pod) {
	t.Helper()
	claims := map[string]map[string][]string{} // address → key → how
	claim := func(addr, key, how string) {
		if claims[addr] == nil {
			claims[addr] = map[string][]string{}
		}
		claims[addr][key] = append(claims[addr][key], how)
	}
	recs, _ := filepath.Glob(filepath.Join(n.netDir(), "attachments", "*.json"))
	for _, f := range recs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // removed meanwhile
		}
		var r cni.Record
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: record %s: %v", when, f, err)
		}
		for _, ip := range r.IPs {
			claim(ip.Addr().String(), r.HostVeth, "record")
		}
	}
	ents, _ := os.ReadDir(filepath.Join(n.netDir(), "ips"))
	for _, e := range ents {
		if b, err := os.ReadFile(filepath.Join(n.netDir(), "ips", e.Name())); err == nil {
			claim(e.Name(), strings.TrimSpace(string(b)), "reservation")
		}
	}
	for _, p := range pods {
		out, err := inNS(p.ns, "ip", "-o", "addr", "show", "dev", p.ifname, "scope", "global")
		if err != nil {
			continue // no eth0: nothing configured, or collected
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			for i := 0; i+1 < len(f); i++ {
				if f[i] == "inet" || f[i] == "inet6" {
					addr, _, _ := strings.Cut(f[i+1], "/")
					claim(addr, podKey(p), "eth0 of pod "+p.id)
				}
			}
		}
	}
	for addr, keys := range claims {
		if len(keys) > 1 {
			t.Errorf("%s: address %s held by %d attachments: %v", when, addr, len(keys), keys)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
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
