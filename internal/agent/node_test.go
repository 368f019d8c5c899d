package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/clusteripam"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	corev1 "k8s.io/api/core/v1"
)

func clusterStore(t *testing.T, cidr string, bits int) *store.Store {
	t.Helper()
	s, _ := testutil.Store(t)
	if _, err := s.EnsureClusterConfig(context.Background(), api.ClusterConfig{ClusterCIDR: cidr, NodeCIDRMaskSize: bits}); err != nil {
		t.Fatal(err)
	}
	return s
}

func getNode(t *testing.T, s *store.Store, name string) *corev1.Node {
	t.Helper()
	o, err := s.Get(context.Background(), nodeKind, "", name)
	if err != nil {
		t.Fatalf("get node %s: %v", name, err)
	}
	return o.(*corev1.Node)
}

func cond(n *corev1.Node, typ corev1.NodeConditionType) corev1.NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == typ {
			return c
		}
	}
	return corev1.NodeCondition{}
}

// TestRegisterConcurrentDisjoint: 20 agents joining at once get 20
// non-overlapping pod CIDRs, recorded on their Nodes.
func TestRegisterConcurrentDisjoint(t *testing.T) {
	s := clusterStore(t, "10.244.0.0/16", 24)
	ctx := context.Background()
	const n = 20
	regs := make([]Registration, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			regs[i], errs[i] = Register(ctx, s, NodeConfig{Name: fmt.Sprintf("n%d", i), IP: fmt.Sprintf("192.168.50.%d", i+1)})
		}()
	}
	wg.Wait()
	var got []netip.Prefix
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("n%d: %v", i, errs[i])
		}
		c := netip.MustParsePrefix(regs[i].PodCIDR)
		for j, o := range got {
			if o.Overlaps(c) {
				t.Fatalf("n%d's %s overlaps n%d's %s", i, c, j, o)
			}
		}
		got = append(got, c)
		node := getNode(t, s, fmt.Sprintf("n%d", i))
		if node.Spec.PodCIDR != regs[i].PodCIDR || api.NodeInternalIP(node) != fmt.Sprintf("192.168.50.%d", i+1) || api.NodeReady(node) != corev1.ConditionTrue {
			t.Fatalf("n%d: node %+v %+v", i, node.Spec, node.Status)
		}
	}
}

// TestRegisterKeepsCIDR: a re-registering node (an agent restart) keeps
// its range; a static CIDR is claimed so nobody else gets it.
func TestRegisterKeepsCIDR(t *testing.T) {
	s := clusterStore(t, "10.244.0.0/16", 24)
	ctx := context.Background()
	a, err := Register(ctx, s, NodeConfig{Name: "a", IP: "192.168.50.1", StateDir: "/x", NetNS: "pnnode-a"})
	if err != nil {
		t.Fatal(err)
	}
	if a.PodCIDR != "10.244.0.0/24" || a.Lease == nil || a.Lease.LeaseID() == 0 {
		t.Fatalf("first: %+v", a)
	}
	b, _ := Register(ctx, s, NodeConfig{Name: "b", IP: "192.168.50.2"})
	a2, err := Register(ctx, s, NodeConfig{Name: "a", IP: "192.168.50.1"})
	if err != nil || a2.PodCIDR != a.PodCIDR || b.PodCIDR != "10.244.1.0/24" {
		t.Fatalf("restart: %+v %v (b %s)", a2, err, b.PodCIDR)
	}
	node := getNode(t, s, "a")
	if node.Annotations[api.AnnotationBackend] != api.BackendVXLAN || node.Annotations[api.AnnotationNetNS] != "" {
		t.Fatalf("annotations: %v", node.Annotations)
	}
	if _, err := Register(ctx, s, NodeConfig{Name: "c", PodCIDR: "10.244.1.0/24"}); !errors.Is(err, clusteripam.ErrTaken) {
		t.Fatalf("static CIDR held by b: %v", err)
	}
	d, err := Register(ctx, s, NodeConfig{Name: "d", PodCIDR: "10.244.5.0/24"})
	if err != nil || d.PodCIDR != "10.244.5.0/24" {
		t.Fatalf("static: %+v %v", d, err)
	}
	e, _ := Register(ctx, s, NodeConfig{Name: "e"})
	if e.PodCIDR != "10.244.2.0/24" {
		t.Fatalf("e: %s", e.PodCIDR)
	}
}

func TestRegisterExhausted(t *testing.T) {
	s := clusterStore(t, "10.9.0.0/23", 24)
	ctx := context.Background()
	for _, n := range []string{"a", "b"} {
		if _, err := Register(ctx, s, NodeConfig{Name: n}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Register(ctx, s, NodeConfig{Name: "n21"})
	want := "cluster CIDR 10.9.0.0/23 has no free /24 for node n21 (all 2 in use)"
	if !errors.Is(err, clusteripam.ErrExhausted) || err.Error() != want+": cluster CIDR exhausted" {
		t.Fatalf("err: %v", err)
	}
	node := getNode(t, s, "n21")
	c := cond(node, NodePodCIDRAllocated)
	if c.Status != corev1.ConditionFalse || c.Reason != "CIDRExhausted" || c.Message != err.Error() || api.NodeReady(node) != corev1.ConditionFalse {
		t.Fatalf("conditions: %+v", node.Status.Conditions)
	}
}

// TestNodeLeaseRenews: the lease key exists while the runner runs; if it
// is revoked (as after a long store outage) the runner grants a new one
// and marks the node Ready again; stopping the runner revokes it.
func TestNodeLeaseRenews(t *testing.T) {
	s := clusterStore(t, "10.244.0.0/16", 24)
	ctx, cancel := context.WithCancel(context.Background())
	reg, err := Register(ctx, s, NodeConfig{Name: "a", LeaseTTL: 2 * time.Second, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { reg.Lease.Run(ctx); close(done) }()
	cli := s.Client()
	first := reg.Lease.LeaseID()
	// Someone marks the node NotReady (the lifecycle controller would).
	if _, err := s.Mutate(ctx, nodeKind, "", "a", func(o api.Object) error {
		n := o.(*corev1.Node)
		SetNodeCondition(n, corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionUnknown}, n.Status.Conditions[0].LastHeartbeatTime)
		n.Spec.PodCIDR, n.Spec.PodCIDRs = "", nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Revoke(ctx, first); err != nil {
		t.Fatal(err)
	}
	eventually(t, "new lease and Ready again with the same CIDR", func() bool {
		resp, err := cli.Get(ctx, NodeLeaseKey("a"))
		if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == int64(first) {
			return false
		}
		n := getNode(t, s, "a")
		return api.NodeReady(n) == corev1.ConditionTrue && n.Spec.PodCIDR == reg.PodCIDR
	})
	cancel()
	<-done
	resp, _ := cli.Get(context.Background(), NodeLeaseKey("a"))
	if len(resp.Kvs) != 0 {
		t.Fatal("lease key left after the runner stopped")
	}
}

// TestNodeLeaseSurvivesStoreOutage: with the store down longer than the
// lease TTL the runner keeps going, and once the store is back the node
// has a live lease and is Ready again.
func TestNodeLeaseSurvivesStoreOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd processes")
	}
	c := testutil.StartEtcdCluster(t, 1)
	cli, err := store.Connect(store.ClientConfig{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	s := store.New(cli)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := s.EnsureClusterConfig(ctx, api.ClusterConfig{}); err != nil {
		t.Fatal(err)
	}
	reg, err := Register(ctx, s, NodeConfig{Name: "a", LeaseTTL: 2 * time.Second, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { reg.Lease.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	c.Stop(0)
	time.Sleep(5 * time.Second)
	select {
	case <-done:
		t.Fatal("lease runner gave up while the store was down")
	default:
	}
	c.Start(0)
	c.WaitHealthy(30 * time.Second)
	eventually(t, "live lease and Ready after the outage", func() bool {
		gctx, gcancel := context.WithTimeout(ctx, time.Second)
		defer gcancel()
		resp, err := cli.Get(gctx, NodeLeaseKey("a"))
		if err != nil || len(resp.Kvs) != 1 {
			return false
		}
		ttl, err := cli.TimeToLive(gctx, reg.Lease.LeaseID())
		if err != nil || ttl.TTL <= 0 || resp.Kvs[0].Lease != int64(reg.Lease.LeaseID()) {
			return false
		}
		o, err := s.Get(gctx, nodeKind, "", "a")
		return err == nil && api.NodeReady(o.(*corev1.Node)) == corev1.ConditionTrue
	})
}
