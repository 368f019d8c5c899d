package kubernetes

import (
	"context"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/informer"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// cache holds what the records are made of, kept current by informers
// (list + watch of podnet's store) and indexed the ways queries need:
// services by name and by cluster IP, endpoint slices by service and by
// address, pods by IP.
type cache struct {
	mu          sync.RWMutex
	svcs        map[string]*corev1.Service                       // ns/name
	svcByIP     map[string]map[string]*corev1.Service            // cluster IP → ns/name → svc
	slices      map[string]*discoveryv1.EndpointSlice            // ns/slice
	slicesBySvc map[string]map[string]*discoveryv1.EndpointSlice // ns/svc → ns/slice → slice
	sliceByIP   map[string]map[string]*discoveryv1.EndpointSlice // address → ns/slice → slice
	pods        map[string]*corev1.Pod                           // ns/name
	podsByIP    map[string]map[string]*corev1.Pod                // pod IP → ns/name → pod
	nss         map[string]*corev1.Namespace

	// modified is the Unix time of the last change: the SOA serial.
	modified atomic.Int64
	// synced counts informers that delivered a complete list.
	synced, informers atomic.Int32
	// changed, when set, is called after every applied change (tests).
	changed func()

	svcSel, nsSel labels.Selector
}

func newCache() *cache {
	c := &cache{
		svcs:        map[string]*corev1.Service{},
		svcByIP:     map[string]map[string]*corev1.Service{},
		slices:      map[string]*discoveryv1.EndpointSlice{},
		slicesBySvc: map[string]map[string]*discoveryv1.EndpointSlice{},
		sliceByIP:   map[string]map[string]*discoveryv1.EndpointSlice{},
		pods:        map[string]*corev1.Pod{},
		podsByIP:    map[string]map[string]*corev1.Pod{},
		nss:         map[string]*corev1.Namespace{},
	}
	c.modified.Store(time.Now().Unix())
	return c
}

func key(ns, name string) string { return ns + "/" + name }

func addTo[T any](m map[string]map[string]T, k1, k2 string, v T) {
	inner := m[k1]
	if inner == nil {
		inner = map[string]T{}
		m[k1] = inner
	}
	inner[k2] = v
}

func delFrom[T any](m map[string]map[string]T, k1, k2 string) {
	if inner := m[k1]; inner != nil {
		delete(inner, k2)
		if len(inner) == 0 {
			delete(m, k1)
		}
	}
}

// canonIP gives an address its canonical text, so "fd00::0001" and
// "fd00::1" index alike.
func canonIP(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().String()
	}
	return s
}

func (c *cache) touch() {
	c.modified.Store(time.Now().Unix())
	if c.changed != nil {
		c.changed()
	}
}

func serviceIPs(s *corev1.Service) []string {
	var out []string
	seen := map[string]bool{}
	for _, ip := range append([]string{s.Spec.ClusterIP}, s.Spec.ClusterIPs...) {
		if ip == "" || ip == corev1.ClusterIPNone {
			continue
		}
		ip = canonIP(ip)
		if !seen[ip] {
			seen[ip] = true
			out = append(out, ip)
		}
	}
	return out
}

func (c *cache) setService(s *corev1.Service, deleted bool) {
	k := key(s.Namespace, s.Name)
	c.mu.Lock()
	if old := c.svcs[k]; old != nil {
		for _, ip := range serviceIPs(old) {
			delFrom(c.svcByIP, ip, k)
		}
		delete(c.svcs, k)
	}
	if !deleted && (c.svcSel == nil || c.svcSel.Matches(labels.Set(s.Labels))) {
		c.svcs[k] = s
		for _, ip := range serviceIPs(s) {
			addTo(c.svcByIP, ip, k, s)
		}
	}
	c.mu.Unlock()
	c.touch()
}

func (c *cache) setSlice(s *discoveryv1.EndpointSlice, deleted bool) {
	k := key(s.Namespace, s.Name)
	c.mu.Lock()
	if old := c.slices[k]; old != nil {
		delFrom(c.slicesBySvc, key(old.Namespace, old.Labels[api.LabelServiceName]), k)
		for _, ep := range old.Endpoints {
			for _, a := range ep.Addresses {
				delFrom(c.sliceByIP, canonIP(a), k)
			}
		}
		delete(c.slices, k)
	}
	svc := s.Labels[api.LabelServiceName]
	if !deleted && svc != "" {
		c.slices[k] = s
		addTo(c.slicesBySvc, key(s.Namespace, svc), k, s)
		for _, ep := range s.Endpoints {
			for _, a := range ep.Addresses {
				addTo(c.sliceByIP, canonIP(a), k, s)
			}
		}
	}
	c.mu.Unlock()
	c.touch()
}

func podIPs(p *corev1.Pod) []string {
	var out []string
	seen := map[string]bool{}
	for _, ip := range append([]string{p.Status.PodIP}, func() []string {
		var l []string
		for _, i := range p.Status.PodIPs {
			l = append(l, i.IP)
		}
		return l
	}()...) {
		if ip == "" {
			continue
		}
		ip = canonIP(ip)
		if !seen[ip] {
			seen[ip] = true
			out = append(out, ip)
		}
	}
	return out
}

func (c *cache) setPod(p *corev1.Pod, deleted bool) {
	k := key(p.Namespace, p.Name)
	c.mu.Lock()
	if old := c.pods[k]; old != nil {
		for _, ip := range podIPs(old) {
			delFrom(c.podsByIP, ip, k)
		}
		delete(c.pods, k)
	}
	// Host-network pods share the node's address: they get no pod record,
	// as CoreDNS's pod index skips them.
	if !deleted && !p.Spec.HostNetwork {
		c.pods[k] = p
		for _, ip := range podIPs(p) {
			addTo(c.podsByIP, ip, k, p)
		}
	}
	c.mu.Unlock()
	c.touch()
}

func (c *cache) setNamespace(n *corev1.Namespace, deleted bool) {
	c.mu.Lock()
	if deleted {
		delete(c.nss, n.Name)
	} else {
		c.nss[n.Name] = n
	}
	c.mu.Unlock()
	c.touch()
}

// HasSynced reports whether every informer delivered a complete list.
func (c *cache) HasSynced() bool { return c.synced.Load() >= c.informers.Load() }

func watch[T api.Object](ctx context.Context, wg *sync.WaitGroup, c *cache, src informer.Source, k *api.Kind, log *slog.Logger, set func(T, bool)) {
	inf := informer.New[T](src, k, "", log)
	var once sync.Once
	inf.AddHandler(informer.Handler[T]{
		OnUpdate: func(o T) { set(o, false) },
		OnDelete: func(o T) { set(o, true) },
		Synced:   func() { once.Do(func() { c.synced.Add(1) }) },
	})
	c.informers.Add(1)
	wg.Add(1)
	go func() { defer wg.Done(); inf.Run(ctx) }()
}

func mustKind(name string) *api.Kind {
	k, err := api.ResourceFor(name)
	if err != nil {
		panic(err)
	}
	return k
}

// run starts the informers; they stop when ctx ends and wg is done.
func (c *cache) run(ctx context.Context, wg *sync.WaitGroup, src informer.Source, log *slog.Logger, withSlices, withPods bool) {
	watch(ctx, wg, c, src, mustKind("namespaces"), log, c.setNamespace)
	watch(ctx, wg, c, src, mustKind("services"), log, c.setService)
	if withSlices {
		watch(ctx, wg, c, src, mustKind("endpointslices"), log, c.setSlice)
	}
	if withPods {
		watch(ctx, wg, c, src, mustKind("pods"), log, c.setPod)
	}
}

func sortedPods(m map[string]*corev1.Pod) []*corev1.Pod {
	out := make([]*corev1.Pod, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return key(out[i].Namespace, out[i].Name) < key(out[j].Namespace, out[j].Name) })
	return out
}
