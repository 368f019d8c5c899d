package controller

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/agent"
	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/clusteripam"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func eventually(t testing.TB, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func clusterStore(t testing.TB, cidr string, grace time.Duration) *store.Store {
	t.Helper()
	s, _ := testutil.Store(t)
	c := api.ClusterConfig{ClusterCIDR: cidr, NodeCIDRMaskSize: 24}
	c.NodeGracePeriod.Duration = grace
	if _, err := s.EnsureClusterConfig(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return s
}

// startManager runs a controller manager until the test ends; stop stops
// it early.
func startManager(t testing.TB, s *store.Store, id string, loops []Loop) (m *Manager, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	m = NewManager(Config{Store: s, Logger: testutil.Logger(t), Identity: id, SessionTTL: 2 * time.Second, Resync: 200 * time.Millisecond, Loops: loops})
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	stop = func() { cancel(); <-done }
	t.Cleanup(stop)
	return m, stop
}

// startNode registers a node and keeps its lease until stop (which
// revokes it, as a stopping agent does).
func startNode(t testing.TB, s *store.Store, name string, labels map[string]string) (agent.Registration, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	reg, err := agent.Register(ctx, s, agent.NodeConfig{Name: name, IP: "192.168.50.1", Labels: labels, LeaseTTL: 2 * time.Second, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { reg.Lease.Run(ctx); close(done) }()
	var stopped bool
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(stop)
	return reg, stop
}

func node(t testing.TB, s *store.Store, name string) *corev1.Node {
	t.Helper()
	o, err := s.Get(context.Background(), nodeKind, "", name)
	if err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	return o.(*corev1.Node)
}

func pod(t *testing.T, s *store.Store, name string) *corev1.Pod {
	t.Helper()
	o, err := s.Get(context.Background(), podKind, "default", name)
	if err != nil {
		t.Fatalf("pod %s: %v", name, err)
	}
	return o.(*corev1.Pod)
}

// TestLeaderElection: of two managers exactly one runs the loops; when it
// stops, the other takes over.
func TestLeaderElection(t *testing.T) {
	s, _ := testutil.Store(t)
	a, stopA := startManager(t, s, "a", []Loop{})
	b, stopB := startManager(t, s, "b", []Loop{})
	eventually(t, "one leader", func() bool { return a.Leading() != b.Leading() })
	for range 10 { // stays exactly one
		if a.Leading() == b.Leading() {
			t.Fatalf("leading: a=%v b=%v", a.Leading(), b.Leading())
		}
		time.Sleep(50 * time.Millisecond)
	}
	leader, other, stop := a, b, stopA
	if b.Leading() {
		leader, other, stop = b, a, stopB
	}
	stop()
	if leader.Leading() {
		t.Fatal("stopped manager still leading")
	}
	eventually(t, "the other manager takes over", other.Leading)
}

func TestPlace(t *testing.T) {
	mk := func(name string, ready corev1.ConditionStatus, labels map[string]string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}}}
	}
	nodes := []*corev1.Node{
		mk("a", corev1.ConditionTrue, map[string]string{"zone": "x"}),
		mk("b", corev1.ConditionTrue, map[string]string{"zone": "x"}),
		mk("c", corev1.ConditionTrue, map[string]string{"zone": "y"}),
		mk("d", corev1.ConditionUnknown, map[string]string{"zone": "gpu"}),
	}
	p := &corev1.Pod{}
	if d := Place(p, nodes, map[string]int{"a": 2, "b": 1, "c": 1}); d.Node != "b" {
		t.Errorf("fewest pods, lowest name: %+v", d)
	}
	p.Spec.NodeSelector = map[string]string{"zone": "x"}
	if d := Place(p, nodes, map[string]int{"a": 0, "b": 1}); d.Node != "a" {
		t.Errorf("selector: %+v", d)
	}
	p.Spec.NodeSelector = map[string]string{"zone": "gpu"}
	want := "0/4 nodes are available: 3 node(s) didn't match Pod's node selector, 1 node(s) were not ready."
	if d := Place(p, nodes, nil); d.Node != "" || d.Message != want {
		t.Errorf("unschedulable: %+v\nwant %q", d, want)
	}
	if d := Place(p, nil, nil); d.Message != "0/0 nodes are available." {
		t.Errorf("no nodes: %+v", d)
	}
}

// TestScheduler: pods go to the least loaded matching Ready node; a pod no
// node fits stays Pending with the reason and is bound once a node fits.
func TestScheduler(t *testing.T) {
	s := clusterStore(t, "10.244.0.0/16", time.Hour)
	ctx := context.Background()
	startNode(t, s, "n1", map[string]string{"disk": "hdd"})
	startNode(t, s, "n2", map[string]string{"disk": "hdd"})
	startManager(t, s, "m", nil)
	for i := range 4 {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: "default"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Command: []string{"sleep", "1"}}}}}
		if err := s.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	ssd := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ssd", Namespace: "default"},
		Spec: corev1.PodSpec{NodeSelector: map[string]string{"disk": "ssd"}, Containers: []corev1.Container{{Name: "c", Command: []string{"sleep", "1"}}}}}
	if err := s.Create(ctx, ssd); err != nil {
		t.Fatal(err)
	}
	eventually(t, "4 pods spread over 2 nodes", func() bool {
		n := map[string]int{}
		for i := range 4 {
			n[pod(t, s, fmt.Sprintf("p%d", i)).Spec.NodeName]++
		}
		return n["n1"] == 2 && n["n2"] == 2
	})
	want := "0/2 nodes are available: 2 node(s) didn't match Pod's node selector."
	eventually(t, "ssd pod unschedulable", func() bool {
		c := scheduledCondition(pod(t, s, "ssd"))
		return c.Status == corev1.ConditionFalse && c.Reason == ReasonUnschedulable && c.Message == want
	})
	if p := pod(t, s, "ssd"); p.Status.Phase != corev1.PodPending || p.Spec.NodeName != "" {
		t.Fatalf("ssd: %+v", p.Status)
	}
	startNode(t, s, "n3", map[string]string{"disk": "ssd"})
	eventually(t, "ssd pod bound when a node fits", func() bool { return pod(t, s, "ssd").Spec.NodeName == "n3" })
}

// TestNodeLifecycle: a node whose agent stops turns NotReady within
// seconds and loses its pod CIDR after the grace period; a deleted node's
// CIDR is released at once; new nodes reuse both ranges.
func TestNodeLifecycle(t *testing.T) {
	s := clusterStore(t, "10.244.0.0/16", 2*time.Second)
	ctx := context.Background()
	startManager(t, s, "m", nil)
	a, stopA := startNode(t, s, "a", nil)
	b, stopB := startNode(t, s, "b", nil)
	_, stopC := startNode(t, s, "c", nil)
	if a.PodCIDR != "10.244.0.0/24" || b.PodCIDR != "10.244.1.0/24" {
		t.Fatalf("cidrs %s %s", a.PodCIDR, b.PodCIDR)
	}
	// c stops first: once the controller has marked it NotReady, it has
	// looked at every node's lease, so a live a still Ready means
	// something.
	stopC()
	eventually(t, "c NotReady", func() bool { return api.NodeReady(node(t, s, "c")) == corev1.ConditionUnknown })
	if api.NodeReady(node(t, s, "a")) != corev1.ConditionTrue {
		t.Fatal("a live node is not ready")
	}
	stopA() // revokes a's lease, as an agent does on exit
	stopped := time.Now()
	eventually(t, "a NotReady", func() bool {
		c := readyCondition(node(t, s, "a"))
		return c.Status == corev1.ConditionUnknown && c.Reason == ReasonNodeStatusUnknown
	})
	// The bound (NotReady within 3s of the lease's end) is
	// BenchmarkNodeNotReady's figure.
	t.Logf("lease revoked → NotReady: %v", time.Since(stopped))
	if node(t, s, "a").Spec.PodCIDR == "" {
		t.Fatal("CIDR reclaimed before the grace period")
	}
	eventually(t, "a's CIDR reclaimed after the grace period", func() bool {
		n := node(t, s, "a")
		for _, c := range n.Status.Conditions {
			if c.Type == agent.NodePodCIDRAllocated && c.Reason == ReasonCIDRReclaimed && n.Spec.PodCIDR == "" {
				return true
			}
		}
		return false
	})
	pool, _ := clusteripam.NewPool("10.244.0.0/16", 24)
	alloc := clusteripam.New(s.Client(), pool)
	if _, held, _ := alloc.Lookup(ctx, "a"); held {
		t.Fatal("a's claim survived the reclaim")
	}
	d, _ := startNode(t, s, "d", nil)
	if d.PodCIDR != a.PodCIDR {
		t.Fatalf("new node d got %s, want a's reclaimed %s", d.PodCIDR, a.PodCIDR)
	}
	// Deleting a node releases its range at once (b is still running, so
	// this is not the grace period at work).
	stopB()
	if _, err := s.Delete(ctx, nodeKind, "", "b", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b's claim released", func() bool {
		_, held, _ := alloc.Lookup(ctx, "b")
		return !held
	})
	e, _ := startNode(t, s, "e", nil)
	if e.PodCIDR != b.PodCIDR {
		t.Fatalf("new node e got %s, want deleted b's %s", e.PodCIDR, b.PodCIDR)
	}
}

// TestNodeComesBackBeforeGrace: an agent back within the grace period
// keeps its range and turns Ready again.
func TestNodeComesBackBeforeGrace(t *testing.T) {
	s := clusterStore(t, "10.244.0.0/16", time.Hour)
	startManager(t, s, "m", nil)
	a, stopA := startNode(t, s, "a", nil)
	_, stopProbe := startNode(t, s, "probe", nil)
	stopA()
	eventually(t, "a NotReady", func() bool { return api.NodeReady(node(t, s, "a")) == corev1.ConditionUnknown })
	a2, _ := startNode(t, s, "a", nil)
	if a2.PodCIDR != a.PodCIDR {
		t.Fatalf("restarted node got %s, had %s", a2.PodCIDR, a.PodCIDR)
	}
	eventually(t, "restarted node Ready", func() bool { return api.NodeReady(node(t, s, "a")) == corev1.ConditionTrue })
	// The controller must not turn it NotReady again: once it has marked
	// a node stopped after a's return NotReady, it has seen a's new lease.
	stopProbe()
	eventually(t, "probe NotReady", func() bool { return api.NodeReady(node(t, s, "probe")) == corev1.ConditionUnknown })
	if api.NodeReady(node(t, s, "a")) != corev1.ConditionTrue {
		t.Fatal("restarted node not Ready")
	}
}

// BenchmarkNodeNotReady measures how long after an agent's lease ends
// (revoked, as a stopping agent does) the node lifecycle controller marks
// its node NotReady; TestNodeLifecycle used to assert < 3s.
func BenchmarkNodeNotReady(b *testing.B) {
	s := clusterStore(b, "10.244.0.0/16", time.Hour)
	startManager(b, s, "m", nil)
	var total time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		name := fmt.Sprintf("n%d", i%200)
		_, stop := startNode(b, s, name, nil)
		eventually(b, name+" Ready", func() bool { return api.NodeReady(node(b, s, name)) == corev1.ConditionTrue })
		b.StartTimer()
		t0 := time.Now()
		stop()
		eventually(b, name+" NotReady", func() bool { return api.NodeReady(node(b, s, name)) == corev1.ConditionUnknown })
		total += time.Since(t0)
	}
	b.StopTimer()
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "notready-ns/op")
}
