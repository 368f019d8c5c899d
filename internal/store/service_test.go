package store_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/serviceipam"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var svcKind, _ = api.KindOf(&corev1.Service{})

func svc(name string, typ corev1.ServiceType, ports ...int32) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec:       corev1.ServiceSpec{Type: typ, Selector: map[string]string{"app": name}},
	}
	for i, p := range ports {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("p%d", i), Port: p, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(p)})
	}
	return s
}

func serviceStore(t *testing.T, cidr, ports string) *store.Store {
	t.Helper()
	s, _ := testutil.Store(t)
	if _, err := s.EnsureClusterConfig(context.Background(), api.ClusterConfig{ServiceCIDR: cidr, NodePortRange: ports}); err != nil {
		t.Fatal(err)
	}
	return s
}

// claim returns who holds a claim key ("" if nobody).
func claim(t *testing.T, s *store.Store, key string) string {
	t.Helper()
	resp, err := s.Client().Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

func claimCount(t *testing.T, s *store.Store, prefix string) int64 {
	t.Helper()
	resp, err := s.Client().Get(context.Background(), prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

func wantInvalid(t *testing.T, err error, field, msg string) {
	t.Helper()
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), field) || !strings.Contains(err.Error(), msg) {
		t.Fatalf("want Invalid naming %s with %q, got %v", field, msg, err)
	}
}

func TestClusterIPAllocation(t *testing.T) {
	s := serviceStore(t, "10.96.0.0/12", "")
	ctx := context.Background()
	a := svc("a", "", 80)
	if err := s.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	ip, err := netip.ParseAddr(a.Spec.ClusterIP)
	if err != nil || !netip.MustParsePrefix("10.96.0.0/12").Contains(ip) || ip.String() == "10.96.0.10" {
		t.Fatalf("allocated clusterIP %q", a.Spec.ClusterIP)
	}
	if len(a.Spec.ClusterIPs) != 1 || a.Spec.ClusterIPs[0] != a.Spec.ClusterIP || len(a.Spec.IPFamilies) != 1 || a.Spec.IPFamilies[0] != corev1.IPv4Protocol {
		t.Fatalf("clusterIPs %v ipFamilies %v", a.Spec.ClusterIPs, a.Spec.IPFamilies)
	}
	if got := claim(t, s, serviceipam.IPKey(ip)); got != "default/a" {
		t.Fatalf("claim of %s held by %q", ip, got)
	}
	stored, _ := s.Get(ctx, svcKind, "default", "a")
	if stored.(*corev1.Service).Spec.ClusterIP != a.Spec.ClusterIP {
		t.Fatalf("stored clusterIP %q, returned %q", stored.(*corev1.Service).Spec.ClusterIP, a.Spec.ClusterIP)
	}

	// Requested: honoured; taken: refused, nothing stored.
	b := svc("b", "", 80)
	b.Spec.ClusterIP = "10.96.0.10"
	if err := s.Create(ctx, b); err != nil {
		t.Fatalf("the DNS address on request: %v", err)
	}
	c := svc("c", "", 80)
	c.Spec.ClusterIP = a.Spec.ClusterIP
	wantInvalid(t, s.Create(ctx, c), "spec.clusterIPs[0]", "provided IP is already allocated")
	c.Spec.ClusterIP, c.Spec.ClusterIPs = "10.200.0.1", nil
	wantInvalid(t, s.Create(ctx, c), "spec.clusterIPs[0]", "provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12")
	if _, err := s.Get(ctx, svcKind, "default", "c"); !apierrors.IsNotFound(err) {
		t.Fatalf("refused service stored: %v", err)
	}
	// Re-creating an existing name is AlreadyExists, not an IP error.
	again := svc("b", "", 80)
	again.Spec.ClusterIP = "10.96.0.10"
	if err := s.Create(ctx, again); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create existing: %v", err)
	}

	// Headless and ExternalName get none.
	h := svc("h", "", 80)
	h.Spec.ClusterIP = corev1.ClusterIPNone
	en := svc("en", corev1.ServiceTypeExternalName)
	en.Spec.ExternalName, en.Spec.Selector = "example.org", nil
	for _, x := range []*corev1.Service{h, en} {
		if err := s.Create(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	if h.Spec.ClusterIP != "None" || en.Spec.ClusterIP != "" {
		t.Fatalf("headless %q externalName %q", h.Spec.ClusterIP, en.Spec.ClusterIP)
	}
	if n := claimCount(t, s, serviceipam.IPPrefix); n != 2 {
		t.Fatalf("%d IP claims, want 2", n)
	}

	// Apply of the manifest without clusterIP keeps it: unchanged.
	m := svc("a", "", 80)
	if r, err := s.Apply(ctx, m); err != nil || r != store.Unchanged {
		t.Fatalf("re-apply: %v %v", r, err)
	}
	// Delete frees it, and then another Service may ask for it.
	if _, err := s.Delete(ctx, svcKind, "default", "a", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := claim(t, s, serviceipam.IPKey(ip)); got != "" {
		t.Fatalf("claim survived delete: %q", got)
	}
	c.Spec.ClusterIP, c.Spec.ClusterIPs = ip.String(), nil
	if err := s.Create(ctx, c); err != nil {
		t.Fatalf("freed IP on request: %v", err)
	}
}

// TestClusterIPRangeFull: a /28 has 13 dynamic addresses (16 minus
// network, broadcast and the DNS address); the 14th auto-allocation fails.
func TestClusterIPRangeFull(t *testing.T) {
	s := serviceStore(t, "10.100.0.0/28", "")
	ctx := context.Background()
	seen := map[string]bool{}
	for i := range 13 {
		x := svc(fmt.Sprintf("s%d", i), "", 80)
		if err := s.Create(ctx, x); err != nil {
			t.Fatalf("service %d: %v", i, err)
		}
		if seen[x.Spec.ClusterIP] || x.Spec.ClusterIP == "10.100.0.10" || x.Spec.ClusterIP == "10.100.0.0" || x.Spec.ClusterIP == "10.100.0.15" {
			t.Fatalf("service %d got %s", i, x.Spec.ClusterIP)
		}
		seen[x.Spec.ClusterIP] = true
	}
	err := s.Create(ctx, svc("full", "", 80))
	if !apierrors.IsInternalError(err) || !strings.Contains(err.Error(), "range is full") {
		t.Fatalf("want range is full, got %v", err)
	}
	dns := svc("dns", "", 53)
	dns.Spec.ClusterIP = "10.100.0.10"
	if err := s.Create(ctx, dns); err != nil {
		t.Fatal(err)
	}
}

// TestClusterIPConcurrent: parallel creates never share an address, in a
// large range and in a small one that runs full.
func TestClusterIPConcurrent(t *testing.T) {
	for _, tc := range []struct {
		cidr     string
		n, fit   int
		nodePort bool
	}{
		{"10.96.0.0/12", 100, 100, true},
		{"10.100.0.0/27", 40, 29, false},
	} {
		t.Run(tc.cidr, func(t *testing.T) {
			s := serviceStore(t, tc.cidr, "")
			ctx := context.Background()
			var mu sync.Mutex
			ips, ports := map[string]string{}, map[int32]string{}
			var wg sync.WaitGroup
			var ok, full int
			for i := range tc.n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					typ := corev1.ServiceType("")
					if tc.nodePort {
						typ = corev1.ServiceTypeNodePort
					}
					x := svc(fmt.Sprintf("s%d", i), typ, 80)
					err := s.Create(ctx, x)
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						if apierrors.IsInternalError(err) && strings.Contains(err.Error(), "range is full") {
							full++
							return
						}
						t.Errorf("create %s: %v", x.Name, err)
						return
					}
					ok++
					if other, dup := ips[x.Spec.ClusterIP]; dup {
						t.Errorf("%s and %s share %s", x.Name, other, x.Spec.ClusterIP)
					}
					ips[x.Spec.ClusterIP] = x.Name
					if tc.nodePort {
						np := x.Spec.Ports[0].NodePort
						if other, dup := ports[np]; dup {
							t.Errorf("%s and %s share nodePort %d", x.Name, other, np)
						}
						ports[np] = x.Name
					}
				}()
			}
			wg.Wait()
			if ok != tc.fit || ok+full != tc.n {
				t.Fatalf("%d created, %d refused as full; want %d created", ok, full, tc.fit)
			}
			if n := claimCount(t, s, serviceipam.IPPrefix); n != int64(tc.fit) {
				t.Fatalf("%d IP claims for %d services", n, tc.fit)
			}
		})
	}
}

func TestNodePortAllocation(t *testing.T) {
	s := serviceStore(t, "", "30000-30009")
	ctx := context.Background()
	a := svc("a", corev1.ServiceTypeNodePort, 80, 443)
	if err := s.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	p0, p1 := a.Spec.Ports[0].NodePort, a.Spec.Ports[1].NodePort
	if p0 < 30000 || p0 > 30009 || p1 < 30000 || p1 > 30009 || p0 == p1 {
		t.Fatalf("nodePorts %d %d", p0, p1)
	}
	for _, p := range []int32{p0, p1} {
		if got := claim(t, s, serviceipam.NodePortKey(p)); got != "default/a" {
			t.Fatalf("nodePort %d held by %q", p, got)
		}
	}
	// Requested and taken, requested and out of range: refused.
	b := svc("b", corev1.ServiceTypeNodePort, 80)
	b.Spec.Ports[0].NodePort = p0
	wantInvalid(t, s.Create(ctx, b), "spec.ports[0].nodePort", "provided port is already allocated")
	b.Spec.Ports[0].NodePort = 31000
	wantInvalid(t, s.Create(ctx, b), "spec.ports[0].nodePort", "provided port is not in the valid range. The range of valid ports is 30000-30009")
	if n := claimCount(t, s, serviceipam.IPPrefix); n != 1 {
		t.Fatalf("refused services left %d IP claims", n)
	}
	// One number for TCP and UDP shares a nodePort.
	dns := svc("dns", corev1.ServiceTypeNodePort, 53, 53)
	dns.Spec.Ports[1].Protocol = corev1.ProtocolUDP
	if err := s.Create(ctx, dns); err != nil {
		t.Fatal(err)
	}
	if dns.Spec.Ports[0].NodePort == 0 || dns.Spec.Ports[0].NodePort != dns.Spec.Ports[1].NodePort {
		t.Fatalf("TCP and UDP 53 got %d and %d", dns.Spec.Ports[0].NodePort, dns.Spec.Ports[1].NodePort)
	}
	// LoadBalancer with Local gets a health check port too.
	lb := svc("lb", corev1.ServiceTypeLoadBalancer, 80)
	lb.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	if err := s.Create(ctx, lb); err != nil {
		t.Fatal(err)
	}
	if lb.Spec.Ports[0].NodePort == 0 || lb.Spec.HealthCheckNodePort == 0 || lb.Spec.HealthCheckNodePort == lb.Spec.Ports[0].NodePort {
		t.Fatalf("lb nodePort %d healthCheckNodePort %d", lb.Spec.Ports[0].NodePort, lb.Spec.HealthCheckNodePort)
	}
	if n := claimCount(t, s, serviceipam.NodePortPrefix); n != 5 {
		t.Fatalf("%d nodePort claims, want 5", n)
	}

	// Type change NodePort -> ClusterIP frees the ports in the update.
	o, _ := s.Get(ctx, svcKind, "default", "a")
	cur := o.(*corev1.Service)
	ip := cur.Spec.ClusterIP
	cur.Spec.Type = corev1.ServiceTypeClusterIP
	if err := s.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	if cur.Spec.Ports[0].NodePort != 0 || claim(t, s, serviceipam.NodePortKey(p0)) != "" || claim(t, s, serviceipam.NodePortKey(p1)) != "" {
		t.Fatalf("nodePorts kept after type change: %v", cur.Spec.Ports)
	}
	if cur.Spec.ClusterIP != ip {
		t.Fatalf("clusterIP changed %s -> %s", ip, cur.Spec.ClusterIP)
	}
	// ... and back: allocated in the update, a requested one honoured.
	cur.Spec.Type = corev1.ServiceTypeNodePort
	cur.Spec.Ports[1].NodePort = p1
	if err := s.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	if cur.Spec.Ports[0].NodePort == 0 || cur.Spec.Ports[1].NodePort != p1 || claim(t, s, serviceipam.NodePortKey(cur.Spec.Ports[0].NodePort)) != "default/a" {
		t.Fatalf("nodePorts after type change back: %v", cur.Spec.Ports)
	}
	// An update asking for a taken port is refused and changes nothing.
	cur.Spec.Ports[0].NodePort = lb.Spec.HealthCheckNodePort
	wantInvalid(t, s.Update(ctx, cur), "spec.ports[0].nodePort", "provided port is already allocated")
	// ExternalName frees the clusterIP.
	o, _ = s.Get(ctx, svcKind, "default", "a")
	cur = o.(*corev1.Service)
	cur.Spec.Type, cur.Spec.ExternalName, cur.Spec.Selector = corev1.ServiceTypeExternalName, "example.org", nil
	if err := s.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	if cur.Spec.ClusterIP != "" || claim(t, s, serviceipam.IPKey(netip.MustParseAddr(ip))) != "" {
		t.Fatalf("clusterIP kept for ExternalName: %q", cur.Spec.ClusterIP)
	}
	// Deletes free the rest (a, now ExternalName, holds none).
	for _, n := range []string{"dns", "lb"} {
		if _, err := s.Delete(ctx, svcKind, "default", n, store.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if n := claimCount(t, s, serviceipam.NodePortPrefix); n != 0 {
		t.Fatalf("%d nodePort claims left after deletes", n)
	}
}

// TestGeneration: 1 on create, +1 per spec change, unchanged by status.
func TestGeneration(t *testing.T) {
	s := serviceStore(t, "", "")
	ctx := context.Background()
	a := svc("a", "", 80)
	if err := s.Create(ctx, a); err != nil {
		t.Fatal(err)
	}
	if a.Generation != 1 {
		t.Fatalf("generation %d after create", a.Generation)
	}
	a.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}
	if err := s.Update(ctx, a); err != nil || a.Generation != 1 {
		t.Fatalf("status write: generation %d, %v", a.Generation, err)
	}
	a.Labels = map[string]string{"x": "y"}
	if err := s.Update(ctx, a); err != nil || a.Generation != 1 {
		t.Fatalf("label write: generation %d, %v", a.Generation, err)
	}
	a.Spec.Ports[0].Port = 81
	if err := s.Update(ctx, a); err != nil || a.Generation != 2 {
		t.Fatalf("spec write: generation %d, %v", a.Generation, err)
	}
	a.Generation = 7 // clients cannot set it
	a.Spec.Ports[0].Port = 82
	if err := s.Update(ctx, a); err != nil || a.Generation != 3 {
		t.Fatalf("spec write: generation %d, %v", a.Generation, err)
	}
}

// TestNamespaceTerminating: deleting a namespace marks it Terminating and
// refuses new content; RemoveNamespace deletes it once empty.
func TestNamespaceTerminating(t *testing.T) {
	s, _ := testutil.Store(t)
	ctx := context.Background()
	nsk, _ := api.KindOf(&corev1.Namespace{})
	if err := s.EnsureNamespaces(ctx, "team"); err != nil {
		t.Fatal(err)
	}
	p := pod("web")
	p.Namespace = "team"
	if err := s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	gone, err := s.Delete(ctx, nsk, "", "team", store.DeleteOptions{})
	if err != nil || gone {
		t.Fatalf("delete namespace: gone=%v %v", gone, err)
	}
	o, _ := s.Get(ctx, nsk, "", "team")
	if ns := o.(*corev1.Namespace); ns.Status.Phase != corev1.NamespaceTerminating || ns.DeletionTimestamp == nil {
		t.Fatalf("namespace %+v", ns.Status)
	}
	q := pod("new")
	q.Namespace = "team"
	if err := s.Create(ctx, q); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "being terminated") {
		t.Fatalf("create in terminating namespace: %v", err)
	}
	if err := s.RemoveNamespace(ctx, "team"); !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "1 pods") {
		t.Fatalf("remove non-empty namespace: %v", err)
	}
	if _, err := s.Delete(ctx, podKind, "team", "web", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveNamespace(ctx, "team"); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureNamespaces(ctx, "team"); err != nil {
		t.Fatalf("recreate: %v", err)
	}
	if err := s.Create(ctx, q); err != nil {
		t.Fatalf("create in recreated namespace: %v", err)
	}
}

// TestServiceRangesFixed: a running cluster's service ranges cannot change;
// a bad range is refused at server start.
func TestServiceRangesFixed(t *testing.T) {
	s := serviceStore(t, "10.96.0.0/16", "30000-30100")
	ctx := context.Background()
	if _, err := s.EnsureClusterConfig(ctx, api.ClusterConfig{ServiceCIDR: "10.97.0.0/16", NodePortRange: "30000-30100"}); err == nil || !strings.Contains(err.Error(), "serviceCIDR is 10.96.0.0/16 in the store") {
		t.Fatalf("service CIDR change: %v", err)
	}
	if _, err := s.EnsureClusterConfig(ctx, api.ClusterConfig{ServiceCIDR: "10.96.0.0/16", NodePortRange: "30000-30200"}); err == nil || !strings.Contains(err.Error(), "nodePortRange is 30000-30100 in the store") {
		t.Fatalf("nodePort range change: %v", err)
	}
	if _, err := s.EnsureClusterConfig(ctx, api.ClusterConfig{ServiceCIDR: "10.96.0.0/16", NodePortRange: "30100-30000"}); err == nil || !strings.Contains(err.Error(), "nodePortRange") {
		t.Fatalf("bad nodePort range: %v", err)
	}
}

// TestApplyKeepsStatus: re-applying a manifest keeps what controllers
// wrote: a Service's status.loadBalancer, a Deployment's and a
// ReplicaSet's status and revision annotation.
func TestApplyKeepsStatus(t *testing.T) {
	s := serviceStore(t, "", "")
	ctx := context.Background()
	lb := svc("lb", corev1.ServiceTypeLoadBalancer, 80)
	if r, err := s.Apply(ctx, lb.DeepCopy()); err != nil || r != store.Created {
		t.Fatalf("apply: %v %v", r, err)
	}
	if _, err := s.Mutate(ctx, svcKind, "default", "lb", func(o api.Object) error {
		o.(*corev1.Service).Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.10"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Apply(ctx, lb.DeepCopy()); err != nil || r != store.Unchanged {
		t.Fatalf("re-apply: %v %v", r, err)
	}
	changed := lb.DeepCopy()
	changed.Spec.Ports[0].Port = 81
	if r, err := s.Apply(ctx, changed); err != nil || r != store.Configured {
		t.Fatalf("apply a change: %v %v", r, err)
	}
	o, err := s.Get(ctx, svcKind, "default", "lb")
	if err != nil {
		t.Fatal(err)
	}
	if in := o.(*corev1.Service).Status.LoadBalancer.Ingress; len(in) != 1 || in[0].IP != "192.0.2.10" {
		t.Fatalf("status.loadBalancer after apply: %v", in)
	}

	one := int32(1)
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Command: []string{"sleep", "1"}}}}}}}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default"},
		Spec: appsv1.ReplicaSetSpec{Replicas: &one, Selector: d.Spec.Selector, Template: d.Spec.Template}}
	for _, obj := range []api.Object{d, rs} {
		if _, err := s.Apply(ctx, obj.DeepCopyObject().(api.Object)); err != nil {
			t.Fatal(err)
		}
		k, _ := api.KindOf(obj)
		if _, err := s.Mutate(ctx, k, "default", obj.GetName(), func(o api.Object) error {
			o.SetAnnotations(map[string]string{api.AnnotationRevision: "3"})
			switch o := o.(type) {
			case *appsv1.Deployment:
				o.Status.Replicas, o.Status.ObservedGeneration = 1, 1
			case *appsv1.ReplicaSet:
				o.Status.Replicas, o.Status.ObservedGeneration = 1, 1
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if r, err := s.Apply(ctx, obj.DeepCopyObject().(api.Object)); err != nil || r != store.Unchanged {
			t.Fatalf("re-apply %s: %v %v", obj.GetName(), r, err)
		}
		got, err := s.Get(ctx, k, "default", obj.GetName())
		if err != nil {
			t.Fatal(err)
		}
		var replicas int32
		switch o := got.(type) {
		case *appsv1.Deployment:
			replicas = o.Status.Replicas
		case *appsv1.ReplicaSet:
			replicas = o.Status.Replicas
		}
		if replicas != 1 || got.GetAnnotations()[api.AnnotationRevision] != "3" {
			t.Fatalf("%s after apply: status.replicas %d, annotations %v", obj.GetName(), replicas, got.GetAnnotations())
		}
	}
}
