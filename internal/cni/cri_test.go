package cni_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// Issue 10: podnet-cni under a real container runtime. One containerd
// (Debian's, with runc) serves every subtest; crictl is the client, as the
// kubelet would be. See cri_harness_test.go for how it is kept apart from
// the machine.
func TestContainerd(t *testing.T) {
	start := time.Now()
	e := newCRIEnv(t)
	t.Logf("containerd up, image imported in %v", time.Since(start).Round(time.Millisecond))
	// A warm-up pod creates the bridge, sysctls and table: what every
	// later pod must return the node to.
	warm := e.mustRunPod(t, "warm")
	e.stopRemove(t, warm)
	base := e.state()
	if len(base.cache) != 0 || len(base.netnsDirs) != 0 {
		t.Fatalf("after the warm-up pod: %+v", base)
	}

	t.Run("runp", func(t *testing.T) {
		p := e.mustRunPod(t, "web", 18080)
		if !strings.HasPrefix(p.ip, "10.22.0.") || p.pid == 0 || p.netns == "" {
			t.Fatalf("pod %+v: want an IP in 10.22.0.0/24, a pid and a netns", p)
		}
		addr := e.inPod(t, p, "ip", "-o", "-4", "addr", "show", "eth0")
		if !strings.Contains(addr, " "+p.ip+"/24 ") {
			t.Fatalf("eth0 in the pod: %s, want %s/24", addr, p.ip)
		}
		if r := e.inPod(t, p, "ip", "-4", "route", "show", "default"); !strings.Contains(r, "default via 10.22.0.1 dev eth0") {
			t.Fatalf("pod routes: %s", r)
		}
		e.startServer(t, p)
		for _, c := range []struct {
			name, from, addr string
			port             int
			peer             string
		}{
			{"pod IP from the node", e.n.ns, p.ip, 8080, "10.22.0.1"},
			{"hostPort from outside", e.n.ext, "192.168.200.1", 18080, "192.168.200.2"},
			{"hostPort on the node's loopback", e.n.ns, "127.0.0.1", 18080, "10.22.0.1"},
		} {
			out, err := dial(c.from, "tcp", c.addr, c.port)
			if err != nil || out != "hello "+c.peer {
				t.Errorf("%s (%s:%d): %v %q, want %q", c.name, c.addr, c.port, err, out, "hello "+c.peer)
			}
		}
		e.stopRemove(t, p)
		e.requireState(t, base)
		if out, err := dial(e.n.ext, "tcp", "192.168.200.1", 18080); err == nil && out != "" {
			t.Fatalf("host port still answers after rmp: %q", out)
		}
	})

	t.Run("cycles", func(t *testing.T) {
		t0 := time.Now()
		const cycles = 20
		for i := 0; i < cycles; i++ {
			p := e.mustRunPod(t, fmt.Sprintf("cycle%d", i), 18081)
			e.stopRemove(t, p)
		}
		t.Logf("%d runp/stopp/rmp cycles in %v", cycles, time.Since(t0).Round(time.Millisecond))
		e.requireState(t, base)
	})

	t.Run("parallel", func(t *testing.T) {
		const N = 8
		pods := make([]*criPod, N)
		var wg sync.WaitGroup
		for i := range pods {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p, err := e.runPod(fmt.Sprintf("par%d", i), 18100+i)
				if err != nil {
					t.Errorf("runp %d: %v", i, err)
				}
				pods[i] = p
			}()
		}
		wg.Wait()
		seen := map[string]bool{}
		for _, p := range pods {
			if p == nil || p.ip == "" {
				continue
			}
			if seen[p.ip] {
				t.Errorf("address %s given twice", p.ip)
			}
			seen[p.ip] = true
		}
		if len(seen) != N {
			t.Errorf("%d distinct addresses for %d pods", len(seen), N)
		}
		for _, p := range pods {
			if p == nil || p.id == "" {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := e.crictlRun("stopp", p.id); err != nil {
					t.Error(err)
				}
				if _, err := e.crictlRun("rmp", p.id); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		e.requireState(t, base)
	})

	t.Run("host port taken", func(t *testing.T) {
		a := e.mustRunPod(t, "porta", 18200)
		before := e.state()
		_, err := e.runPod("portb", 18200)
		want := "podnet-cni: host port tcp/18200 is already allocated to container " + a.id
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("second pod on host port 18200: %v, want an error containing %q", err, want)
		}
		if got := e.state(); fmt.Sprint(got) != fmt.Sprint(before) {
			t.Fatalf("refused pod changed the node\n got %+v\nwant %+v", got, before)
		}
		if out := e.mustCrictl(t, "pods", "-q", "--name", "portb"); out != "" {
			t.Fatalf("refused pod left a sandbox: %s", out)
		}
		e.stopRemove(t, a)
		e.requireState(t, base)
	})

	t.Run("broken conflist", func(t *testing.T) {
		a := e.mustRunPod(t, "brokena", 18300)
		e.startServer(t, a)
		e.writeConflist(t, e.n.conflistBytes("1.0.0", map[string]any{"subnet": "10.123.40.0/33"}))
		t.Cleanup(func() { e.writeConflist(t, e.n.conflistBytes("1.0.0", nil)); e.waitConf(t, "10.22.0.0/24") })
		e.waitConf(t, "10.123.40.0/33")
		_, err := e.runPod("brokenb", 18301)
		// crictl quotes the runtime's message: unquote before matching.
		if err == nil || !strings.Contains(strings.ReplaceAll(err.Error(), `\"`, `"`), `config field "subnet": invalid CIDR`) {
			t.Fatalf("runp under a broken conflist: %v, want an error naming config field \"subnet\"", err)
		}
		if out := e.mustCrictl(t, "pods", "-q", "--name", "brokenb"); out != "" {
			t.Errorf("refused pod left a sandbox: %s", out)
		}
		// The pod that started under the good config still stops and
		// goes away completely.
		e.stopRemove(t, a)
		e.requireState(t, base)
	})

	t.Run("containerd restart", func(t *testing.T) {
		p := e.mustRunPod(t, "survivor", 18400)
		e.startServer(t, p)
		ip := p.ip
		e.stop()
		e.start(t)
		if err := e.inspect(p); err != nil {
			t.Fatalf("after restart: %v", err)
		}
		if p.ip != ip {
			t.Fatalf("pod IP %s after restart, was %s", p.ip, ip)
		}
		for _, c := range []struct {
			from, addr string
			port       int
		}{{e.n.ns, p.ip, 8080}, {e.n.ext, "192.168.200.1", 18400}} {
			if out, err := dial(c.from, "tcp", c.addr, c.port); err != nil || !strings.HasPrefix(out, "hello ") {
				t.Errorf("after restart %s:%d: %v %q", c.addr, c.port, err, out)
			}
		}
		e.stopRemove(t, p)
		e.requireState(t, base)
	})

	// docs/cni.md's table: containerd 1.6/1.7 (libcni 1.1) take 0.4.0 and
	// 1.0.0 and fail every pod under 1.1.0, after the plugin's ADD
	// succeeded; the DEL containerd then sends must still leave nothing.
	t.Run("cniVersion", func(t *testing.T) {
		t.Cleanup(func() { e.writeConflist(t, e.n.conflistBytes("1.0.0", nil)); e.waitConf(t, `\"cniVersion\":\"1.0.0\"`) })
		old := e.containerdBefore2(t)
		for _, v := range []string{"0.4.0", "1.1.0"} {
			e.writeConflist(t, e.n.conflistBytes(v, nil))
			e.waitConf(t, `\"cniVersion\":\"`+v+`\"`)
			p, err := e.runPod("v"+strings.ReplaceAll(v, ".", ""), 18500)
			if v == "1.1.0" && old {
				if err == nil || !strings.Contains(err.Error(), `unsupported CNI result version`) {
					t.Fatalf("cniVersion 1.1.0 under containerd 1.x: %v, want unsupported CNI result version", err)
				}
			} else {
				if err != nil {
					t.Fatalf("cniVersion %s: %v", v, err)
				}
				if !strings.HasPrefix(p.ip, "10.22.0.") {
					t.Fatalf("cniVersion %s: pod IP %q", v, p.ip)
				}
				e.stopRemove(t, p)
			}
			e.requireState(t, base)
		}
	})
}
