package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ingressNode(name, ip string, ready corev1.ConditionStatus) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}},
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}},
		}}
}

func mkIngress(name, class, host string, paths map[string]string) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	if class != "" {
		ing.Spec.IngressClassName = &class
	}
	r := networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{}}}
	for path, svc := range paths {
		pt := networkingv1.PathTypePrefix
		r.HTTP.Paths = append(r.HTTP.Paths, networkingv1.HTTPIngressPath{Path: path, PathType: &pt,
			Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}}}})
	}
	ing.Spec.Rules = []networkingv1.IngressRule{r}
	return ing
}

func getIngress(t *testing.T, s *store.Store, name string) *networkingv1.Ingress {
	t.Helper()
	o, err := s.Get(context.Background(), ingressKind, "default", name)
	if err != nil {
		t.Fatal(err)
	}
	return o.(*networkingv1.Ingress)
}

func ingressStore(t *testing.T) *store.Store {
	t.Helper()
	s, _ := testutil.Store(t)
	ctx := context.Background()
	if err := s.EnsureNamespaces(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureIngressClass(ctx); err != nil {
		t.Fatal(err)
	}
	for _, o := range []api.Object{
		ingressNode("n1", "192.168.50.3", corev1.ConditionTrue),
		ingressNode("n2", "192.168.50.2", corev1.ConditionTrue),
		ingressNode("n3", "192.168.50.10", corev1.ConditionUnknown),
		&networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}, Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}},
		webService(),
		&discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.10"}}},
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}}},
	} {
		o.SetUID("")
		if err := s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func addrsOf(ing *networkingv1.Ingress) string { return api.IngressAddress(ing) }

func TestIngressStatus(t *testing.T) {
	s := ingressStore(t)
	ctx := context.Background()
	c := NewIngressStatus(s, testutil.Logger(t), time.Second)
	// Served (no class: podnet is the default), with a missing Service.
	if err := s.Create(ctx, mkIngress("web", "", "a.example.com", map[string]string{"/": "web", "/missing": "nosuch"})); err != nil {
		t.Fatal(err)
	}
	// Another controller's, with a status and a stale problems annotation.
	other := mkIngress("other", "nginx", "b.example.com", map[string]string{"/": "nosuch"})
	other.Annotations = map[string]string{api.AnnotationIngressProblems: "stale", "keep": "me"}
	if err := s.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mutate(ctx, ingressKind, "default", "other", func(o api.Object) error {
		o.(*networkingv1.Ingress).Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "203.0.113.7"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	web := getIngress(t, s, "web")
	if got := addrsOf(web); got != "192.168.50.2,192.168.50.3" {
		t.Errorf("web addresses %q, want the Ready nodes' sorted", got)
	}
	if got := web.Annotations[api.AnnotationIngressProblems]; got != "service default/nosuch not found" {
		t.Errorf("web problems %q", got)
	}
	o := getIngress(t, s, "other")
	if got := addrsOf(o); got != "203.0.113.7" {
		t.Errorf("other's status was touched: %q", got)
	}
	if _, ok := o.Annotations[api.AnnotationIngressProblems]; ok || o.Annotations["keep"] != "me" {
		t.Errorf("other's annotations %v: want the stale problems gone, the rest kept", o.Annotations)
	}

	// An idle pass writes nothing.
	rv := web.ResourceVersion
	if err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if web = getIngress(t, s, "web"); web.ResourceVersion != rv {
		t.Fatalf("idle pass rewrote the ingress (%s -> %s)", rv, web.ResourceVersion)
	}

	// The missing Service appears: the annotation goes. n3 turns Ready.
	nosuch := webService()
	nosuch.Name, nosuch.UID = "nosuch", ""
	if err := s.Create(ctx, nosuch); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mutate(ctx, nodeKind, "", "n3", func(o api.Object) error {
		o.(*corev1.Node).Status.Conditions[0].Status = corev1.ConditionTrue
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A newer Ingress for the same host and path loses the conflict (on a
	// creationTimestamp tie, the name decides: web < zz-late).
	if err := s.Create(ctx, mkIngress("zz-late", "podnet", "a.example.com", map[string]string{"/": "nosuch"})); err != nil {
		t.Fatal(err)
	}
	if err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	web = getIngress(t, s, "web")
	if _, ok := web.Annotations[api.AnnotationIngressProblems]; ok {
		t.Errorf("problems left: %q", web.Annotations[api.AnnotationIngressProblems])
	}
	if got := addrsOf(web); got != "192.168.50.2,192.168.50.3,192.168.50.10" {
		t.Errorf("addresses %q", got)
	}
	late := getIngress(t, s, "zz-late")
	if got := late.Annotations[api.AnnotationIngressProblems]; got != "path / of host a.example.com is already served by default/web (older)" {
		t.Errorf("late problems %q", got)
	}
	if addrsOf(late) == "" {
		t.Errorf("a served Ingress that lost a conflict still lists the addresses (it is served)")
	}
}

func TestProblemsValue(t *testing.T) {
	if problemsValue(nil) != "" {
		t.Fatal("no problems")
	}
	if got := problemsValue([]string{"b\nwith  newline", "a"}); got != "a\nb with newline" {
		t.Fatalf("%q", got)
	}
	var many []string
	for i := range 25 {
		many = append(many, fmt.Sprintf("p%02d", i))
	}
	got := strings.Split(problemsValue(many), "\n")
	if len(got) != MaxIngressProblems+1 || got[0] != "p00" || got[MaxIngressProblems] != "... and 5 more" {
		t.Fatalf("%q", got)
	}
	if long := problemsValue([]string{strings.Repeat("x", 2000)}); len(long) != maxProblemLen+3 {
		t.Fatalf("long problem: %d bytes", len(long))
	}
}

// TestIngressStatusLoop: the running loop (watch-fed caches) publishes a
// new Ingress's addresses and follows a node going away.
func TestIngressStatusLoop(t *testing.T) {
	s := ingressStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	c := NewIngressStatus(s, testutil.Logger(t), time.Hour) // only watch events drive it
	go func() { c.Run(ctx); close(done) }()
	if err := s.Create(ctx, mkIngress("web", "", "a.example.com", map[string]string{"/": "web"})); err != nil {
		t.Fatal(err)
	}
	eventually(t, "addresses published", func() bool { return addrsOf(getIngress(t, s, "web")) == "192.168.50.2,192.168.50.3" })
	if _, err := s.Delete(ctx, nodeKind, "", "n1", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "n1's address withdrawn", func() bool { return addrsOf(getIngress(t, s, "web")) == "192.168.50.2" })
	// A Secret change is seen too: a TLS section naming a missing Secret
	// gets a problem, which goes when the Secret exists.
	if _, err := s.Mutate(ctx, ingressKind, "default", "web", func(o api.Object) error {
		o.(*networkingv1.Ingress).Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"a.example.com"}, SecretName: "web-tls"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "missing secret reported", func() bool {
		return strings.Contains(getIngress(t, s, "web").Annotations[api.AnnotationIngressProblems], "web-tls")
	})
}

// TestIngressServiceEndpoints: the ingress Service in front of the nodes'
// proxies gets one EndpointSlice of the Ready nodes (ports http 80, https
// 443, owned by the Service), rewritten only when the nodes change, and
// its load-balancer address is published first on served Ingresses.
func TestIngressServiceEndpoints(t *testing.T) {
	s := ingressStore(t)
	ctx := context.Background()
	if err := s.EnsureNamespaces(ctx, api.IngressNamespace); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureIngressService(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureIngressService(ctx); err != nil {
		t.Fatalf("EnsureIngressService is not idempotent: %v", err)
	}
	if err := s.Create(ctx, mkIngress("web", "", "a.example.com", map[string]string{"/": "web"})); err != nil {
		t.Fatal(err)
	}
	c := NewIngressStatus(s, testutil.Logger(t), time.Second)
	if err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	slice := func() *discoveryv1.EndpointSlice {
		t.Helper()
		o, err := s.Get(ctx, sliceKind, api.IngressNamespace, api.IngressNodesSlice)
		if err != nil {
			t.Fatal(err)
		}
		return o.(*discoveryv1.EndpointSlice)
	}
	sl := slice()
	var got []string
	for _, e := range sl.Endpoints {
		got = append(got, e.Addresses[0]+"@"+*e.NodeName)
	}
	if strings.Join(got, ",") != "192.168.50.2@n2,192.168.50.3@n1" {
		t.Errorf("endpoints %v, want the Ready nodes", got)
	}
	if len(sl.Ports) != 2 || *sl.Ports[0].Name != "http" || *sl.Ports[0].Port != 80 || *sl.Ports[1].Port != 443 {
		t.Errorf("ports %+v", sl.Ports)
	}
	if sl.Labels[api.LabelServiceName] != api.IngressService || len(sl.OwnerReferences) != 1 || sl.OwnerReferences[0].Name != api.IngressService {
		t.Errorf("labels %v owners %v", sl.Labels, sl.OwnerReferences)
	}
	rv := sl.ResourceVersion
	if err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if slice().ResourceVersion != rv {
		t.Errorf("an idle pass rewrote the slice")
	}
	// The Service gets its load-balancer address: published first.
	if _, err := s.Mutate(ctx, serviceKind, api.IngressNamespace, api.IngressService, func(o api.Object) error {
		o.(*corev1.Service).Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.168.50.200"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mutate(ctx, nodeKind, "", "n1", func(o api.Object) error {
		o.(*corev1.Node).Status.Conditions[0].Status = corev1.ConditionUnknown
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := addrsOf(getIngress(t, s, "web")); got != "192.168.50.200,192.168.50.2" {
		t.Errorf("addresses %q, want the LB address then the Ready node", got)
	}
	if sl := slice(); len(sl.Endpoints) != 1 || sl.Endpoints[0].Addresses[0] != "192.168.50.2" {
		t.Errorf("a NotReady node stays in the slice: %+v", sl.Endpoints)
	}
}
