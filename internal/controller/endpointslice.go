package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
)

// ManagedBy is the value of api.LabelManagedBy on the slices this
// controller owns, Kubernetes' own: other tools' slices are left alone.
const ManagedBy = "endpointslice-controller.k8s.io"

// LabelZone is the node label an endpoint's zone comes from.
const LabelZone = corev1.LabelTopologyZone // topology.kubernetes.io/zone

// MaxEndpointsPerSlice is how many endpoints one slice holds at most, as
// kube-controller-manager's default --max-endpoints-per-slice.
const MaxEndpointsPerSlice = 100

var sliceKind, _ = api.KindOf(&discoveryv1.EndpointSlice{})

// EndpointSlices keeps, for every Service with a selector, EndpointSlices
// listing the pods the selector matches in the Service's namespace:
//
//   - one endpoint per pod with an IP of the slice's family and not in a
//     terminal phase: conditions ready (pod Ready and not terminating, or
//     always with publishNotReadyAddresses), serving (pod Ready), and
//     terminating (deletionTimestamp set); nodeName, zone (the node's
//     topology.kubernetes.io/zone label), hints.forZones (and forNodes) for
//     a Service with trafficDistribution, hostname (pod hostname when its
//     subdomain is the Service), targetRef to the pod;
//   - named targetPorts resolved per pod from its container ports, pods
//     with different resolved ports in different slices (one slice's ports
//     hold for all its endpoints), a port a pod does not have left out;
//   - at most MaxEndpointsPerSlice endpoints per slice; endpoints stay in
//     the slice that holds them, new ones fill free room first;
//   - one empty placeholder slice for a Service with no endpoints;
//   - names <service>-<5 random characters>, labels kubernetes.io/service-name
//     and endpointslice.kubernetes.io/managed-by, the Service's own labels,
//     and a controller ownerReference to the Service.
//
// A slice is written only when its content changes; creates and updates
// go before deletes, so an endpoint moving between slices never
// disappears. Slices without the managed-by label (hand-written ones of
// Services without selectors) are never touched; managed slices of a
// Service that is gone or lost its selector are deleted.
type EndpointSlices struct {
	s      *store.Store
	log    *slog.Logger
	resync time.Duration
	// written remembers this controller's own writes until its caches
	// show them, so a pass on a cache that lags never creates a slice
	// twice or resurrects a deleted one.
	written map[string]ownWrite
}

// ownWrite is a slice this controller wrote (nil: deleted) and when.
type ownWrite struct {
	sl  *discoveryv1.EndpointSlice
	uid types.UID // of a deleted slice
	rv  int64
	at  time.Time
}

// world is what a pass reads: from fresh store lists (Reconcile) or from
// the loop's watch-fed caches (Run).
type world struct {
	services []*corev1.Service
	pods     []*corev1.Pod
	slices   []*discoveryv1.EndpointSlice
	nodes    []*corev1.Node
}

// NewEndpointSlices returns the EndpointSlice controller.
func NewEndpointSlices(s *store.Store, log *slog.Logger, resync time.Duration) *EndpointSlices {
	return &EndpointSlices{s: s, log: log.With("controller", "endpointslice"), resync: resync, written: map[string]ownWrite{}}
}

func (c *EndpointSlices) Name() string { return "endpointslice" }

// Run keeps caches of Services, pods, slices and nodes (list + watch,
// internal/informer) and reconciles from them at once on every change and
// every resync, so a pass costs no store reads: with thousands of
// Services a readiness change still reaches its slice in milliseconds.
func (c *EndpointSlices) Run(ctx context.Context) error {
	var cs caches
	svcs := addCache[*corev1.Service](&cs, c.s, serviceKind, c.log)
	pods := addCache[*corev1.Pod](&cs, c.s, podKind, c.log)
	slices := addCache[*discoveryv1.EndpointSlice](&cs, c.s, sliceKind, c.log)
	nodes := addCache[*corev1.Node](&cs, c.s, nodeKind, c.log)
	cs.run(ctx, c.resync, c.log, "reconcile", func(ctx context.Context) error {
		w := world{services: svcs.List(), pods: pods.List(), slices: slices.List(), nodes: nodes.List()}
		return c.reconcile(ctx, w)
	})
	return nil
}

// Reconcile runs one pass over all Services, pods and slices, read from
// the store.
func (c *EndpointSlices) Reconcile(ctx context.Context) error {
	// Slices before Services: a managed slice whose Service is missing
	// from the later list is an orphan, never a Service created meanwhile.
	var w world
	sobjs, _, err := c.s.List(ctx, sliceKind, "")
	if err != nil {
		return err
	}
	svcObjs, _, err := c.s.List(ctx, serviceKind, "")
	if err != nil {
		return err
	}
	pobjs, _, err := c.s.List(ctx, podKind, "")
	if err != nil {
		return err
	}
	nobjs, _, err := c.s.List(ctx, nodeKind, "")
	if err != nil {
		return err
	}
	for _, o := range sobjs {
		w.slices = append(w.slices, o.(*discoveryv1.EndpointSlice))
	}
	for _, o := range svcObjs {
		w.services = append(w.services, o.(*corev1.Service))
	}
	for _, o := range pobjs {
		w.pods = append(w.pods, o.(*corev1.Pod))
	}
	for _, o := range nobjs {
		w.nodes = append(w.nodes, o.(*corev1.Node))
	}
	return c.reconcile(ctx, w)
}

// withOwnWrites overlays the controller's recent writes on slices read
// from a cache, and forgets those the cache has caught up with.
func (c *EndpointSlices) withOwnWrites(slices []*discoveryv1.EndpointSlice) []*discoveryv1.EndpointSlice {
	if len(c.written) == 0 {
		return slices
	}
	byKey := make(map[string]*discoveryv1.EndpointSlice, len(slices))
	for _, sl := range slices {
		byKey[sl.Namespace+"/"+sl.Name] = sl
	}
	now := time.Now()
	for key, w := range c.written {
		cur, ok := byKey[key]
		switch {
		case now.Sub(w.at) > time.Minute:
			delete(c.written, key) // never seen: someone else acted
		case w.sl == nil && (!ok || cur.UID != w.uid):
			delete(c.written, key) // the deletion is seen
		case w.sl == nil:
			delete(byKey, key)
		case ok && rvOf(cur) >= w.rv:
			delete(c.written, key) // the write is seen (or a later one)
		default:
			byKey[key] = w.sl
		}
	}
	out := make([]*discoveryv1.EndpointSlice, 0, len(byKey))
	for _, sl := range byKey {
		out = append(out, sl)
	}
	return out
}

func rvOf(o api.Object) int64 {
	v, _ := strconv.ParseInt(o.GetResourceVersion(), 10, 64)
	return v
}

func (c *EndpointSlices) reconcile(ctx context.Context, w world) error {
	zones := map[string]string{}
	for _, n := range w.nodes {
		if z := n.Labels[LabelZone]; z != "" {
			zones[n.Name] = z
		}
	}
	podsByNS := map[string][]*corev1.Pod{}
	for _, p := range w.pods {
		podsByNS[p.Namespace] = append(podsByNS[p.Namespace], p)
	}
	managed := map[string][]*discoveryv1.EndpointSlice{} // ns/service
	for _, sl := range c.withOwnWrites(w.slices) {
		if sl.Labels[api.LabelManagedBy] != ManagedBy {
			continue
		}
		key := sl.Namespace + "/" + sl.Labels[api.LabelServiceName]
		managed[key] = append(managed[key], sl)
	}
	var firstErr error
	seen := map[string]bool{}
	for _, svc := range w.services {
		key := svc.Namespace + "/" + svc.Name
		seen[key] = true
		if len(svc.Spec.Selector) == 0 {
			// No selector: the user writes the slices; ours (from when it
			// had one) go.
			if err := c.deleteAll(ctx, managed[key]); err != nil && firstErr == nil {
				firstErr = err
			}
			continue
		}
		if err := c.service(ctx, svc, podsByNS[svc.Namespace], zones, managed[key]); err != nil {
			c.log.Warn("reconcile endpoint slices", "service", key, "err", err)
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	for key, slices := range managed {
		if !seen[key] {
			if err := c.deleteAll(ctx, slices); err != nil && firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}

func (c *EndpointSlices) deleteAll(ctx context.Context, slices []*discoveryv1.EndpointSlice) error {
	for _, sl := range slices {
		if err := c.delete(ctx, sl); err != nil {
			return err
		}
	}
	return nil
}

func (c *EndpointSlices) delete(ctx context.Context, sl *discoveryv1.EndpointSlice) error {
	_, err := c.s.Delete(ctx, sliceKind, sl.Namespace, sl.Name, store.DeleteOptions{UID: sl.UID})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete endpoint slice %s/%s: %w", sl.Namespace, sl.Name, err)
	}
	if err == nil || apierrors.IsNotFound(err) {
		c.written[sl.Namespace+"/"+sl.Name] = ownWrite{uid: sl.UID, at: time.Now()}
	}
	if err == nil {
		c.log.Info("endpoint slice deleted", "slice", sl.Namespace+"/"+sl.Name, "service", sl.Labels[api.LabelServiceName])
	}
	return nil
}

// group is the endpoints that share one resolved port list.
type group struct {
	key   string
	ports []discoveryv1.EndpointPort
	eps   []discoveryv1.Endpoint
}

// DesiredEndpoints computes a Service's endpoint groups for one address
// family from its namespace's pods, sorted by key; endpoints in a group
// are sorted by pod name. It is pure, for tests.
func DesiredEndpoints(svc *corev1.Service, pods []*corev1.Pod, zones map[string]string, family corev1.IPFamily) []group {
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	groups := map[string]*group{}
	for _, p := range pods {
		if p.Namespace != svc.Namespace || !sel.Matches(labels.Set(p.Labels)) {
			continue
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		ip := podIP(p, family)
		if ip == "" {
			continue
		}
		ports := resolvePorts(svc, p)
		key := portsKey(ports)
		g := groups[key]
		if g == nil {
			g = &group{key: key, ports: ports}
			groups[key] = g
		}
		g.eps = append(g.eps, endpointOf(svc, p, ip, zones))
	}
	out := make([]group, 0, len(groups))
	for _, g := range groups {
		sort.Slice(g.eps, func(i, j int) bool { return g.eps[i].TargetRef.Name < g.eps[j].TargetRef.Name })
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key < out[j].key })
	return out
}

func endpointOf(svc *corev1.Service, p *corev1.Pod, ip string, zones map[string]string) discoveryv1.Endpoint {
	podReady := podReadyCondition(p).Status == corev1.ConditionTrue
	terminating := p.DeletionTimestamp != nil
	ready := svc.Spec.PublishNotReadyAddresses || podReady && !terminating
	ep := discoveryv1.Endpoint{
		Addresses:  []string{ip},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: ptr(podReady || svc.Spec.PublishNotReadyAddresses), Terminating: &terminating},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
	}
	if p.Spec.Hostname != "" && p.Spec.Subdomain == svc.Name {
		ep.Hostname = ptr(p.Spec.Hostname)
	}
	if n := p.Spec.NodeName; n != "" {
		ep.NodeName = ptr(n)
		if z, ok := zones[n]; ok {
			ep.Zone = ptr(z)
		}
	}
	// Hints for trafficDistribution, as Kubernetes: the endpoint's own zone
	// (and node, for PreferSameNode).
	if td := deref(svc.Spec.TrafficDistribution); td != "" && ep.Zone != nil {
		switch td {
		case corev1.ServiceTrafficDistributionPreferClose, corev1.ServiceTrafficDistributionPreferSameZone:
			ep.Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: *ep.Zone}}}
		case corev1.ServiceTrafficDistributionPreferSameNode:
			ep.Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: *ep.Zone}}, ForNodes: []discoveryv1.ForNode{{Name: *ep.NodeName}}}
		}
	}
	return ep
}

func ptr[T any](v T) *T { return &v }

// podIP returns the pod's address of a family, "" if it has none.
func podIP(p *corev1.Pod, family corev1.IPFamily) string {
	ips := []string{p.Status.PodIP}
	for _, a := range p.Status.PodIPs {
		ips = append(ips, a.IP)
	}
	for _, s := range ips {
		a, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		if a.Is4() == (family == corev1.IPv4Protocol) {
			return a.String()
		}
	}
	return ""
}

// resolvePorts returns the Service's ports as the pod serves them: a
// named targetPort is looked up in the pod's container ports (same name
// and protocol); a port the pod does not have is left out.
func resolvePorts(svc *corev1.Service, p *corev1.Pod) []discoveryv1.EndpointPort {
	var out []discoveryv1.EndpointPort
	for _, sp := range svc.Spec.Ports {
		proto := sp.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		num, ok := targetPort(sp.TargetPort, sp.Port, proto, p)
		if !ok {
			continue
		}
		out = append(out, discoveryv1.EndpointPort{Name: ptr(sp.Name), Port: ptr(num), Protocol: ptr(proto), AppProtocol: sp.AppProtocol})
	}
	return out
}

func targetPort(tp intstr.IntOrString, port int32, proto corev1.Protocol, p *corev1.Pod) (int32, bool) {
	if tp.Type == intstr.Int {
		if tp.IntVal == 0 {
			return port, true
		}
		return tp.IntVal, true
	}
	if tp.StrVal == "" {
		return port, true
	}
	cs := append([]corev1.Container(nil), p.Spec.Containers...)
	for _, ic := range p.Spec.InitContainers {
		if ic.RestartPolicy != nil && *ic.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			cs = append(cs, ic) // sidecars serve too
		}
	}
	for _, c := range cs {
		for _, cp := range c.Ports {
			cproto := cp.Protocol
			if cproto == "" {
				cproto = corev1.ProtocolTCP
			}
			if cp.Name == tp.StrVal && cproto == proto {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

func portsKey(ports []discoveryv1.EndpointPort) string {
	var b strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&b, "%s/%s/%d,", deref(p.Name), deref(p.Protocol), deref(p.Port))
	}
	return b.String()
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func podReadyCondition(p *corev1.Pod) corev1.PodCondition {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c
		}
	}
	return corev1.PodCondition{}
}

// service reconciles one Service's managed slices.
func (c *EndpointSlices) service(ctx context.Context, svc *corev1.Service, pods []*corev1.Pod, zones map[string]string, have []*discoveryv1.EndpointSlice) error {
	families := svc.Spec.IPFamilies
	if len(families) == 0 {
		families = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	var stale []*discoveryv1.EndpointSlice
	byType := map[discoveryv1.AddressType][]*discoveryv1.EndpointSlice{}
	for _, sl := range have {
		if !ownedBy(sl.OwnerReferences, svc.UID) {
			stale = append(stale, sl) // an earlier Service of that name
			continue
		}
		byType[sl.AddressType] = append(byType[sl.AddressType], sl)
	}
	var deletes []*discoveryv1.EndpointSlice
	wanted := map[discoveryv1.AddressType]bool{}
	for _, f := range families {
		at := discoveryv1.AddressTypeIPv4
		if f == corev1.IPv6Protocol {
			at = discoveryv1.AddressTypeIPv6
		}
		wanted[at] = true
		writes, dels := plan(svc, at, DesiredEndpoints(svc, pods, zones, f), byType[at])
		for _, w := range writes {
			if err := c.write(ctx, w); err != nil {
				return err
			}
		}
		deletes = append(deletes, dels...)
	}
	for at, slices := range byType {
		if !wanted[at] {
			deletes = append(deletes, slices...)
		}
	}
	return c.deleteAll(ctx, append(deletes, stale...))
}

func ownedBy(refs []metav1.OwnerReference, uid types.UID) bool {
	for _, r := range refs {
		if r.Controller != nil && *r.Controller && r.UID == uid {
			return true
		}
	}
	return false
}

// plan maps a Service's endpoint groups of one address type onto its
// existing slices: the slices to write (new ones without a name, changed
// ones with their resourceVersion; unchanged ones are not returned) and
// the slices to delete.
func plan(svc *corev1.Service, at discoveryv1.AddressType, groups []group, have []*discoveryv1.EndpointSlice) (writes, deletes []*discoveryv1.EndpointSlice) {
	if len(groups) == 0 {
		groups = []group{{}} // the placeholder: a slice with no endpoints
	}
	sort.Slice(have, func(i, j int) bool { return have[i].Name < have[j].Name })
	byKey := map[string][]*discoveryv1.EndpointSlice{}
	for _, sl := range have {
		k := portsKey(sl.Ports)
		byKey[k] = append(byKey[k], sl)
	}
	type target struct {
		old *discoveryv1.EndpointSlice // nil for a new slice
		g   *group
		eps []discoveryv1.Endpoint
	}
	var targets []*target
	var spare []*discoveryv1.EndpointSlice // existing slices no group took
	var homeless []*group                  // groups that found no slice of their ports
	taken := map[*discoveryv1.EndpointSlice]bool{}
	for gi := range groups {
		g := &groups[gi]
		olds := byKey[g.key]
		if len(olds) == 0 {
			homeless = append(homeless, g)
			continue
		}
		// Endpoints stay where they are while there is room.
		where := map[string]int{}
		ts := make([]*target, len(olds))
		for i, sl := range olds {
			taken[sl] = true
			ts[i] = &target{old: sl, g: g}
			for _, ep := range sl.Endpoints {
				where[epKey(ep)] = i
			}
		}
		var rest []discoveryv1.Endpoint
		for _, ep := range g.eps {
			if i, ok := where[epKey(ep)]; ok && len(ts[i].eps) < MaxEndpointsPerSlice {
				ts[i].eps = append(ts[i].eps, ep)
			} else {
				rest = append(rest, ep)
			}
		}
		for _, t := range ts {
			for len(rest) > 0 && len(t.eps) < MaxEndpointsPerSlice {
				t.eps, rest = append(t.eps, rest[0]), rest[1:]
			}
		}
		for len(rest) > 0 {
			n := min(len(rest), MaxEndpointsPerSlice)
			ts = append(ts, &target{g: g, eps: rest[:n]})
			rest = rest[n:]
		}
		targets = append(targets, ts...)
	}
	for _, sl := range have {
		if !taken[sl] {
			spare = append(spare, sl)
		}
	}
	// Groups whose ports are new take over slices no group kept (a port
	// change rewrites slices in place instead of replacing them).
	for _, g := range homeless {
		eps := g.eps
		for first := true; first || len(eps) > 0; first = false {
			n := min(len(eps), MaxEndpointsPerSlice)
			t := &target{g: g, eps: eps[:n]}
			eps = eps[n:]
			if len(spare) > 0 {
				t.old, spare = spare[0], spare[1:]
			}
			targets = append(targets, t)
		}
	}
	placeholder := len(groups) == 1 && len(groups[0].eps) == 0
	for _, t := range targets {
		if len(t.eps) == 0 && !placeholder {
			if t.old != nil {
				deletes = append(deletes, t.old)
			}
			continue
		}
		placeholder = false // only one placeholder
		want := desiredSlice(svc, at, t.g.ports, t.eps)
		if t.old == nil {
			writes = append(writes, want)
			continue
		}
		if sameSlice(t.old, want) {
			continue
		}
		want.ObjectMeta = *t.old.ObjectMeta.DeepCopy()
		want.Labels = sliceLabels(svc)
		want.OwnerReferences = serviceOwner(svc)
		writes = append(writes, want)
	}
	deletes = append(deletes, spare...)
	return writes, deletes
}

func epKey(ep discoveryv1.Endpoint) string {
	if r := ep.TargetRef; r != nil && r.UID != "" {
		return string(r.UID)
	}
	return strings.Join(ep.Addresses, ",")
}

func sliceLabels(svc *corev1.Service) map[string]string {
	l := map[string]string{}
	for k, v := range svc.Labels {
		l[k] = v
	}
	l[api.LabelServiceName] = svc.Name
	l[api.LabelManagedBy] = ManagedBy
	return l
}

func serviceOwner(svc *corev1.Service) []metav1.OwnerReference {
	return []metav1.OwnerReference{{APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID, Controller: ptr(true), BlockOwnerDeletion: ptr(true)}}
}

func desiredSlice(svc *corev1.Service, at discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps []discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: svc.Namespace, Labels: sliceLabels(svc), OwnerReferences: serviceOwner(svc)},
		AddressType: at,
		Endpoints:   append([]discoveryv1.Endpoint{}, eps...),
		Ports:       ports,
	}
	sort.Slice(sl.Endpoints, func(i, j int) bool { return epKey(sl.Endpoints[i]) < epKey(sl.Endpoints[j]) })
	if sl.Ports == nil {
		sl.Ports = []discoveryv1.EndpointPort{}
	}
	return sl
}

// sameSlice compares what the controller writes: labels, owner, address
// type, endpoints and ports.
func sameSlice(have, want *discoveryv1.EndpointSlice) bool {
	type view struct {
		Labels    map[string]string
		Owners    []metav1.OwnerReference
		Type      discoveryv1.AddressType
		Endpoints []discoveryv1.Endpoint
		Ports     []discoveryv1.EndpointPort
	}
	a, _ := json.Marshal(view{have.Labels, have.OwnerReferences, have.AddressType, sortedEPs(have.Endpoints), nonNil(have.Ports)})
	b, _ := json.Marshal(view{want.Labels, want.OwnerReferences, want.AddressType, sortedEPs(want.Endpoints), nonNil(want.Ports)})
	return string(a) == string(b)
}

func sortedEPs(eps []discoveryv1.Endpoint) []discoveryv1.Endpoint {
	out := append([]discoveryv1.Endpoint{}, eps...)
	sort.Slice(out, func(i, j int) bool { return epKey(out[i]) < epKey(out[j]) })
	return out
}

func nonNil(p []discoveryv1.EndpointPort) []discoveryv1.EndpointPort {
	if p == nil {
		return []discoveryv1.EndpointPort{}
	}
	return p
}

// write creates a new slice (a fresh random name) or updates one.
func (c *EndpointSlices) write(ctx context.Context, sl *discoveryv1.EndpointSlice) error {
	svc := sl.Labels[api.LabelServiceName]
	if sl.ResourceVersion != "" {
		err := c.s.Update(ctx, sl)
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil // changed meanwhile; the watch brings another pass
		}
		if err != nil {
			return fmt.Errorf("update endpoint slice %s/%s: %w", sl.Namespace, sl.Name, err)
		}
		c.remember(sl)
		c.log.Debug("endpoint slice updated", "slice", sl.Namespace+"/"+sl.Name, "service", svc, "endpoints", len(sl.Endpoints))
		return nil
	}
	for attempt := 0; ; attempt++ {
		sl.Name = randomName(svc)
		err := c.s.Create(ctx, sl)
		if apierrors.IsAlreadyExists(err) && attempt < 5 {
			sl.UID, sl.ResourceVersion = "", ""
			continue
		}
		if err != nil {
			return fmt.Errorf("create endpoint slice for service %s/%s: %w", sl.Namespace, svc, err)
		}
		c.remember(sl)
		c.log.Info("endpoint slice created", "slice", sl.Namespace+"/"+sl.Name, "service", svc, "endpoints", len(sl.Endpoints))
		return nil
	}
}

func (c *EndpointSlices) remember(sl *discoveryv1.EndpointSlice) {
	c.written[sl.Namespace+"/"+sl.Name] = ownWrite{sl: sl, rv: rvOf(sl), at: time.Now()}
}

// randomName is base-<5 random characters>, as Kubernetes' generateName;
// base is cut so the name stays a valid object name.
func randomName(base string) string {
	if len(base) > 63-6 {
		base = base[:63-6]
	}
	return base + "-" + utilrand.String(5)
}
