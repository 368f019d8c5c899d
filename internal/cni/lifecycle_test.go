package cni_test

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/testutil"
)

// state is what the plugin left on the node: links, nft elements, IPAM
// files.
type state struct {
	links    []string
	elements int
	files    []string
}

// warmBaseline adds and deletes one pod, so the bridge, sysctls and the
// table exist, and returns the node's state then: what every later
// ADD/DEL must come back to.
func (n *node) warmBaseline(l *libcni.NetworkConfigList) state {
	n.t.Helper()
	warm := n.newPod()
	n.mustAdd(l, warm, nil)
	if err := n.del(l, warm); err != nil {
		n.t.Fatalf("warm-up DEL: %v", err)
	}
	return n.state()
}

func (n *node) state() state {
	n.t.Helper()
	var s state
	for _, line := range strings.Split(mustInNS(n.t, n.ns, "ip", "-o", "link", "show"), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 {
			s.links = append(s.links, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	sort.Strings(s.links)
	out, err := inNS(n.ns, "nft", "list", "table", "inet", "podnet")
	if err == nil {
		s.elements = strings.Count(out, "comment \""+n.network+"/")
	}
	_ = filepath.Walk(n.dataDir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && !strings.HasSuffix(p, "/lock") && !strings.Contains(p, "/last/") {
			s.files = append(s.files, strings.TrimPrefix(p, n.dataDir))
		}
		return nil
	})
	return s
}

func (n *node) requireState(want state) {
	n.t.Helper()
	got := n.state()
	if strings.Join(got.links, ",") != strings.Join(want.links, ",") || got.elements != want.elements || strings.Join(got.files, ",") != strings.Join(want.files, ",") {
		n.t.Fatalf("node state\n got %+v\nwant %+v", got, want)
	}
}

func cniCode(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// Acceptance 4: ADD/CHECK/DEL/STATUS/GC through libcni for every version.
func TestLifecycleAllVersions(t *testing.T) {
	for _, v := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			n := newNode(t)
			l := n.conflist(v, nil)
			if err := n.status(l); err != nil {
				t.Fatalf("STATUS: %v", err)
			}
			base := n.warmBaseline(l)
			p := n.newPod()
			r := n.mustAdd(l, p, map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}}})
			if n.lastVersion != v {
				t.Errorf("result version %s, want %s", n.lastVersion, v)
			}
			if len(r.Interfaces) != 3 || r.Interfaces[2].Sandbox != p.path || len(r.IPs) != 1 || len(r.Routes) != 1 {
				t.Fatalf("result %+v", r)
			}
			if err := n.check(l, p); err != nil {
				t.Fatalf("CHECK: %v", err)
			}
			// CHECK notices a missing interface.
			mustInNS(t, p.ns, "ip", "link", "set", "eth0", "down")
			if err := n.check(l, p); err == nil || !strings.Contains(err.Error(), "eth0 is down") {
				t.Fatalf("CHECK of a down interface: %v", err)
			}
			if err := n.del(l, p); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			if err := n.del(l, p); err != nil {
				t.Fatalf("repeated DEL: %v", err)
			}
			n.requireState(base)
			if err := n.gc(l); err != nil {
				t.Fatalf("GC: %v", err)
			}
		})
	}
}

func TestGCRemovesExactlyTheOthers(t *testing.T) {
	n := newNode(t)
	l := n.conflist("1.1.0", nil)
	base := n.warmBaseline(l)
	var pods []*pod
	for i := 0; i < 4; i++ {
		p := n.newPod()
		n.mustAdd(l, p, map[string]any{"portMappings": []map[string]any{{"hostPort": 9000 + i, "containerPort": 80}}})
		pods = append(pods, p)
	}
	keep := pods[:2]
	if err := n.gc(l, keep...); err != nil {
		t.Fatalf("GC: %v", err)
	}
	for _, p := range keep {
		if err := n.check(l, p); err != nil {
			t.Fatalf("kept pod fails CHECK after GC: %v", err)
		}
	}
	for _, p := range pods[2:] {
		if err := n.check(l, p); err == nil {
			t.Fatalf("collected pod %s passes CHECK", p.id)
		}
		if out, err := inNS(p.ns, "ip", "-o", "link", "show", "eth0"); err == nil {
			t.Fatalf("collected pod %s still has eth0: %s\n%s", p.id, out, mustInNS(t, n.ns, "ip", "link"))
		}
	}
	if err := n.gc(l); err != nil {
		t.Fatal(err)
	}
	n.requireState(base)
}

func TestDelAfterNetnsGone(t *testing.T) {
	n := newNode(t)
	l := n.conflist("1.1.0", nil)
	base := n.warmBaseline(l)
	p := n.newPod()
	n.mustAdd(l, p, map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80}}})
	if err := netns.Delete(p.ns); err != nil {
		t.Fatal(err)
	}
	if err := n.del(l, p); err != nil {
		t.Fatalf("DEL after netns gone: %v", err)
	}
	p.path = ""
	if err := n.del(l, p); err != nil {
		t.Fatalf("DEL with empty netns: %v", err)
	}
	n.requireState(base)
}

// Acceptance 6: a taken host port gives error 101 and changes nothing.
func TestHostPortConflict(t *testing.T) {
	n := newNode(t)
	l := n.conflist("1.1.0", nil)
	a := n.newPod()
	ports := map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}}}
	n.mustAdd(l, a, ports)
	t.Cleanup(func() { _ = n.del(l, a) })
	before := n.state()
	b := n.newPod()
	_, err := n.add(l, b, ports)
	if cniCode(err) != 101 {
		t.Fatalf("want code 101, got %v (%d)", err, cniCode(err))
	}
	want := "podnet-cni: host port tcp/8080 is already allocated to container " + a.id
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("message %q, want %q", err, want)
	}
	n.requireState(before)
	// UDP on the same number is fine.
	n.mustAdd(l, b, map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "udp"}}})
	_ = n.del(l, b)
}

func TestRequestedIPAndMAC(t *testing.T) {
	n := newNode(t)
	l := n.conflist("1.1.0", nil)
	a := n.newPod()
	r := n.mustAdd(l, a, map[string]any{"ips": []string{"10.22.0.77/24"}, "mac": "0a:58:0a:16:00:4d"})
	t.Cleanup(func() { _ = n.del(l, a) })
	if podIP(t, r) != "10.22.0.77" || r.Interfaces[2].Mac != "0a:58:0a:16:00:4d" {
		t.Fatalf("result %+v", r)
	}
	b := n.newPod()
	before := n.state()
	_, err := n.add(l, b, map[string]any{"ips": []string{"10.22.0.77"}})
	if cniCode(err) != 102 || !strings.Contains(err.Error(), "container "+a.id) {
		t.Fatalf("want code 102 naming %s, got %v", a.id, err)
	}
	n.requireState(before)
}

func TestDualStack(t *testing.T) {
	n := newNode(t)
	l := n.conflist("1.1.0", map[string]any{"subnet": nil, "ranges": [][]map[string]any{
		{{"subnet": "10.22.0.0/24"}}, {{"subnet": "fd00:22::/64"}},
	}})
	a, b := n.newPod(), n.newPod()
	ra := n.mustAdd(l, a, nil)
	rb := n.mustAdd(l, b, nil)
	t.Cleanup(func() { _ = n.del(l, a); _ = n.del(l, b) })
	if len(ra.IPs) != 2 || len(ra.Routes) != 2 {
		t.Fatalf("result %+v", ra)
	}
	mustInNS(t, a.ns, "ping", "-c1", "-W2", rb.IPs[1].Address.IP.String())
	mustInNS(t, a.ns, "ping", "-c1", "-W2", "fd00:22::1")
}

// Acceptance 4: malformed configs give code 6 or 7 naming the field and
// change nothing.
func TestBadConfigChangesNothing(t *testing.T) {
	n := newNode(t)
	cases := []struct {
		name  string
		extra map[string]any
		code  uint
		msg   string
	}{
		{"bad subnet", map[string]any{"subnet": "10.0.0/33"}, 7, `config field "subnet": invalid CIDR "10.0.0/33"`},
		{"unknown key", map[string]any{"bridgeName": "x"}, 7, `config field "bridgeName": unknown key`},
		{"mtu type", map[string]any{"mtu": "big"}, 7, `config field "mtu"`},
		{"mtu range", map[string]any{"mtu": 10}, 7, `config field "mtu": 10 out of range`},
		{"gateway outside", map[string]any{"gateway": "10.9.0.1"}, 7, `config field "gateway"`},
		{"relative dataDir", map[string]any{"dataDir": "var/lib"}, 7, `config field "dataDir"`},
		{"no subnet", map[string]any{"subnet": nil}, 7, `config field "subnet": missing`},
		{"bad route", map[string]any{"routes": []map[string]any{{"dst": "nope"}}}, 7, `config field "routes[0].dst"`},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			l := n.conflist("1.1.0", c.extra)
			p := n.newPod()
			_, err := n.add(l, p, nil)
			if cniCode(err) != c.code || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("got %v (code %d), want code %d containing %q", err, cniCode(err), c.code, c.msg)
			}
			if _, err := inNS(n.ns, "ip", "link", "show", n.bridge); err == nil {
				t.Fatalf("bridge created by a bad config")
			}
		})
	}
	t.Run("bad_portMapping", func(t *testing.T) {
		l := n.conflist("1.1.0", nil)
		_, err := n.add(l, n.newPod(), map[string]any{"portMappings": []map[string]any{{"hostPort": 0, "containerPort": 80}}})
		if cniCode(err) != 7 || !strings.Contains(err.Error(), `"runtimeConfig.portMappings[0].hostPort"`) {
			t.Fatalf("got %v", err)
		}
	})
	// Nothing changed: no bridge, no state files, no table.
	if _, err := inNS(n.ns, "ip", "link", "show", n.bridge); err == nil {
		t.Fatalf("bridge created by a bad config")
	}
	if ents, _ := os.ReadDir(n.dataDir); len(ents) != 0 {
		t.Fatalf("bad config wrote %v", ents)
	}
	if out, _ := inNS(n.ns, "nft", "list", "tables"); strings.Contains(out, "podnet") {
		t.Fatalf("bad config created the table")
	}
	_ = testutil.Run
}
