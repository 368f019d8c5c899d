package controller

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type podOpt func(*corev1.Pod)

func mkPod(name string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Command: []string{"sleep", "1"},
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.10",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func withIP(ip string) podOpt { return func(p *corev1.Pod) { p.Status.PodIP = ip } }
func notReady(p *corev1.Pod) {
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
}
func terminatingPod(p *corev1.Pod) { now := metav1.Now(); p.DeletionTimestamp = &now }
func onNode(n string) podOpt       { return func(p *corev1.Pod) { p.Spec.NodeName = n } }
func httpPort(n int32) podOpt {
	return func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = n }
}

func webService(opts ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "svc-uid"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}}}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// epSummary renders groups as "ports: pod(r s t node zone) ..." lines.
func epSummary(gs []group) string {
	var lines []string
	for _, g := range gs {
		var eps []string
		for _, e := range g.eps {
			b := func(p *bool) string {
				if *p {
					return "1"
				}
				return "0"
			}
			s := fmt.Sprintf("%s=%s(%s%s%s)", e.TargetRef.Name, e.Addresses[0], b(e.Conditions.Ready), b(e.Conditions.Serving), b(e.Conditions.Terminating))
			if e.NodeName != nil {
				s += "@" + *e.NodeName
			}
			if e.Zone != nil {
				s += "/" + *e.Zone
			}
			if e.Hostname != nil {
				s += "#" + *e.Hostname
			}
			if h := e.Hints; h != nil {
				for _, z := range h.ForZones {
					s += " hint:" + z.Name
				}
				for _, n := range h.ForNodes {
					s += " hint:" + n.Name
				}
			}
			eps = append(eps, s)
		}
		lines = append(lines, g.key+" "+strings.Join(eps, " "))
	}
	return strings.Join(lines, "\n")
}

func TestDesiredEndpoints(t *testing.T) {
	zones := map[string]string{"n2": "zone-b"}
	cases := []struct {
		name string
		svc  *corev1.Service
		pods []*corev1.Pod
		want string
	}{
		{"ready pod", webService(), []*corev1.Pod{mkPod("a")},
			"http/TCP/8080, a=10.244.0.10(110)@n1"},
		{"not ready, terminating, zone", webService(), []*corev1.Pod{
			mkPod("a", notReady), mkPod("b", terminatingPod, withIP("10.244.0.11")), mkPod("c", notReady, terminatingPod, withIP("10.244.0.12"), onNode("n2"))},
			"http/TCP/8080, a=10.244.0.10(000)@n1 b=10.244.0.11(011)@n1 c=10.244.0.12(001)@n2/zone-b"},
		{"publishNotReadyAddresses", webService(func(s *corev1.Service) { s.Spec.PublishNotReadyAddresses = true }),
			[]*corev1.Pod{mkPod("a", notReady), mkPod("b", terminatingPod, withIP("10.244.0.11"))},
			"http/TCP/8080, a=10.244.0.10(110)@n1 b=10.244.0.11(111)@n1"},
		{"excluded: failed, no IP, other namespace, other labels, IPv6 only", webService(), []*corev1.Pod{
			mkPod("failed", func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }),
			mkPod("noip", withIP("")),
			mkPod("other", func(p *corev1.Pod) { p.Namespace = "other" }),
			mkPod("db", func(p *corev1.Pod) { p.Labels = map[string]string{"app": "db"} }),
			mkPod("v6", withIP("fd00::1")),
		}, ""},
		{"named port resolved per pod: one group per resolution", webService(), []*corev1.Pod{
			mkPod("a"), mkPod("b", httpPort(9090), withIP("10.244.0.11")), mkPod("c", withIP("10.244.0.12"))},
			"http/TCP/8080, a=10.244.0.10(110)@n1 c=10.244.0.12(110)@n1\nhttp/TCP/9090, b=10.244.0.11(110)@n1"},
		{"named port missing: the pod without the port", webService(func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "metrics", Port: 9100, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("metrics")})
		}), []*corev1.Pod{mkPod("a"), mkPod("b", withIP("10.244.0.11"), func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: "metrics", ContainerPort: 9100})
		})},
			"http/TCP/8080, a=10.244.0.10(110)@n1\nhttp/TCP/8080,metrics/TCP/9100, b=10.244.0.11(110)@n1"},
		{"named port of another protocol does not resolve", webService(func(s *corev1.Service) { s.Spec.Ports[0].Protocol = corev1.ProtocolUDP }),
			[]*corev1.Pod{mkPod("a")}, " a=10.244.0.10(110)@n1"},
		{"trafficDistribution: zone hints where the node has a zone", webService(func(s *corev1.Service) {
			s.Spec.TrafficDistribution = ptr(corev1.ServiceTrafficDistributionPreferSameZone)
		}),
			[]*corev1.Pod{mkPod("a"), mkPod("b", onNode("n2"), withIP("10.244.0.11"))},
			"http/TCP/8080, a=10.244.0.10(110)@n1 b=10.244.0.11(110)@n2/zone-b hint:zone-b"},
		{"trafficDistribution PreferSameNode", webService(func(s *corev1.Service) {
			s.Spec.TrafficDistribution = ptr(corev1.ServiceTrafficDistributionPreferSameNode)
		}),
			[]*corev1.Pod{mkPod("b", onNode("n2"))},
			"http/TCP/8080, b=10.244.0.10(110)@n2/zone-b hint:zone-b hint:n2"},
		{"numeric target port and hostname", webService(func(s *corev1.Service) {
			s.Spec.Ports[0].TargetPort = intstr.FromInt32(7000)
		}), []*corev1.Pod{mkPod("a", func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = "a0", "web" })},
			"http/TCP/7000, a=10.244.0.10(110)@n1#a0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := epSummary(DesiredEndpoints(tc.svc, tc.pods, zones, corev1.IPv4Protocol))
			if got != tc.want {
				t.Fatalf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func manyPods(n int, port int32) []*corev1.Pod {
	var out []*corev1.Pod
	for i := range n {
		out = append(out, mkPod(fmt.Sprintf("p%03d", i), withIP(fmt.Sprintf("10.244.%d.%d", i/200, i%200+2)), httpPort(port)))
	}
	return out
}

// stored turns plan's writes into stored slices (names, versions).
func stored(t *testing.T, have []*discoveryv1.EndpointSlice, writes, deletes []*discoveryv1.EndpointSlice) []*discoveryv1.EndpointSlice {
	t.Helper()
	byName := map[string]*discoveryv1.EndpointSlice{}
	for _, sl := range have {
		byName[sl.Name] = sl
	}
	for _, sl := range deletes {
		delete(byName, sl.Name)
	}
	for i, sl := range writes {
		if sl.Name == "" {
			sl.Name = fmt.Sprintf("web-new%d-%d", len(byName), i)
			sl.ResourceVersion = "1"
		}
		byName[sl.Name] = sl
	}
	var out []*discoveryv1.EndpointSlice
	for _, sl := range byName {
		out = append(out, sl)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func countEPs(slices []*discoveryv1.EndpointSlice) (total, max int) {
	for _, sl := range slices {
		total += len(sl.Endpoints)
		if len(sl.Endpoints) > max {
			max = len(sl.Endpoints)
		}
	}
	return
}

// TestPlan: 250 endpoints in 3 slices of at most 100; one more pod touches
// one slice; nothing changed writes nothing; a port change rewrites the
// slices in place; no endpoints leaves one placeholder.
func TestPlan(t *testing.T) {
	svc := webService()
	plan1 := func(pods []*corev1.Pod, have []*discoveryv1.EndpointSlice) ([]*discoveryv1.EndpointSlice, []*discoveryv1.EndpointSlice) {
		return plan(svc, discoveryv1.AddressTypeIPv4, DesiredEndpoints(svc, pods, nil, corev1.IPv4Protocol), have)
	}
	pods := manyPods(250, 8080)
	w, d := plan1(pods, nil)
	if len(w) != 3 || len(d) != 0 {
		t.Fatalf("250 endpoints: %d writes %d deletes", len(w), len(d))
	}
	have := stored(t, nil, w, d)
	if total, max := countEPs(have); total != 250 || max > MaxEndpointsPerSlice {
		t.Fatalf("total %d, max %d per slice", total, max)
	}
	for _, sl := range have {
		if sl.Labels[api.LabelServiceName] != "web" || sl.Labels[api.LabelManagedBy] != ManagedBy || !ownedBy(sl.OwnerReferences, svc.UID) {
			t.Fatalf("slice metadata %+v", sl.ObjectMeta)
		}
	}
	if w, d := plan1(pods, have); len(w)+len(d) != 0 {
		t.Fatalf("unchanged: %d writes %d deletes", len(w), len(d))
	}
	pods = append(pods, mkPod("p999", withIP("10.244.9.9")))
	w, d = plan1(pods, have)
	if len(w) != 1 || len(d) != 0 || w[0].Name == "" {
		t.Fatalf("one more pod: %d writes (%v) %d deletes", len(w), w, len(d))
	}
	have = stored(t, have, w, d)
	// A port change: every pod now serves 9090; the same slices are rewritten.
	names := fmt.Sprint(sliceNames(have))
	w, d = plan1(manyPods(250, 9090), have)
	have = stored(t, have, w, d)
	if got := fmt.Sprint(sliceNames(have)); got != names || len(d) != 0 {
		t.Fatalf("port change: slices %s, had %s; %d deletes", got, names, len(d))
	}
	if total, _ := countEPs(have); total != 250 || *have[0].Ports[0].Port != 9090 {
		t.Fatalf("port change: %d endpoints, port %d", total, *have[0].Ports[0].Port)
	}
	w, d = plan1(nil, have)
	have = stored(t, have, w, d)
	if len(have) != 1 || len(have[0].Endpoints) != 0 || len(have[0].Ports) != 0 {
		t.Fatalf("no endpoints: want one empty placeholder, have %d slices", len(have))
	}
	if w, d := plan1(nil, have); len(w)+len(d) != 0 {
		t.Fatalf("placeholder unchanged: %d writes %d deletes", len(w), len(d))
	}
}

func sliceNames(slices []*discoveryv1.EndpointSlice) []string {
	var out []string
	for _, sl := range slices {
		out = append(out, sl.Name)
	}
	return out
}

func slicesOf(t *testing.T, s *store.Store, ns, svc string) []*discoveryv1.EndpointSlice {
	t.Helper()
	objs, _, err := s.List(context.Background(), sliceKind, ns)
	if err != nil {
		t.Fatal(err)
	}
	var out []*discoveryv1.EndpointSlice
	for _, o := range objs {
		if sl := o.(*discoveryv1.EndpointSlice); sl.Labels[api.LabelServiceName] == svc {
			out = append(out, sl)
		}
	}
	return out
}

// readyAddrs lists the ready endpoint addresses of a Service's slices.
func readyAddrs(t *testing.T, s *store.Store, ns, svc string) []string {
	var out []string
	for _, sl := range slicesOf(t, s, ns, svc) {
		for _, ep := range sl.Endpoints {
			if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
				out = append(out, ep.Addresses...)
			}
		}
	}
	sort.Strings(out)
	return out
}

func createPod(t *testing.T, s *store.Store, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	p = p.DeepCopy()
	st := p.Status
	p.UID, p.Status = "", corev1.PodStatus{}
	if err := s.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	o, err := s.Mutate(context.Background(), podKind, p.Namespace, p.Name, func(o api.Object) error {
		o.(*corev1.Pod).Status = st
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return o.(*corev1.Pod)
}

// TestEndpointSliceController: slices from the store; a second pass writes
// nothing; readiness changes arrive within a second through the watch; a
// hand-written slice of a selectorless Service is left alone; deleting
// the Service deletes its slices.
func TestEndpointSliceController(t *testing.T) {
	s := clusterStore(t, "10.244.0.0/16", time.Hour)
	ctx := context.Background()
	c := NewEndpointSlices(s, testutil.Logger(t), time.Hour)
	svc := webService()
	svc.UID = ""
	if err := s.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	createPod(t, s, mkPod("a"))
	createPod(t, s, mkPod("b", withIP("10.244.0.11"), notReady))
	// A selectorless Service with a hand-written slice.
	ext := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "ext", Namespace: "default"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 5432}}}}
	if err := s.Create(ctx, ext); err != nil {
		t.Fatal(err)
	}
	hand := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "ext-1", Namespace: "default", Labels: map[string]string{api.LabelServiceName: "ext"}},
		AddressType: discoveryv1.AddressTypeIPv4, Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"192.0.2.5"}}}}
	if err := s.Create(ctx, hand); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := c.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sl := slicesOf(t, s, "default", "web")
	if len(sl) != 1 || !strings.HasPrefix(sl[0].Name, "web-") || len(sl[0].Name) != len("web-")+5 || len(sl[0].Endpoints) != 2 {
		t.Fatalf("slices %+v", sl)
	}
	if got := fmt.Sprint(readyAddrs(t, s, "default", "web")); got != "[10.244.0.10]" {
		t.Fatalf("ready %s", got)
	}
	before := revision(t, s)
	if err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if after := revision(t, s); after != before {
		t.Fatalf("an unchanged world was written: revision %d -> %d", before, after)
	}
	if got := slicesOf(t, s, "default", "ext"); len(got) != 1 || got[0].ResourceVersion != hand.ResourceVersion {
		t.Fatalf("hand-written slice touched: %+v", got)
	}

	// Through the running loop (hour-long resync: only the watch can do it).
	startManager(t, s, "m", []Loop{c})
	if _, err := s.Mutate(ctx, podKind, "default", "b", func(o api.Object) error {
		o.(*corev1.Pod).Status.Conditions[0].Status = corev1.ConditionTrue
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, "b ready in its slice", func() bool {
		return fmt.Sprint(readyAddrs(t, s, "default", "web")) == "[10.244.0.10 10.244.0.11]"
	})
	if d := time.Since(start); d > time.Second {
		t.Fatalf("readiness took %s to reach the slice", d)
	}
	before = revision(t, s)
	time.Sleep(300 * time.Millisecond) // let any (wrong) churn happen
	if after := revision(t, s); after != before {
		t.Fatalf("the running controller keeps writing: revision %d -> %d", before, after)
	}
	if _, err := s.Delete(ctx, serviceKind, "default", "web", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web's slices gone", func() bool { return len(slicesOf(t, s, "default", "web")) == 0 })
	if _, err := s.Get(ctx, sliceKind, "default", "ext-1"); err != nil {
		t.Fatalf("hand-written slice: %v", err)
	}
	if _, err := s.Delete(ctx, serviceKind, "default", "ext", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Not ours: even an orphaned hand-written slice stays.
	time.Sleep(300 * time.Millisecond)
	if _, err := s.Get(ctx, sliceKind, "default", "ext-1"); apierrors.IsNotFound(err) {
		t.Fatal("hand-written slice deleted")
	}
}

// TestEndpointSliceStaleCache: passes over a cache that has not caught up
// with the controller's own writes neither create a slice twice nor act
// on a slice they deleted.
func TestEndpointSliceStaleCache(t *testing.T) {
	s := clusterStore(t, "10.244.0.0/16", time.Hour)
	ctx := context.Background()
	c := NewEndpointSlices(s, testutil.Logger(t), time.Hour)
	svc := webService()
	svc.UID = ""
	if err := s.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	p := createPod(t, s, mkPod("a"))
	stale := world{services: []*corev1.Service{svc}, pods: []*corev1.Pod{p}}
	for range 3 {
		if err := c.reconcile(ctx, stale); err != nil {
			t.Fatal(err)
		}
	}
	sl := slicesOf(t, s, "default", "web")
	if len(sl) != 1 {
		t.Fatalf("%d slices after passes on a stale cache", len(sl))
	}
	before := revision(t, s)
	if err := c.reconcile(ctx, world{services: []*corev1.Service{svc}, pods: []*corev1.Pod{p}, slices: sl}); err != nil || revision(t, s) != before {
		t.Fatalf("caught-up cache: %v, revision %d -> %d", err, before, revision(t, s))
	}
	if len(c.written) != 0 {
		t.Fatalf("own writes not forgotten once seen: %v", c.written)
	}
	// The Service goes; the cache still has its slice after the delete.
	gone := world{pods: []*corev1.Pod{p}, slices: sl}
	for range 2 {
		if err := c.reconcile(ctx, gone); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(slicesOf(t, s, "default", "web")); n != 0 {
		t.Fatalf("%d slices left", n)
	}
}
