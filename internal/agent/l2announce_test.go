package agent

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/informer"
	"github.com/podnet/podnet/internal/l2announce"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// memSource is an in-memory informer.Source: List returns what put stored,
// Watch streams every later put.
type memSource struct {
	mu       sync.Mutex
	objs     map[string]map[string]api.Object // kind -> ns/name -> object
	watchers map[string][]chan store.Event
}

func newMemSource() *memSource {
	return &memSource{objs: map[string]map[string]api.Object{}, watchers: map[string][]chan store.Event{}}
}

func (m *memSource) List(_ context.Context, k *api.Kind, _ string) ([]api.Object, int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []api.Object
	for _, o := range m.objs[k.GVK.Kind] {
		out = append(out, o)
	}
	return out, 0, nil
}

func (m *memSource) Watch(ctx context.Context, k *api.Kind, _ string, _ int64) <-chan store.Event {
	ch := make(chan store.Event, 64)
	m.mu.Lock()
	m.watchers[k.GVK.Kind] = append(m.watchers[k.GVK.Kind], ch)
	m.mu.Unlock()
	context.AfterFunc(ctx, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		ws := m.watchers[k.GVK.Kind]
		for i, w := range ws {
			if w == ch {
				m.watchers[k.GVK.Kind] = append(ws[:i], ws[i+1:]...)
				close(ch)
			}
		}
	})
	return ch
}

func (m *memSource) put(o api.Object) {
	k, _ := api.KindOf(o)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.objs[k.GVK.Kind] == nil {
		m.objs[k.GVK.Kind] = map[string]api.Object{}
	}
	m.objs[k.GVK.Kind][o.GetNamespace()+"/"+o.GetName()] = o
	for _, w := range m.watchers[k.GVK.Kind] {
		w <- store.Event{Type: store.Modified, Object: o}
	}
}

// idleConn never receives a frame; it counts what is written.
type idleConn struct {
	once   sync.Once
	closed chan struct{}
	mu     sync.Mutex
	frames int
}

func (c *idleConn) ReadFrame([]byte) (int, bool, error) {
	<-c.closed
	return 0, false, errors.New("closed")
}
func (c *idleConn) WriteFrame([]byte) error { c.mu.Lock(); c.frames++; c.mu.Unlock(); return nil }
func (c *idleConn) Close() error            { c.once.Do(func() { close(c.closed) }); return nil }

func readyNode(name string, st corev1.ConditionStatus) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}
	return n
}

// Three agents over one store: exactly one announces the address, and
// another takes over when its node is no longer Ready.
func TestL2AnnounceFailover(t *testing.T) {
	src := newMemSource()
	names := []string{"n1", "n2", "n3"}
	for _, n := range names {
		src.put(readyNode(n, corev1.ConditionTrue))
	}
	ip := netip.MustParseAddr("192.168.250.200")
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"}}
	svc.Spec.Type = corev1.ServiceTypeLoadBalancer
	src.put(svc) // <pending>: nothing to announce yet

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	runners := map[string]*L2Announce{}
	for i, n := range names {
		cfg := L2AnnounceConfig{NodeName: n, Source: src, Logger: testutil.Logger(t),
			Listen: func() (l2announce.Conn, net.HardwareAddr, netip.Prefix, error) {
				return &idleConn{closed: make(chan struct{})}, net.HardwareAddr{2, 0, 0, 0, 0, byte(i + 1)}, netip.MustParsePrefix("192.168.250.0/24"), nil
			}}
		if i == 2 { // n3 shares caches another runner runs, as the agent's service proxy does
			svcK, _ := api.KindOf(&corev1.Service{})
			sliceK, _ := api.KindOf(&discoveryv1.EndpointSlice{})
			cfg.Services = informer.New[*corev1.Service](src, svcK, "", nil)
			cfg.Slices = informer.New[*discoveryv1.EndpointSlice](src, sliceK, "", nil)
		}
		r, err := NewL2Announce(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Services != nil { // started after the runner added its handlers
			wg.Add(2)
			go func() { defer wg.Done(); cfg.Services.Run(ctx) }()
			go func() { defer wg.Done(); cfg.Slices.Run(ctx) }()
		}
		runners[n] = r
		wg.Add(1)
		go func() { defer wg.Done(); r.Run(ctx) }()
	}
	announcers := func() []string {
		var out []string
		for _, n := range names {
			for _, a := range runners[n].Announced() {
				if a == ip {
					out = append(out, n)
				}
			}
		}
		return out
	}
	waitFor := func(what string, ok func([]string) bool) []string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			a := announcers()
			if ok(a) {
				return a
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: announcers %v", what, a)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if a := announcers(); len(a) != 0 {
		t.Fatalf("a pending Service is announced by %v", a)
	}

	withIP := svc.DeepCopy()
	withIP.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip.String()}}
	src.put(withIP)
	first := waitFor("one announcer", func(a []string) bool { return len(a) == 1 })[0]
	if want := l2announce.Elect(ip, names); first != want {
		t.Fatalf("%s announces, the election says %s", first, want)
	}

	src.put(readyNode(first, corev1.ConditionUnknown))
	second := waitFor("a new announcer", func(a []string) bool { return len(a) == 1 && a[0] != first })[0]
	var rest []string
	for _, n := range names {
		if n != first {
			rest = append(rest, n)
		}
	}
	if want := l2announce.Elect(ip, rest); second != want {
		t.Fatalf("%s took over, the election says %s", second, want)
	}

	// The Service goes away: nobody announces.
	np := withIP.DeepCopy()
	np.Spec.Type = corev1.ServiceTypeNodePort
	src.put(np)
	waitFor("no announcer", func(a []string) bool { return len(a) == 0 })
	t.Logf("announced by %s, then by %s after %s turned Unknown", first, second, first)
}
