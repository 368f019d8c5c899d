package ingress

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/ingress/route"
	"github.com/podnet/podnet/internal/store"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fakeSource is an informer.Source in memory: every change gets the next
// revision and is kept, so a Watch from a revision replays what it missed
// (as etcd does), and a kind's List can be held back to test the sync gate.
type fakeSource struct {
	mu       sync.Mutex
	rev      int64
	objs     map[string]map[string]api.Object // resource -> ns/name
	history  []fakeEvent
	watchers map[string][]chan store.Event
	gates    map[string]chan struct{} // List waits until closed
}

type fakeEvent struct {
	resource string
	ev       store.Event
}

func newFakeSource() *fakeSource {
	return &fakeSource{objs: map[string]map[string]api.Object{}, watchers: map[string][]chan store.Event{}, gates: map[string]chan struct{}{}}
}

// hold makes List of resource wait until the returned func is called.
func (f *fakeSource) hold(resource string) func() {
	g := make(chan struct{})
	f.mu.Lock()
	f.gates[resource] = g
	f.mu.Unlock()
	return func() { close(g) }
}

func (f *fakeSource) List(ctx context.Context, k *api.Kind, namespace string) ([]api.Object, int64, error) {
	f.mu.Lock()
	g := f.gates[k.Resource]
	f.mu.Unlock()
	if g != nil {
		select {
		case <-g:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Object
	for _, o := range f.objs[k.Resource] {
		out = append(out, o)
	}
	return out, f.rev, nil
}

func (f *fakeSource) Watch(ctx context.Context, k *api.Kind, namespace string, rev int64) <-chan store.Event {
	ch := make(chan store.Event, 4096)
	f.mu.Lock()
	for _, e := range f.history {
		if e.resource == k.Resource && e.ev.Revision > rev {
			ch <- e.ev
		}
	}
	f.watchers[k.Resource] = append(f.watchers[k.Resource], ch)
	f.mu.Unlock()
	go func() {
		<-ctx.Done()
		f.mu.Lock()
		defer f.mu.Unlock()
		ws := f.watchers[k.Resource]
		for i, w := range ws {
			if w == ch {
				f.watchers[k.Resource] = append(ws[:i:i], ws[i+1:]...)
			}
		}
		close(ch)
	}()
	return ch
}

func (f *fakeSource) emit(typ store.EventType, o api.Object) {
	k, err := api.KindOf(o)
	if err != nil {
		panic(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	o.SetResourceVersion(fmt.Sprint(f.rev))
	key := o.GetNamespace() + "/" + o.GetName()
	if f.objs[k.Resource] == nil {
		f.objs[k.Resource] = map[string]api.Object{}
	}
	if typ == store.Deleted {
		delete(f.objs[k.Resource], key)
	} else {
		f.objs[k.Resource][key] = o
	}
	ev := store.Event{Type: typ, Object: o, Revision: f.rev}
	f.history = append(f.history, fakeEvent{k.Resource, ev})
	for _, w := range f.watchers[k.Resource] {
		w <- ev
	}
}

func (f *fakeSource) set(o api.Object)    { f.emit(store.Modified, o) }
func (f *fakeSource) delete(o api.Object) { f.emit(store.Deleted, o) }

// swaps records the tables swapped in.
type swaps struct {
	mu  sync.Mutex
	all []*route.Table
	ch  chan Swap
}

func newSwaps() *swaps { return &swaps{ch: make(chan Swap, 1024)} }

func (s *swaps) Swap(t *route.Table) {
	s.mu.Lock()
	s.all = append(s.all, t)
	s.mu.Unlock()
}

func (s *swaps) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.all)
}

// next waits for the next swap.
func (s *swaps) next(t *testing.T, what string) Swap {
	t.Helper()
	select {
	case sw := <-s.ch:
		return sw
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no swap within 5s", what)
		return Swap{}
	}
}

// waitFor waits for a swap whose table passes ok.
func (s *swaps) waitFor(t *testing.T, what string, ok func(*route.Table) bool) Swap {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case sw := <-s.ch:
			if ok(sw.Table) {
				return sw
			}
		case <-deadline:
			t.Fatalf("%s: no such swap within 5s", what)
		}
	}
}

func class() *networkingv1.IngressClass {
	return &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: route.ClassName, Annotations: map[string]string{networkingv1.AnnotationIsDefaultIngressClass: "true"}},
		Spec:       networkingv1.IngressClassSpec{Controller: route.ControllerName},
	}
}

func service(name string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
}

func slice(svc string, addrs ...string) *discoveryv1.EndpointSlice {
	name, port, tcp, ready := "http", int32(8080), corev1.ProtocolTCP, true
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: svc + "-abc", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &tcp}},
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	return s
}

// ingress routes host/paths to svc:80, Prefix.
func ingress(name, host, svc string, paths ...string) *networkingv1.Ingress {
	pt := networkingv1.PathTypePrefix
	r := networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{}}}
	for _, p := range paths {
		r.HTTP.Paths = append(r.HTTP.Paths, networkingv1.HTTPIngressPath{Path: p, PathType: &pt,
			Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}}}})
	}
	return &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, CreationTimestamp: metav1.Now()},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{r}}}
}

// matches: the table routes host+path to svc with the endpoints eps.
func matches(t *route.Table, host, path, svc string, eps ...string) bool {
	m := t.Match(host, path)
	if m.Route == nil || m.Route.Backend == nil || m.Route.Backend.Service != svc || len(m.Route.Backend.Endpoints) != len(eps) {
		return false
	}
	for i, e := range m.Route.Backend.Endpoints {
		if e.Addr != eps[i] {
			return false
		}
	}
	return true
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuf) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuf) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

type harness struct {
	src  *fakeSource
	sw   *swaps
	log  *lockedBuf
	reg  *prometheus.Registry
	done chan error
}

// start runs the controller over src until the test ends.
func start(t *testing.T, src *fakeSource, interval time.Duration) *harness {
	t.Helper()
	h := &harness{src: src, sw: newSwaps(), log: &lockedBuf{}, reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	cfg := Config{Source: src, Proxy: h.sw, MinInterval: interval, Registry: h.reg, NodeName: "n1", Namespace: "kube-system",
		Logger: slog.New(slog.NewTextHandler(h.log, nil)),
		OnSwap: func(s Swap) { h.sw.ch <- s }}
	go func() { h.done <- Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return after its context ended")
		}
		if t.Failed() {
			t.Logf("controller log:\n%s", h.log.String())
		}
	})
	return h
}

func world(src *fakeSource) {
	src.set(class())
	src.set(service("web"))
	src.set(slice("web", "10.244.1.5", "10.244.2.5"))
	src.set(ingress("web", "a.example", "web", "/"))
}

// TestSyncGate: nothing is swapped in until every kind has been listed;
// the first table has everything.
func TestSyncGate(t *testing.T) {
	src := newFakeSource()
	world(src)
	release := src.hold("endpointslices")
	h := start(t, src, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // four kinds synced, one held
	if n := h.sw.count(); n != 0 {
		t.Fatalf("%d swaps before every cache synced", n)
	}
	release()
	sw := h.sw.next(t, "after the last sync")
	if !matches(sw.Table, "a.example", "/x", "web", "10.244.1.5:8080", "10.244.2.5:8080") {
		t.Errorf("first table lacks the route with its endpoints: %v", sw.Table.Match("a.example", "/x"))
	}
	if !strings.Contains(h.log.String(), "first routing table swapped") {
		t.Errorf("no log of the first swap:\n%s", h.log.String())
	}
}

// TestChangesSwapped: a new path, endpoints, a deletion each reach the
// proxy; the first change after a quiet spell is built at once, however
// long MinInterval is.
func TestChangesSwapped(t *testing.T) {
	src := newFakeSource()
	world(src)
	const interval = 300 * time.Millisecond
	h := start(t, src, interval)
	h.sw.next(t, "first table")
	time.Sleep(interval) // quiet

	t0 := time.Now()
	src.set(ingress("web", "a.example", "web", "/", "/new"))
	sw := h.sw.waitFor(t, "new path", func(tb *route.Table) bool {
		m := tb.Match("a.example", "/new/x")
		return m.Route != nil && m.Route.Path == "/new"
	})
	if d := time.Since(t0); d > interval/2 {
		t.Errorf("the first change after a quiet spell took %v (MinInterval %v): not built at once", d, interval)
	}
	if sw.Changes != 1 || sw.Latency <= 0 || sw.Latency > time.Since(t0) {
		t.Errorf("swap: changes %d latency %v", sw.Changes, sw.Latency)
	}
	// The next change within MinInterval waits for it.
	src.set(slice("web", "10.244.1.5", "10.244.2.5", "10.244.3.5"))
	h.sw.waitFor(t, "three endpoints", func(tb *route.Table) bool {
		return matches(tb, "a.example", "/", "web", "10.244.1.5:8080", "10.244.2.5:8080", "10.244.3.5:8080")
	})
	if d := time.Since(t0); d < interval*9/10 {
		t.Errorf("a second build %v after the first (MinInterval %v)", d, interval)
	}
	src.delete(ingress("web", "a.example", "web"))
	h.sw.waitFor(t, "ingress deleted", func(tb *route.Table) bool { return tb.Match("a.example", "/").Route == nil })
	if got := counter(t, h.reg, "nginx_ingress_controller_success"); got != 4 {
		t.Errorf("nginx_ingress_controller_success = %v, want 4", got)
	}
	if !strings.Contains(h.log.String(), "latency=") {
		t.Errorf("swaps logged without their latency:\n%s", h.log.String())
	}
}

// TestCoalesce: a burst of 200 changes is a handful of builds, the last
// of which has the final state.
func TestCoalesce(t *testing.T) {
	src := newFakeSource()
	world(src)
	const interval = 20 * time.Millisecond
	h := start(t, src, interval)
	h.sw.next(t, "first table")
	before := h.sw.count()
	t0 := time.Now()
	for i := range 200 {
		src.set(slice("web", fmt.Sprintf("10.244.9.%d", i+1)))
	}
	burst := time.Since(t0)
	sw := h.sw.waitFor(t, "the last endpoints", func(tb *route.Table) bool {
		return matches(tb, "a.example", "/", "web", "10.244.9.200:8080")
	})
	builds := h.sw.count() - before
	if limit := int(burst/interval) + 3; builds > limit {
		t.Errorf("%d builds for 200 changes in %v (MinInterval %v, want at most %d)", builds, burst, interval, limit)
	}
	time.Sleep(3 * interval)
	if n := h.sw.count() - before; n != builds {
		t.Errorf("%d more builds after the last state was swapped in", n-builds)
	}
	if sw.Changes < 1 {
		t.Errorf("last swap: %d changes", sw.Changes)
	}
	t.Logf("200 changes in %v: %d builds", burst, builds)
}

// TestProblemsLogged: a problem is logged once when it appears, and its
// resolution once.
func TestProblemsLogged(t *testing.T) {
	src := newFakeSource()
	world(src)
	h := start(t, src, 5*time.Millisecond)
	h.sw.next(t, "first table")
	src.set(ingress("bad", "b.example", "missing", "/"))
	sw := h.sw.waitFor(t, "the bad ingress", func(tb *route.Table) bool { return tb.Match("b.example", "/").Route != nil })
	if len(sw.Problems) == 0 {
		t.Fatalf("no problem for an Ingress naming a missing Service")
	}
	src.set(ingress("web", "a.example", "web", "/", "/other")) // another build, same problem
	h.sw.waitFor(t, "another build", func(tb *route.Table) bool { return tb.Match("a.example", "/other").Route.Path == "/other" })
	if n := strings.Count(h.log.String(), "msg=\"ingress problem\""); n != 1 {
		t.Errorf("the problem logged %d times, want once:\n%s", n, h.log.String())
	}
	if !strings.Contains(h.log.String(), "ingress=default/bad") || !strings.Contains(h.log.String(), "missing") {
		t.Errorf("the problem's log line does not name the Ingress and Service:\n%s", h.log.String())
	}
	src.set(service("missing"))
	h.sw.waitFor(t, "service created", func(tb *route.Table) bool { return tb.Match("b.example", "/").Route.Backend.Err == "" })
	if !strings.Contains(h.log.String(), "ingress problem resolved") {
		t.Errorf("no log of the resolution:\n%s", h.log.String())
	}
}

func TestRunNeedsSourceAndProxy(t *testing.T) {
	if err := Run(context.Background(), Config{}); err == nil {
		t.Error("Run without Source and Proxy: no error")
	}
}

// counter reads a counter of reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) == 1 {
			return mf.Metric[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
