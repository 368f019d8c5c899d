package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/cluster"
	"github.com/podnet/podnet/internal/netns"
)

// TestClusterAddRemoveNode: add-node grows a running cluster by a node that
// becomes Ready, joins the overlay and serves `cluster exec`; remove-node
// drains it (its pods, a host-network one included, are stopped through
// its agent), stops the agent, deletes the Node and leaves nothing of it:
// no namespace, process, file, record or context entry, and no peer route
// on the other nodes.
func TestClusterAddRemoveNode(t *testing.T) {
	c, _, _ := newLocalCluster(t, clusterOpts{nodes: 1, backend: "vxlan"})
	c.run("srv", 1, nil, "sleep", "infinity")

	out := c.must("cluster", "add-node")
	n2 := cluster.NodeName(c.name, 2)
	if !strings.Contains(out, "node "+n2+" ") {
		t.Fatalf("add-node:\n%s", out)
	}
	out = c.must("cluster", "add-node", "--name", "worker-x")
	if !strings.Contains(out, "worker-x (192.168.250.13) added") {
		t.Fatalf("add-node --name worker-x:\n%s", out)
	}
	if out, err := c.podnet("cluster", "add-node", "--name", "outside"); err == nil || !strings.Contains(out, "already has a host") {
		t.Fatalf("add-node --name outside: %v\n%s", err, out)
	}
	rec := c.reload()
	if len(rec.Agents) != 3 || rec.Topology.Host("worker-x") == nil || rec.Topology.Host("worker-x").NetNS != cluster.NetNSPrefix(c.name)+"n3" {
		t.Fatalf("record after add-node: agents %v, worker-x %+v", rec.Agents, rec.Topology.Host("worker-x"))
	}
	for _, n := range []string{n2, "worker-x"} {
		eventually(t, n+" Ready", 10*time.Second, func() (bool, string) {
			out, _ := c.podnet("get", "node", n)
			return strings.Contains(out, " Ready "), out
		})
	}
	// The context file knows the new nodes: exec by node name.
	if out := check(t)(c.hostExec("worker-x", "nft", "list", "table", "inet", "podnet")); !strings.Contains(out, "table inet podnet") {
		t.Fatalf("cluster exec worker-x -- nft list table inet podnet:\n%s", out)
	}
	srv := c.pod("srv")
	c.must("run", "p1", "--node", "worker-x", "--wait", "--", "sleep", "infinity")
	c.must("run", "ph", "--node", "worker-x", "--network", "host", "--wait", "--", "sleep", "infinity")
	c.pingable("p1", srv.Status.PodIP)
	cidr := c.nodeObject("worker-x").Spec.PodCIDR
	routes := func() string { out, _ := c.hostExec(c.node(1).Name, "ip", "route"); return out }
	if !strings.Contains(routes(), cidr) {
		t.Fatalf("%s has no route to worker-x's %s:\n%s", c.node(1).Name, cidr, routes())
	}

	// What worker-x runs, found without the code under test.
	nodeNS := cluster.NetNSPrefix(c.name) + "n3"
	pods := podNamespacesOf(filepath.Join(c.parent, c.name, "agent", "worker-x"))
	if len(pods) != 1 {
		t.Fatalf("worker-x's pod namespaces: %v, want p1's", pods)
	}
	snap := c.snapshot(pods)
	mine := nodeProcs(snap, append([]string{nodeNS}, pods...), filepath.Join(c.parent, c.name, "agent", "worker-x"))
	if len(mine) < 4 { // agent, 2 shims, 2 containers
		t.Fatalf("processes of worker-x: %v", mine)
	}

	out = c.must("cluster", "remove-node", "worker-x")
	t.Logf("remove-node:\n%s", out)
	if !strings.Contains(out, "2 pod(s) deleted by the agent") {
		t.Errorf("remove-node did not drain through the agent:\n%s", out)
	}
	if out := c.must("get", "nodes"); strings.Contains(out, "worker-x") {
		t.Errorf("worker-x still listed:\n%s", out)
	}
	if out := c.must("get", "pods", "-A"); strings.Contains(out, "p1") || strings.Contains(out, "ph") {
		t.Errorf("worker-x's pods still listed:\n%s", out)
	}
	if netns.Exists(nodeNS) {
		t.Errorf("namespace %s left", nodeNS)
	}
	for _, ns := range pods {
		if netns.Exists(ns) || exists(filepath.Join("/etc/netns", ns)) {
			t.Errorf("pod namespace %s left", ns)
		}
	}
	for _, d := range []string{filepath.Join(c.parent, c.name, "agent", "worker-x"), filepath.Join(c.parent, c.name, "nodes", "worker-x")} {
		if exists(d) {
			t.Errorf("%s left", d)
		}
	}
	eventually(t, "worker-x's processes gone", 10*time.Second, func() (bool, string) {
		left := stillAlive(mine)
		return len(left) == 0, fmt.Sprint(left)
	})
	rec = c.reload()
	if rec.Topology.Host("worker-x") != nil || rec.Agent("worker-x") != nil || len(rec.Agents) != 2 {
		t.Errorf("record still has worker-x: %+v", rec.Agents)
	}
	cfg, err := cluster.LoadConfig(c.config)
	if err != nil {
		t.Fatal(err)
	}
	if e := cfg.Get(c.name); e == nil || len(e.Nodes) != 2 || e.Nodes[1].Name != n2 {
		t.Errorf("context entry after remove-node: %+v", e)
	}
	eventually(t, "the peer route to worker-x removed", 10*time.Second, func() (bool, string) {
		r := routes()
		return !strings.Contains(r, cidr), r
	})
	if out, err := c.podnet("cluster", "remove-node", "worker-x"); err == nil || !strings.Contains(out, `no node "worker-x"`) {
		t.Errorf("second remove-node: %v\n%s", err, out)
	}
	// The cluster still works, and a node added now gets the next index.
	c.pingable("srv", c.nodeObject(n2).Status.Addresses[0].Address)
	c.must("cluster", "add-node")
	if h := c.reload().Topology.Host(cluster.NodeName(c.name, 3)); h == nil {
		t.Errorf("the node added after the removal is not %s", cluster.NodeName(c.name, 3))
	}
}

func (c *localCluster) reload() *cluster.Record {
	c.t.Helper()
	r, err := cluster.LoadRecord(filepath.Join(c.parent, c.name))
	if err != nil {
		c.t.Fatal(err)
	}
	c.rec = r
	return r
}

// podNamespacesOf reads one node's pod records.
func podNamespacesOf(stateDir string) []string {
	recs, _ := filepath.Glob(filepath.Join(stateDir, "pods", "*", "pod.json"))
	var out []string
	for _, p := range recs {
		b, _ := os.ReadFile(p)
		var r struct {
			NetNS string `json:"netns"`
		}
		if json.Unmarshal(b, &r) == nil && r.NetNS != "" {
			out = append(out, r.NetNS)
		}
	}
	return out
}

// nodeProcs picks from a snapshot the processes in the named namespaces
// or writing a container log under stateDir.
func nodeProcs(s snapshot, names []string, stateDir string) []proc {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	var out []proc
	seen := map[int]bool{}
	for _, p := range s.inCluster {
		if want[s.netns[p.netns]] && !seen[p.pid] {
			out, seen[p.pid] = append(out, p), true
		}
	}
	for _, p := range s.containers {
		if isContainerLog(p.out, stateDir+"/") && !seen[p.pid] {
			out, seen[p.pid] = append(out, p), true
		}
	}
	return out
}

// stillAlive returns those of ps that still run (same pid and start time).
func stillAlive(ps []proc) []proc {
	now := map[string]bool{}
	for _, p := range procs() {
		now[fmt.Sprintf("%d/%s", p.pid, p.start)] = true
	}
	var out []proc
	for _, p := range ps {
		if now[fmt.Sprintf("%d/%s", p.pid, p.start)] {
			out = append(out, p)
		}
	}
	return out
}
