package controller

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/informer"
	"github.com/podnet/podnet/internal/lbipam"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func lbStore(t *testing.T, lbRange string) *store.Store {
	t.Helper()
	s, _ := testutil.Store(t)
	ctx := context.Background()
	if err := s.EnsureNamespaces(ctx, "default", "other"); err != nil {
		t.Fatal(err)
	}
	c := api.ClusterConfig{LoadBalancerRange: lbRange}
	if _, err := s.EnsureClusterConfig(ctx, c); err != nil {
		t.Fatal(err)
	}
	return s
}

func createService(t *testing.T, s *store.Store, ns, name string, typ corev1.ServiceType, lbIP string) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Type: typ, LoadBalancerIP: lbIP, Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
	if err := s.Create(context.Background(), svc); err != nil {
		t.Fatal(err)
	}
}

func ingressIP(t *testing.T, s *store.Store, ns, name string) string {
	t.Helper()
	o, err := s.Get(context.Background(), serviceKind, ns, name)
	if err != nil {
		t.Fatal(err)
	}
	in := o.(*corev1.Service).Status.LoadBalancer.Ingress
	switch len(in) {
	case 0:
		return ""
	case 1:
		return in[0].IP
	}
	t.Fatalf("service %s/%s: %d ingress entries: %v", ns, name, len(in), in)
	return ""
}

func reconcileLB(t *testing.T, c *LoadBalancer) {
	t.Helper()
	if err := c.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func claimsOf(t *testing.T, s *store.Store) map[string]string {
	t.Helper()
	cl, err := lbipam.New(s.Client()).Claims(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for ip, owner := range cl {
		out[ip.String()] = owner
	}
	return out
}

func TestLoadBalancerAllocation(t *testing.T) {
	s := lbStore(t, "10.7.0.10-10.7.0.12")
	c := NewLoadBalancer(s, testutil.Logger(t), time.Second)
	createService(t, s, "default", "a", corev1.ServiceTypeLoadBalancer, "")
	createService(t, s, "default", "b", corev1.ServiceTypeLoadBalancer, "10.7.0.12")
	createService(t, s, "default", "plain", corev1.ServiceTypeClusterIP, "")
	reconcileLB(t, c)
	if a, b := ingressIP(t, s, "default", "a"), ingressIP(t, s, "default", "b"); a != "10.7.0.10" || b != "10.7.0.12" {
		t.Fatalf("a=%q b=%q, want 10.7.0.10 and the requested 10.7.0.12", a, b)
	}
	if ip := ingressIP(t, s, "default", "plain"); ip != "" {
		t.Fatalf("ClusterIP service got %q", ip)
	}
	// A second pass changes nothing (and writes nothing).
	o, _ := s.Get(context.Background(), serviceKind, "default", "a")
	reconcileLB(t, c)
	o2, _ := s.Get(context.Background(), serviceKind, "default", "a")
	if o.GetResourceVersion() != o2.GetResourceVersion() {
		t.Fatal("an idle pass rewrote the service")
	}
	// A requested address held by another Service: pending.
	createService(t, s, "other", "c", corev1.ServiceTypeLoadBalancer, "10.7.0.10")
	// Outside the pool: pending.
	createService(t, s, "other", "d", corev1.ServiceTypeLoadBalancer, "10.8.0.1")
	reconcileLB(t, c)
	if ip := ingressIP(t, s, "other", "c"); ip != "" {
		t.Fatalf("c took a held address: %q", ip)
	}
	if ip := ingressIP(t, s, "other", "d"); ip != "" {
		t.Fatalf("d got %q from outside the pool", ip)
	}
	if !strings.Contains(c.pending["other/c"], "held by service default/a") || !strings.Contains(c.pending["other/d"], "outside the load-balancer pool 10.7.0.10-10.7.0.12") {
		t.Fatalf("pending reasons: %v", c.pending)
	}
	// The pool's last address goes to the next one without a request.
	createService(t, s, "other", "e", corev1.ServiceTypeLoadBalancer, "")
	createService(t, s, "other", "f", corev1.ServiceTypeLoadBalancer, "")
	reconcileLB(t, c)
	if e, f := ingressIP(t, s, "other", "e"), ingressIP(t, s, "other", "f"); e != "10.7.0.11" || f != "" {
		t.Fatalf("e=%q f=%q, want 10.7.0.11 and pending", e, f)
	}
	if !strings.Contains(c.pending["other/f"], "exhausted (all 3 addresses in use)") {
		t.Fatalf("pending reason of f: %q", c.pending["other/f"])
	}
	// Deleting a frees its address: c (which asked for it) gets it.
	if _, err := s.Delete(context.Background(), serviceKind, "default", "a", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	reconcileLB(t, c) // releases a's address
	reconcileLB(t, c) // gives it to c
	if ip := ingressIP(t, s, "other", "c"); ip != "10.7.0.10" {
		t.Fatalf("c after a's delete: %q", ip)
	}
	// Type change to ClusterIP releases the address and clears the status.
	if _, err := s.Mutate(context.Background(), serviceKind, "default", "b", func(o api.Object) error {
		sp := &o.(*corev1.Service).Spec
		sp.Type, sp.LoadBalancerIP = corev1.ServiceTypeClusterIP, ""
		sp.ExternalTrafficPolicy, sp.AllocateLoadBalancerNodePorts = "", nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	reconcileLB(t, c)
	if ip := ingressIP(t, s, "default", "b"); ip != "" {
		t.Fatalf("b kept status %q after becoming ClusterIP", ip)
	}
	reconcileLB(t, c) // f gets the address b freed
	want := map[string]string{"10.7.0.10": "other/c", "10.7.0.11": "other/e", "10.7.0.12": "other/f"}
	if got := claimsOf(t, s); len(got) != 3 || got["10.7.0.10"] != want["10.7.0.10"] || got["10.7.0.11"] != want["10.7.0.11"] || got["10.7.0.12"] != want["10.7.0.12"] {
		t.Fatalf("claims %v, want %v", got, want)
	}
	// A status wiped by a client (apply) is restored from the claim.
	if _, err := s.Mutate(context.Background(), serviceKind, "other", "e", func(o api.Object) error {
		o.(*corev1.Service).Status = corev1.ServiceStatus{}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	reconcileLB(t, c)
	if ip := ingressIP(t, s, "other", "e"); ip != "10.7.0.11" {
		t.Fatalf("e after its status was wiped: %q", ip)
	}
}

func TestLoadBalancerNoPool(t *testing.T) {
	s := lbStore(t, "")
	c := NewLoadBalancer(s, testutil.Logger(t), time.Second)
	createService(t, s, "default", "a", corev1.ServiceTypeLoadBalancer, "")
	reconcileLB(t, c)
	if ip := ingressIP(t, s, "default", "a"); ip != "" {
		t.Fatalf("got %q without a pool", ip)
	}
	if !strings.Contains(c.pending["default/a"], "no load-balancer pool (podnet server --lb-range") {
		t.Fatalf("pending reason: %q", c.pending["default/a"])
	}
}

// The pool shrinks: an address outside it is released and the Service
// gets one inside, through the running, leader-elected loop.
func TestLoadBalancerPoolChangeRunning(t *testing.T) {
	s := lbStore(t, "10.7.0.10-10.7.0.20")
	startManager(t, s, "m1", []Loop{NewLoadBalancer(s, testutil.Logger(t), time.Hour)})
	createService(t, s, "default", "a", corev1.ServiceTypeLoadBalancer, "10.7.0.20")
	eventually(t, "a gets its requested address", func() bool { return ingressIP(t, s, "default", "a") == "10.7.0.20" })
	createService(t, s, "default", "b", corev1.ServiceTypeLoadBalancer, "")
	eventually(t, "b gets the first address", func() bool { return ingressIP(t, s, "default", "b") == "10.7.0.10" })
	if _, err := s.Mutate(context.Background(), serviceKind, "default", "a", func(o api.Object) error {
		o.(*corev1.Service).Spec.LoadBalancerIP = ""
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.EnsureClusterConfig(context.Background(), api.ClusterConfig{LoadBalancerRange: "10.7.0.10-10.7.0.15"}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a moves into the new pool", func() bool { return ingressIP(t, s, "default", "a") == "10.7.0.11" })
	if got := claimsOf(t, s); len(got) != 2 || got["10.7.0.11"] != "default/a" {
		t.Fatalf("claims %v", got)
	}
}

// TestLoadBalancerIdleCachedPass: passes over the watch-fed Service cache
// (what Run does) assign the addresses, and once done a pass writes
// nothing to the store, neither over a cache that has caught up nor over
// one that still shows the Services without their status.
func TestLoadBalancerIdleCachedPass(t *testing.T) {
	s := lbStore(t, "10.7.0.10-10.7.0.12")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	createService(t, s, "default", "a", corev1.ServiceTypeLoadBalancer, "")
	createService(t, s, "default", "b", corev1.ServiceTypeLoadBalancer, "10.7.0.12")
	createService(t, s, "default", "plain", corev1.ServiceTypeClusterIP, "")
	c := NewLoadBalancer(s, testutil.Logger(t), time.Hour)
	svcs := informer.New[*corev1.Service](s, serviceKind, "", testutil.Logger(t))
	go svcs.Run(ctx)
	eventually(t, "the Service cache syncs", func() bool { return svcs.HasSynced() && len(svcs.List()) == 3 })
	stale := svcs.List() // no status yet
	if err := c.reconcile(ctx, svcs.List); err != nil {
		t.Fatal(err)
	}
	if a, b := ingressIP(t, s, "default", "a"), ingressIP(t, s, "default", "b"); a != "10.7.0.10" || b != "10.7.0.12" {
		t.Fatalf("a=%q b=%q, want 10.7.0.10 and the requested 10.7.0.12", a, b)
	}
	before := revision(t, s)
	for range 3 {
		if err := c.reconcile(ctx, func() []*corev1.Service { return stale }); err != nil {
			t.Fatal(err)
		}
	}
	if r := revision(t, s); r != before {
		t.Fatalf("passes over a stale cache wrote: revision %d -> %d", before, r)
	}
	eventually(t, "the cache shows the status", func() bool {
		o, ok := svcs.Get("default", "a")
		return ok && len(o.Status.LoadBalancer.Ingress) == 1
	})
	for range 3 {
		if err := c.reconcile(ctx, svcs.List); err != nil {
			t.Fatal(err)
		}
	}
	if r := revision(t, s); r != before {
		t.Fatalf("idle passes wrote: revision %d -> %d", before, r)
	}
	if got := claimsOf(t, s); len(got) != 2 || got["10.7.0.10"] != "default/a" || got["10.7.0.12"] != "default/b" {
		t.Fatalf("claims %v", got)
	}
}
