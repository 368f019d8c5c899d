package agent

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/overlay"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func testNode(name, ip, cidr, data string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{}}}
	n.Spec.PodCIDR = cidr
	if ip != "" {
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}
	}
	if data != "" {
		n.Annotations[api.AnnotationBackendData] = data
	}
	return n
}

// overlayHarness runs the overlay runner for node n1 over a fake kernel
// and a real (embedded) store.
type overlayHarness struct {
	k     *overlay.Fake
	mu    sync.Mutex
	syncs int
}

func (h *overlayHarness) routes() []string {
	rs, _ := h.k.Routes()
	var out []string
	for _, r := range rs {
		out = append(out, r.String())
	}
	slices.Sort(out)
	return out
}

// waitRoutes waits for the routes to be want, with a deadline generous
// enough for a loaded machine; BenchmarkOverlayJoinLeave measures how fast.
func (h *overlayHarness) waitRoutes(t testing.TB, want ...string) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 30*time.Second {
		if slices.Equal(h.routes(), want) {
			return time.Since(start)
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("routes %v, want %v", h.routes(), want)
	return 0
}

func TestOverlayRunnerFollowsNodes(t *testing.T) {
	s, _ := testutil.Store(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Create(ctx, testNode("n1", "192.168.250.11", "10.244.1.0/24", "")); err != nil {
		t.Fatal(err)
	}
	h := &overlayHarness{k: overlay.NewFake("eth0", netip.MustParsePrefix("192.168.250.11/24"), 1500)}
	self := overlay.Node{Name: "n1", IP: netip.MustParseAddr("192.168.250.11"), PodCIDR: netip.MustParsePrefix("10.244.1.0/24")}
	b, err := overlay.New(api.BackendVXLAN, overlay.Config{Self: self, Kernel: h.k, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	data, _, err := b.Setup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := NewOverlay(OverlayConfig{NodeName: "n1", Store: s, Backend: b, Data: data, Logger: testutil.Logger(t),
		OnSync: func([]overlay.Node, error) { h.mu.Lock(); h.syncs++; h.mu.Unlock() }})
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	// Our backend data is published on our Node, with the condition.
	deadline := time.Now().Add(5 * time.Second)
	for {
		o, err := s.Get(ctx, nodeKind, "", "n1")
		if err != nil {
			t.Fatal(err)
		}
		n := o.(*corev1.Node)
		var cond *corev1.NodeCondition
		for i := range n.Status.Conditions {
			if n.Status.Conditions[i].Type == corev1.NodeNetworkUnavailable {
				cond = &n.Status.Conditions[i]
			}
		}
		if n.Annotations[api.AnnotationBackendData] == `{"vtepMAC":"`+data.VTEPMAC+`"}` && cond != nil && cond.Status == corev1.ConditionFalse && cond.Reason == ReasonOverlayReady {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node n1: annotations %v conditions %v", n.Annotations, n.Status.Conditions)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A node joins: its route is programmed within 1 s.
	start := time.Now()
	if err := s.Create(ctx, testNode("n2", "192.168.250.12", "10.244.2.0/24", `{"vtepMAC":"0a:00:00:00:00:02"}`)); err != nil {
		t.Fatal(err)
	}
	h.waitRoutes(t, "10.244.2.0/24 via 10.244.2.0 dev podnet.vxlan onlink")
	// The bound (< 1s) is BenchmarkOverlayJoinLeave's figure.
	t.Logf("node created → route programmed: %v", time.Since(start))
	// A node without backend data yet, or without pod CIDR, is no peer:
	// once a Sync has seen both, still only n2 has a route.
	n3, n4 := testNode("n3", "192.168.250.13", "10.244.3.0/24", ""), testNode("n4", "192.168.250.14", "", "")
	if err := s.Create(ctx, n4); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, n3); err != nil {
		t.Fatal(err)
	}
	waitSyncedRev(t, r, n3.ResourceVersion)
	h.waitRoutes(t, "10.244.2.0/24 via 10.244.2.0 dev podnet.vxlan onlink")
	if _, err := s.Mutate(ctx, nodeKind, "", "n3", func(o api.Object) error {
		o.(*corev1.Node).Annotations = map[string]string{api.AnnotationBackendData: `{"vtepMAC":"0a:00:00:00:00:03"}`}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	h.waitRoutes(t, "10.244.2.0/24 via 10.244.2.0 dev podnet.vxlan onlink", "10.244.3.0/24 via 10.244.3.0 dev podnet.vxlan onlink")

	// NotReady keeps the route (an agent restart must not flap routes).
	h.k.TakeOps()
	notReady, err := s.Mutate(ctx, nodeKind, "", "n2", func(o api.Object) error {
		SetNodeCondition(o.(*corev1.Node), corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "NodeStatusUnknown"}, metav1.Now())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	waitSyncedRev(t, r, notReady.GetResourceVersion())
	if ops := h.k.TakeOps(); len(ops) != 0 {
		t.Fatalf("NotReady node changed the datapath: %v", ops)
	}

	// Pod CIDR reclaimed: the peer goes.
	start = time.Now()
	if _, err := s.Mutate(ctx, nodeKind, "", "n2", func(o api.Object) error {
		o.(*corev1.Node).Spec.PodCIDR = ""
		o.(*corev1.Node).Spec.PodCIDRs = nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	h.waitRoutes(t, "10.244.3.0/24 via 10.244.3.0 dev podnet.vxlan onlink")
	t.Logf("pod CIDR cleared → route removed: %v", time.Since(start))
	// Deleted: the peer goes.
	start = time.Now()
	if _, err := s.Delete(ctx, nodeKind, "", "n3", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	h.waitRoutes(t)
	// The bound (< 1s) is BenchmarkOverlayJoinLeave's figure.
	t.Logf("node deleted → route removed: %v", time.Since(start))
}

// waitSyncedRev waits until the runner has finished a Sync computed from
// the Nodes at store revision rv or later: the positive sign that a change
// was seen, before a test asserts it did nothing.
func waitSyncedRev(t testing.TB, r *Overlay, rv string) {
	t.Helper()
	want, err := strconv.ParseInt(rv, 10, 64)
	if err != nil || want == 0 {
		t.Fatalf("resourceVersion %q: %v", rv, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for r.SyncedRevision() < want {
		if time.Now().After(deadline) {
			t.Fatalf("the overlay runner never synced revision %d (last %d)", want, r.SyncedRevision())
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkOverlayJoinLeave measures, over a fake kernel and the embedded
// store, how long a node's creation takes to become a route and its
// deletion to remove it (the bound the tests used to assert: < 1s each).
func BenchmarkOverlayJoinLeave(b *testing.B) {
	s, _ := testutil.Store(b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Create(ctx, testNode("n1", "192.168.250.11", "10.244.1.0/24", "")); err != nil {
		b.Fatal(err)
	}
	h := &overlayHarness{k: overlay.NewFake("eth0", netip.MustParsePrefix("192.168.250.11/24"), 1500)}
	self := overlay.Node{Name: "n1", IP: netip.MustParseAddr("192.168.250.11"), PodCIDR: netip.MustParsePrefix("10.244.1.0/24")}
	be, err := overlay.New(api.BackendVXLAN, overlay.Config{Self: self, Kernel: h.k, StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	data, _, err := be.Setup(ctx)
	if err != nil {
		b.Fatal(err)
	}
	r := NewOverlay(OverlayConfig{NodeName: "n1", Store: s, Backend: be, Data: data})
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	var join, leave time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := s.Create(ctx, testNode("n2", "192.168.250.12", "10.244.2.0/24", `{"vtepMAC":"0a:00:00:00:00:02"}`)); err != nil {
			b.Fatal(err)
		}
		h.waitRoutes(b, "10.244.2.0/24 via 10.244.2.0 dev podnet.vxlan onlink")
		join += time.Since(start)
		start = time.Now()
		if _, err := s.Delete(ctx, nodeKind, "", "n2", store.DeleteOptions{}); err != nil {
			b.Fatal(err)
		}
		h.waitRoutes(b)
		leave += time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(join.Nanoseconds())/float64(b.N), "join-ns/op")
	b.ReportMetric(float64(leave.Nanoseconds())/float64(b.N), "leave-ns/op")
}

func TestOverlayRunnerReportsSegmentError(t *testing.T) {
	s, _ := testutil.Store(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := s.Create(ctx, testNode("n1", "192.168.250.11", "10.244.1.0/24", "")); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, testNode("n3", "192.168.251.11", "10.244.3.0/24", "{}")); err != nil {
		t.Fatal(err)
	}
	k := overlay.NewFake("eth0", netip.MustParsePrefix("192.168.250.11/24"), 1500)
	k.Paths[netip.MustParseAddr("192.168.251.11")] = overlay.Path{Dev: "eth0", Gateway: netip.MustParseAddr("192.168.250.254")}
	self := overlay.Node{Name: "n1", IP: netip.MustParseAddr("192.168.250.11"), PodCIDR: netip.MustParsePrefix("10.244.1.0/24")}
	b, err := overlay.New(api.BackendHostGW, overlay.Config{Self: self, Kernel: k})
	if err != nil {
		t.Fatal(err)
	}
	r := NewOverlay(OverlayConfig{NodeName: "n1", Store: s, Backend: b, Logger: testutil.Logger(t)})
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	want := "host-gw: node n3 (192.168.251.11) is not on this node's L2 segment (reached via 192.168.250.254); use the vxlan backend"
	deadline := time.Now().Add(5 * time.Second)
	for {
		o, _ := s.Get(ctx, nodeKind, "", "n1")
		n := o.(*corev1.Node)
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionTrue && c.Reason == ReasonNotOnL2Segment && c.Message == want {
				if n.Annotations[api.AnnotationBackendData] != "{}" {
					t.Fatalf("backend data %q", n.Annotations[api.AnnotationBackendData])
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("conditions %+v, want NetworkUnavailable=True %s %q", n.Status.Conditions, ReasonNotOnL2Segment, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPeersSkipsIncompleteNodes(t *testing.T) {
	nodes := map[string]*corev1.Node{
		"n1": testNode("n1", "192.168.250.11", "10.244.1.0/24", ""),
		"n2": testNode("n2", "192.168.250.12", "10.244.2.0/24", `{"vtepMAC":"0a:00:00:00:00:02"}`),
		"n3": testNode("n3", "", "10.244.3.0/24", ""),
		"n4": testNode("n4", "192.168.250.14", "", ""),
		"n5": testNode("n5", "192.168.250.15", "10.244.5.0/24", `not json`),
	}
	got := Peers("n1", nodes, nil)
	var names []string
	for _, p := range got {
		names = append(names, p.Name+"/"+p.Data.VTEPMAC)
	}
	if strings.Join(names, ",") != "n2/0a:00:00:00:00:02,n5/" {
		t.Fatalf("peers %v", names)
	}
}
