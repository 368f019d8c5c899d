package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/ingress/route"
	"github.com/podnet/podnet/internal/store"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

var (
	ingressKind, _      = api.KindOf(&networkingv1.Ingress{})
	ingressClassKind, _ = api.KindOf(&networkingv1.IngressClass{})
	secretKind, _       = api.KindOf(&corev1.Secret{})
)

// MaxIngressProblems is how many problems the problems annotation lists;
// more are counted on one last line.
const MaxIngressProblems = 20

// IngressStatus publishes, for every Ingress podnet serves (route.Served),
// where it is served and what is wrong with it:
//
//   - status.loadBalancer.ingress lists the InternalIPs of the Ready nodes,
//     sorted, as ingress-nginx publishes the addresses of the nodes that
//     run it (every podnet node runs the ingress proxy), so `get ingress`
//     shows them in ADDRESS. Ingresses podnet does not serve are left
//     alone: another controller owns their status.
//   - the annotation api.AnnotationIngressProblems holds the problems
//     route.Build reports for it (a conflict lost, a missing Service, port
//     or Secret), sorted, one per line, and is removed when there are none
//     (from every Ingress: the annotation is podnet's).
//
// An Ingress is written only when one of them changes.
type IngressStatus struct {
	s      *store.Store
	log    *slog.Logger
	resync time.Duration
}

// NewIngressStatus returns the ingress status controller.
func NewIngressStatus(s *store.Store, log *slog.Logger, resync time.Duration) *IngressStatus {
	return &IngressStatus{s: s, log: log.With("controller", "ingress-status"), resync: resync}
}

func (c *IngressStatus) Name() string { return "ingress-status" }

// ingressWorld is what a pass reads: from the loop's caches (Run) or from
// store lists (Reconcile).
type ingressWorld struct {
	route.Input
	nodes []*corev1.Node
}

// Run keeps caches of Ingresses, IngressClasses, Services, EndpointSlices,
// Secrets and nodes (list + watch, internal/informer) and reconciles from
// them on every change and every resync: a pass reads nothing from the
// store.
func (c *IngressStatus) Run(ctx context.Context) error {
	var cs caches
	ings := addCache[*networkingv1.Ingress](&cs, c.s, ingressKind, c.log)
	classes := addCache[*networkingv1.IngressClass](&cs, c.s, ingressClassKind, c.log)
	svcs := addCache[*corev1.Service](&cs, c.s, serviceKind, c.log)
	slices := addCache[*discoveryv1.EndpointSlice](&cs, c.s, sliceKind, c.log)
	secrets := addCache[*corev1.Secret](&cs, c.s, secretKind, c.log)
	nodes := addCache[*corev1.Node](&cs, c.s, nodeKind, c.log)
	cs.run(ctx, c.resync, c.log, "reconcile ingress status", func(ctx context.Context) error {
		w := ingressWorld{Input: route.Input{
			Ingresses: ings.List(), IngressClasses: classes.List(), Services: svcs.List(),
			EndpointSlices: slices.List(), Secrets: secrets.List(),
		}, nodes: nodes.List()}
		return c.reconcile(ctx, w)
	})
	return nil
}

// Reconcile runs one pass over everything, read from the store.
func (c *IngressStatus) Reconcile(ctx context.Context) error {
	var w ingressWorld
	if err := listInto(ctx, c.s, ingressKind, &w.Ingresses); err != nil {
		return err
	}
	if err := listInto(ctx, c.s, ingressClassKind, &w.IngressClasses); err != nil {
		return err
	}
	if err := listInto(ctx, c.s, serviceKind, &w.Services); err != nil {
		return err
	}
	if err := listInto(ctx, c.s, sliceKind, &w.EndpointSlices); err != nil {
		return err
	}
	if err := listInto(ctx, c.s, secretKind, &w.Secrets); err != nil {
		return err
	}
	if err := listInto(ctx, c.s, nodeKind, &w.nodes); err != nil {
		return err
	}
	return c.reconcile(ctx, w)
}

func listInto[T api.Object](ctx context.Context, s *store.Store, k *api.Kind, out *[]T) error {
	objs, _, err := s.List(ctx, k, "")
	if err != nil {
		return err
	}
	for _, o := range objs {
		*out = append(*out, o.(T))
	}
	return nil
}

// IngressAddresses are the addresses Ingresses are served on: the
// InternalIPs of the Ready nodes, sorted, without duplicates.
func IngressAddresses(nodes []*corev1.Node) []networkingv1.IngressLoadBalancerIngress {
	var addrs []netip.Addr
	for _, n := range nodes {
		if api.NodeReady(n) != corev1.ConditionTrue || n.DeletionTimestamp != nil {
			continue
		}
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP {
				continue
			}
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				addrs = append(addrs, ip.Unmap())
			}
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)
	out := make([]networkingv1.IngressLoadBalancerIngress, len(addrs))
	for i, a := range addrs {
		out[i] = networkingv1.IngressLoadBalancerIngress{IP: a.String()}
	}
	return out
}

// ingressService is api.IngressNamespace/api.IngressService, or nil.
func ingressService(svcs []*corev1.Service) *corev1.Service {
	for _, svc := range svcs {
		if svc.Namespace == api.IngressNamespace && svc.Name == api.IngressService && svc.DeletionTimestamp == nil {
			return svc
		}
	}
	return nil
}

// publishedAddresses are what served Ingresses list: the ingress
// Service's load-balancer addresses first (as ingress-nginx publishes its
// controller Service's), then every Ready node's (each serves on :80 and
// :443 itself).
func publishedAddresses(svc *corev1.Service, nodes []*corev1.Node) []networkingv1.IngressLoadBalancerIngress {
	var out []networkingv1.IngressLoadBalancerIngress
	seen := map[string]bool{}
	if svc != nil && svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, lb := range svc.Status.LoadBalancer.Ingress {
			if lb.IP != "" && !seen[lb.IP] {
				seen[lb.IP] = true
				out = append(out, networkingv1.IngressLoadBalancerIngress{IP: lb.IP})
			}
		}
	}
	for _, a := range IngressAddresses(nodes) {
		if !seen[a.IP] {
			seen[a.IP] = true
			out = append(out, a)
		}
	}
	return out
}

// IngressNodesSlice is the EndpointSlice of the ingress Service: the
// Ready nodes' InternalIPs with the proxy's ports (http 80, https 443),
// owned by the Service so it goes with it.
func IngressNodesSlice(svc *corev1.Service, nodes []*corev1.Node) *discoveryv1.EndpointSlice {
	ready, serving, terminating := true, true, false
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: svc.Namespace, Name: api.IngressNodesSlice,
			Labels: map[string]string{api.LabelServiceName: svc.Name, api.LabelManagedBy: api.IngressManagedBy},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID,
				Controller: ptr(true), BlockOwnerDeletion: ptr(true),
			}},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr("http"), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(int32(80))},
			{Name: ptr("https"), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(int32(443))},
		},
	}
	byIP := map[string]string{}
	for _, n := range nodes {
		if api.NodeReady(n) != corev1.ConditionTrue || n.DeletionTimestamp != nil {
			continue
		}
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); a.Type == corev1.NodeInternalIP && err == nil && ip.Unmap().Is4() {
				byIP[ip.Unmap().String()] = n.Name
			}
		}
	}
	for _, a := range IngressAddresses(nodes) {
		name, ok := byIP[a.IP]
		if !ok {
			continue
		}
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{a.IP},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
			NodeName:   ptr(name),
		})
	}
	return sl
}

// syncNodesSlice writes the ingress Service's EndpointSlice when it
// differs from the Ready nodes (and only then).
func (c *IngressStatus) syncNodesSlice(ctx context.Context, svc *corev1.Service, w ingressWorld) error {
	if svc == nil || len(svc.Spec.Selector) > 0 {
		return nil // deleted, or given a selector by its owner: not ours to fill
	}
	want := IngressNodesSlice(svc, w.nodes)
	var cur *discoveryv1.EndpointSlice
	for _, sl := range w.EndpointSlices {
		if sl.Namespace == want.Namespace && sl.Name == want.Name {
			cur = sl
		}
	}
	if cur == nil {
		if err := c.s.Create(ctx, want); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("endpointslice %s/%s: %w", want.Namespace, want.Name, err)
		}
		c.log.Info("ingress Service endpoints written", "nodes", len(want.Endpoints))
		return nil
	}
	if apiequality.Semantic.DeepEqual(cur.Endpoints, want.Endpoints) && apiequality.Semantic.DeepEqual(cur.Ports, want.Ports) &&
		apiequality.Semantic.DeepEqual(cur.OwnerReferences, want.OwnerReferences) && cur.Labels[api.LabelManagedBy] == api.IngressManagedBy {
		return nil
	}
	_, err := c.s.Mutate(ctx, sliceKind, want.Namespace, want.Name, func(o api.Object) error {
		sl := o.(*discoveryv1.EndpointSlice)
		sl.Endpoints, sl.Ports, sl.OwnerReferences, sl.AddressType = want.Endpoints, want.Ports, want.OwnerReferences, want.AddressType
		if sl.Labels == nil {
			sl.Labels = map[string]string{}
		}
		for k, v := range want.Labels {
			sl.Labels[k] = v
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("endpointslice %s/%s: %w", want.Namespace, want.Name, err)
	}
	c.log.Info("ingress Service endpoints written", "nodes", len(want.Endpoints))
	return nil
}

// maxProblemLen bounds one problem's text in the annotation.
const maxProblemLen = 512

// problemsValue is the problems annotation's value for msgs: sorted, one
// per line, at most MaxIngressProblems and a count of the rest ("" for
// none).
func problemsValue(msgs []string) string {
	clean := make([]string, len(msgs))
	for i, m := range msgs {
		m = strings.Join(strings.Fields(m), " ")
		if len(m) > maxProblemLen {
			m = m[:maxProblemLen] + "..."
		}
		clean[i] = m
	}
	v := api.JoinIngressProblems(clean)
	if v == "" {
		return ""
	}
	lines := strings.Split(v, "\n")
	if len(lines) <= MaxIngressProblems {
		return v
	}
	return strings.Join(append(lines[:MaxIngressProblems:MaxIngressProblems], fmt.Sprintf("... and %d more", len(lines)-MaxIngressProblems)), "\n")
}

func (c *IngressStatus) reconcile(ctx context.Context, w ingressWorld) error {
	svc := ingressService(w.Services)
	if err := c.syncNodesSlice(ctx, svc, w); err != nil && ctx.Err() == nil {
		c.log.Warn("write the ingress Service's endpoints", "err", err)
	}
	addrs := publishedAddresses(svc, w.nodes)
	_, problems := route.Build(w.Input)
	byIngress := map[types.NamespacedName][]string{}
	for _, p := range problems {
		byIngress[p.Ingress] = append(byIngress[p.Ingress], p.Message)
	}
	var firstErr error
	for _, ing := range w.Ingresses {
		if ing.DeletionTimestamp != nil {
			continue
		}
		nn := types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}
		served := route.Served(ing, w.IngressClasses)
		want := problemsValue(byIngress[nn])
		if ing.Annotations[api.AnnotationIngressProblems] == want && (!served || lbEqual(ing.Status.LoadBalancer.Ingress, addrs)) {
			continue
		}
		if err := c.write(ctx, ing, served, addrs, want); err != nil {
			c.log.Warn("write ingress status", "ingress", nn.String(), "err", err)
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}

// write sets the Ingress's addresses (if served) and problems annotation
// on its stored version; nothing is written if it already has them.
func (c *IngressStatus) write(ctx context.Context, ing *networkingv1.Ingress, served bool, addrs []networkingv1.IngressLoadBalancerIngress, problems string) error {
	_, err := c.s.Mutate(ctx, ingressKind, ing.Namespace, ing.Name, func(o api.Object) error {
		cur := o.(*networkingv1.Ingress)
		if cur.UID != ing.UID {
			return nil // replaced meanwhile; the next pass handles it
		}
		if served && !lbEqual(cur.Status.LoadBalancer.Ingress, addrs) {
			cur.Status.LoadBalancer.Ingress = slices.Clone(addrs)
		}
		switch {
		case problems == "" && cur.Annotations != nil:
			delete(cur.Annotations, api.AnnotationIngressProblems)
			if len(cur.Annotations) == 0 {
				cur.Annotations = nil
			}
		case problems != "":
			if cur.Annotations == nil {
				cur.Annotations = map[string]string{}
			}
			cur.Annotations[api.AnnotationIngressProblems] = problems
		}
		return nil
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ingress %s/%s: %w", ing.Namespace, ing.Name, err)
	}
	published := 0
	if served {
		published = len(addrs)
	}
	c.log.Info("ingress status written", "ingress", ing.Namespace+"/"+ing.Name, "served", served, "addresses", published, "problems", strings.Count(problems, "\n")+min(len(problems), 1))
	return nil
}

func lbEqual(a, b []networkingv1.IngressLoadBalancerIngress) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].IP != b[i].IP || a[i].Hostname != b[i].Hostname || len(a[i].Ports) != 0 {
			return false
		}
	}
	return true
}
