package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/cluster"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestClusterExternalEtcd: the cluster suite against an external 3-member
// etcd (Debian's etcd, one member per host on the underlay) instead of the
// server's embedded store: the datapath checks; one member killed (quorum
// holds, nothing breaks); every member stopped for 30s (pods keep talking,
// agents reconnect, a later pod reaches the datapath); and delete leaves
// no etcd behind.
func TestClusterExternalEtcd(t *testing.T) {
	c, _, _ := newLocalCluster(t, clusterOpts{nodes: 3, backend: "vxlan", externalEtcd: true})
	if len(c.rec.Etcd) != 3 {
		t.Fatalf("etcd members %d, want 3", len(c.rec.Etcd))
	}
	cfg, err := cluster.LoadConfig(c.config)
	if err != nil {
		t.Fatal(err)
	}
	if e := cfg.Get(c.name); e == nil || len(e.EtcdEndpoints) != 3 || e.NetNS != c.rec.Server.NetNS {
		t.Fatalf("context entry %+v: want 3 endpoints dialled from %s", e, c.rec.Server.NetNS)
	}
	if srv := strings.Join(c.rec.Server.Args, " "); !strings.Contains(srv, "--etcd-endpoints") {
		t.Fatalf("server does not use the external etcd: %s", srv)
	}
	step := func(name string, f func(t *testing.T)) {
		start := time.Now()
		ok := t.Run(name, f)
		t.Logf("%s: %s", name, time.Since(start).Round(time.Millisecond))
		if !ok {
			t.FailNow()
		}
	}
	step("datapath", func(t *testing.T) { checkDatapath(t, c) })
	step("one etcd member killed", func(t *testing.T) { checkEtcdMemberLoss(t, c) })
	step("every etcd member stopped", func(t *testing.T) { checkStoreOutage(t, c, "o-", 30*time.Second) })
}

// etcdStatus asks each external etcd member for its status (nil for a
// member that does not answer).
func etcdStatus(t *testing.T, c *localCluster) []*clientv3.StatusResponse {
	t.Helper()
	cli, err := store.Connect(c.rec.StoreConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	var out []*clientv3.StatusResponse
	for _, ep := range c.rec.Topology.EtcdEndpoints() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := cli.Status(ctx, ep)
		cancel()
		if err != nil {
			st = nil
		}
		out = append(out, st)
	}
	return out
}

// etcdLeader returns the index of the member that leads the external etcd.
func etcdLeader(t *testing.T, c *localCluster) int {
	t.Helper()
	leader := -1
	eventually(t, "an etcd leader", 10*time.Second, func() (bool, string) {
		for i, st := range etcdStatus(t, c) {
			if st != nil && st.Leader != 0 && st.Leader == st.Header.MemberId {
				leader = i
				return true, ""
			}
		}
		return false, "no member leads"
	})
	return leader
}

// checkEtcdMemberLoss kills the external etcd's leader with SIGKILL: the
// other two keep a quorum, so a long-lived connection between pods on two
// nodes, the CLI, every agent and the server carry on, `cluster list` says
// Degraded, and a pod created meanwhile reaches the datapath. The member
// then rejoins and the cluster is Running again.
func checkEtcdMemberLoss(t *testing.T, c *localCluster) {
	echo := c.run("m-echo", 1, nil, "socat", "TCP-LISTEN:9000,reuseaddr,fork", "EXEC:cat")
	c.run("m-client", 2, nil, "sleep", "infinity")
	c.pingable("m-client", echo.Status.PodIP)
	k := c.dial("m-client", echo.Status.PodIP+":9000")
	k.roundTrip(t, "before")

	victim := &c.rec.Etcd[etcdLeader(t, c)]
	pid := victim.PID()
	if pid == 0 {
		t.Fatalf("%s not running", victim.Name)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, victim.Name+" gone", 5*time.Second, func() (bool, string) { return victim.PID() == 0, "" })
	killed := time.Now()
	t.Logf("killed the leader %s", victim.Name)
	k.roundTrip(t, "leader killed")
	if out := c.must("cluster", "list"); !strings.Contains(out, "etcd 2/3 members") {
		t.Errorf("cluster list should show the lost member:\n%s", out)
	}
	// The store still serves: reads, and a new pod is bound, run and
	// reached across nodes.
	eventually(t, "every node Ready through the surviving members", 15*time.Second, func() (bool, string) {
		out, err := c.podnet("get", "nodes")
		return err == nil && strings.Count(out, " Ready ") == 3, out
	})
	late := c.run("m-late", 3, nil, filepath.Join(c.bin, "podnet"), "echo-server", "--listen", ":8080", "--name", "m-late")
	c.pingable("m-client", late.Status.PodIP)
	eventually(t, "a pod created with a member down answers", 10*time.Second, func() (bool, string) {
		out, err := c.podnet("exec", "m-client", "--", "curl", "-sS", "-m5", "http://"+late.Status.PodIP+":8080/")
		return err == nil && strings.Contains(out, "hello from m-late"), out
	})
	k.roundTrip(t, "after a new pod")
	for _, p := range append([]cluster.Proc{c.rec.Server}, c.rec.Agents...) {
		if p.PID() == 0 {
			t.Fatalf("%s died when one etcd member was lost", p.Name)
		}
	}
	t.Logf("one member down for %s", time.Since(killed).Round(time.Millisecond))

	if _, err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, victim.Name+" back in the cluster", 20*time.Second, func() (bool, string) {
		out, err := c.podnet("cluster", "list")
		if err != nil || !strings.Contains(out, "Running") {
			return false, out
		}
		for i, st := range etcdStatus(t, c) {
			if st == nil || st.Leader == 0 {
				return false, c.rec.Etcd[i].Name + " does not serve"
			}
		}
		return true, ""
	})
	k.roundTrip(t, "member back")
}

// TestClusterExternalEtcdCreateFailure: a member that cannot start fails
// the create with its log in the error, and nothing is left: no etcd
// process, namespace or file.
func TestClusterExternalEtcdCreateFailure(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.EtcdBinary(t)
	bin := testutil.Binaries(t)
	name := testutil.UniqueName("pn", 10)
	r, err := cluster.NewRecord(cluster.Spec{Name: name, Nodes: 1, EtcdMembers: 3}, t.TempDir(), filepath.Join(bin, "podnet"))
	if err != nil {
		t.Fatal(err)
	}
	r.Etcd[2].Args = append(r.Etcd[2].Args, "--no-such-flag")
	var progress strings.Builder
	err = cluster.Create(t.Context(), r, cluster.CreateOptions{Progress: &progress, Timeout: 20 * time.Second})
	if err == nil {
		cluster.Delete(r, nil)
		t.Fatal("create succeeded with a broken etcd member")
	}
	if !strings.Contains(err.Error(), "etcd3") {
		t.Errorf("the error should name the member: %v", err)
	}
	t.Logf("create failed as it should: %v\n%s", err, progress.String())
	c := &localCluster{t: t, bin: bin, name: name, config: filepath.Join(t.TempDir(), "config"), parent: filepath.Dir(r.Dir)}
	c.assertGone(nil, snapshot{})
}
