package api

import (
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
)

// Column is one column of a kind's table, as the API server's table
// convertors define them: `podnet get` prints a kind from its columns
// alone, and a Kubernetes API front can serve Table output from them.
type Column struct {
	Name string
	// Wide columns show only with -o wide.
	Wide bool
	Cell func(Object) string
}

// None is what an empty cell shows, as kubectl.
const None = "<none>"

// Age is the AGE cell of an object.
func Age(o Object) string {
	t := o.GetCreationTimestamp().Time
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t))
}

func orNone(s string) string {
	if s == "" {
		return None
	}
	return s
}

var (
	nameColumn = Column{Name: "NAME", Cell: func(o Object) string { return o.GetName() }}
	ageColumn  = Column{Name: "AGE", Cell: Age}
)

func podColumns() []Column {
	pod := func(f func(*corev1.Pod) string) func(Object) string {
		return func(o Object) string { return f(o.(*corev1.Pod)) }
	}
	return []Column{
		nameColumn,
		{Name: "READY", Cell: pod(func(p *corev1.Pod) string {
			ready := 0
			for _, cs := range p.Status.ContainerStatuses {
				if cs.Ready {
					ready++
				}
			}
			return fmt.Sprintf("%d/%d", ready, len(p.Spec.Containers))
		})},
		{Name: "STATUS", Cell: pod(PodStatus)},
		{Name: "RESTARTS", Cell: pod(func(p *corev1.Pod) string {
			n := int32(0)
			for _, cs := range p.Status.ContainerStatuses {
				n += cs.RestartCount
			}
			return fmt.Sprint(n)
		})},
		ageColumn,
		{Name: "IP", Wide: true, Cell: pod(func(p *corev1.Pod) string { return orNone(p.Status.PodIP) })},
		{Name: "NODE", Wide: true, Cell: pod(func(p *corev1.Pod) string { return orNone(p.Spec.NodeName) })},
		{Name: "NETWORK", Wide: true, Cell: pod(NetworkMode)},
	}
}

// PodStatus is a pod's STATUS cell, as kubectl shows it.
func PodStatus(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "Terminating"
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Waiting != nil && cs.State.Waiting.Reason != "" {
			return cs.State.Waiting.Reason
		}
		if cs.State.Terminated != nil && cs.State.Terminated.Reason != "" && p.Status.Phase != corev1.PodSucceeded {
			return cs.State.Terminated.Reason
		}
	}
	if p.Status.Reason != "" {
		return p.Status.Reason
	}
	if p.Status.Phase == corev1.PodSucceeded {
		return "Completed"
	}
	if p.Status.Phase == "" {
		return string(corev1.PodPending)
	}
	return string(p.Status.Phase)
}

const nodeRolePrefix = "node-role.kubernetes.io/"

// NodeStatus is a node's STATUS cell, as kubectl shows it.
func NodeStatus(n *corev1.Node) string {
	s := "Unknown"
	switch NodeReady(n) {
	case corev1.ConditionTrue:
		s = "Ready"
	case corev1.ConditionFalse, corev1.ConditionUnknown:
		s = "NotReady"
	}
	if n.Spec.Unschedulable {
		s += ",SchedulingDisabled"
	}
	return s
}

// NodeRoles is a node's ROLES cell, from its node-role.kubernetes.io labels.
func NodeRoles(n *corev1.Node) string {
	var roles []string
	for k := range n.Labels {
		if r, ok := strings.CutPrefix(k, nodeRolePrefix); ok && r != "" {
			roles = append(roles, r)
		}
	}
	if len(roles) == 0 {
		return None
	}
	sort.Strings(roles)
	return strings.Join(roles, ",")
}

func nodeColumns() []Column {
	node := func(f func(*corev1.Node) string) func(Object) string {
		return func(o Object) string { return f(o.(*corev1.Node)) }
	}
	return []Column{
		nameColumn,
		{Name: "STATUS", Cell: node(NodeStatus)},
		{Name: "ROLES", Cell: node(NodeRoles)},
		ageColumn,
		{Name: "INTERNAL-IP", Wide: true, Cell: node(func(n *corev1.Node) string { return orNone(NodeInternalIP(n)) })},
		{Name: "POD-CIDR", Wide: true, Cell: node(func(n *corev1.Node) string { return orNone(n.Spec.PodCIDR) })},
		{Name: "BACKEND", Wide: true, Cell: node(func(n *corev1.Node) string { return orNone(n.Annotations[AnnotationBackend]) })},
	}
}

func namespaceColumns() []Column {
	return []Column{
		nameColumn,
		{Name: "STATUS", Cell: func(o Object) string { return string(o.(*corev1.Namespace).Status.Phase) }},
		ageColumn,
	}
}

// ServicePorts is a Service's PORT(S) cell: `80:30080/TCP,53/UDP`.
func ServicePorts(s *corev1.Service) string {
	if len(s.Spec.Ports) == 0 {
		return None
	}
	parts := make([]string, len(s.Spec.Ports))
	for i, p := range s.Spec.Ports {
		if p.NodePort != 0 {
			parts[i] = fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol)
		} else {
			parts[i] = fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		}
	}
	return strings.Join(parts, ",")
}

// ServiceExternalIP is a Service's EXTERNAL-IP cell, as kubectl: the
// externalName, the load balancer's addresses and externalIPs,
// `<pending>` for a LoadBalancer still without an address, else `<none>`.
func ServiceExternalIP(s *corev1.Service) string {
	switch s.Spec.Type {
	case corev1.ServiceTypeExternalName:
		return s.Spec.ExternalName
	case corev1.ServiceTypeLoadBalancer:
		var ips []string
		for _, in := range s.Status.LoadBalancer.Ingress {
			if in.IP != "" {
				ips = append(ips, in.IP)
			} else if in.Hostname != "" {
				ips = append(ips, in.Hostname)
			}
		}
		ips = append(ips, s.Spec.ExternalIPs...)
		if len(ips) == 0 {
			return "<pending>"
		}
		return strings.Join(ips, ",")
	}
	if len(s.Spec.ExternalIPs) > 0 {
		return strings.Join(s.Spec.ExternalIPs, ",")
	}
	return None
}

// SelectorString prints a label map as `a=b,c=d` (sorted), `<none>` if empty.
func SelectorString(m map[string]string) string {
	if len(m) == 0 {
		return None
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + m[k]
	}
	return strings.Join(keys, ",")
}

func labelSelectorString(sel *metav1.LabelSelector) string {
	if sel == nil {
		return None
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() {
		return None
	}
	return s.String()
}

func serviceColumns() []Column {
	svc := func(f func(*corev1.Service) string) func(Object) string {
		return func(o Object) string { return f(o.(*corev1.Service)) }
	}
	return []Column{
		nameColumn,
		{Name: "TYPE", Cell: svc(func(s *corev1.Service) string { return string(s.Spec.Type) })},
		{Name: "CLUSTER-IP", Cell: svc(func(s *corev1.Service) string { return orNone(s.Spec.ClusterIP) })},
		{Name: "EXTERNAL-IP", Cell: svc(ServiceExternalIP)},
		{Name: "PORT(S)", Cell: svc(ServicePorts)},
		ageColumn,
		{Name: "SELECTOR", Wide: true, Cell: svc(func(s *corev1.Service) string { return SelectorString(s.Spec.Selector) })},
	}
}

func endpointSliceColumns() []Column {
	sl := func(f func(*discoveryv1.EndpointSlice) string) func(Object) string {
		return func(o Object) string { return f(o.(*discoveryv1.EndpointSlice)) }
	}
	return []Column{
		nameColumn,
		{Name: "ADDRESSTYPE", Cell: sl(func(s *discoveryv1.EndpointSlice) string { return string(s.AddressType) })},
		{Name: "PORTS", Cell: sl(func(s *discoveryv1.EndpointSlice) string {
			if len(s.Ports) == 0 {
				return "<unset>"
			}
			var ps []string
			for _, p := range s.Ports {
				if p.Port != nil {
					ps = append(ps, fmt.Sprint(*p.Port))
				}
			}
			if len(ps) == 0 {
				return "<unset>"
			}
			return strings.Join(ps, ",")
		})},
		{Name: "ENDPOINTS", Cell: sl(func(s *discoveryv1.EndpointSlice) string {
			// kubectl shows the first three addresses and a count of the rest.
			var addrs []string
			for _, e := range s.Endpoints {
				addrs = append(addrs, e.Addresses...)
			}
			if len(addrs) == 0 {
				return "<unset>"
			}
			if len(addrs) > 3 {
				return strings.Join(addrs[:3], ",") + fmt.Sprintf(" + %d more...", len(addrs)-3)
			}
			return strings.Join(addrs, ",")
		})},
		ageColumn,
	}
}

func templateContainers(t *corev1.PodTemplateSpec) (names, images string) {
	var n, im []string
	for _, c := range t.Spec.Containers {
		n = append(n, c.Name)
		image := c.Image
		if image == "" {
			image = strings.Join(c.Command, " ")
		}
		im = append(im, image)
	}
	return strings.Join(n, ","), strings.Join(im, ",")
}

func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

func deploymentColumns() []Column {
	dep := func(f func(*appsv1.Deployment) string) func(Object) string {
		return func(o Object) string { return f(o.(*appsv1.Deployment)) }
	}
	return []Column{
		nameColumn,
		{Name: "READY", Cell: dep(func(d *appsv1.Deployment) string {
			return fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, replicas(d.Spec.Replicas))
		})},
		{Name: "UP-TO-DATE", Cell: dep(func(d *appsv1.Deployment) string { return fmt.Sprint(d.Status.UpdatedReplicas) })},
		{Name: "AVAILABLE", Cell: dep(func(d *appsv1.Deployment) string { return fmt.Sprint(d.Status.AvailableReplicas) })},
		ageColumn,
		{Name: "CONTAINERS", Wide: true, Cell: dep(func(d *appsv1.Deployment) string { n, _ := templateContainers(&d.Spec.Template); return n })},
		{Name: "IMAGES", Wide: true, Cell: dep(func(d *appsv1.Deployment) string { _, i := templateContainers(&d.Spec.Template); return i })},
		{Name: "SELECTOR", Wide: true, Cell: dep(func(d *appsv1.Deployment) string { return labelSelectorString(d.Spec.Selector) })},
	}
}

func replicaSetColumns() []Column {
	rs := func(f func(*appsv1.ReplicaSet) string) func(Object) string {
		return func(o Object) string { return f(o.(*appsv1.ReplicaSet)) }
	}
	return []Column{
		nameColumn,
		{Name: "DESIRED", Cell: rs(func(r *appsv1.ReplicaSet) string { return fmt.Sprint(replicas(r.Spec.Replicas)) })},
		{Name: "CURRENT", Cell: rs(func(r *appsv1.ReplicaSet) string { return fmt.Sprint(r.Status.Replicas) })},
		{Name: "READY", Cell: rs(func(r *appsv1.ReplicaSet) string { return fmt.Sprint(r.Status.ReadyReplicas) })},
		ageColumn,
		{Name: "CONTAINERS", Wide: true, Cell: rs(func(r *appsv1.ReplicaSet) string { n, _ := templateContainers(&r.Spec.Template); return n })},
		{Name: "IMAGES", Wide: true, Cell: rs(func(r *appsv1.ReplicaSet) string { _, i := templateContainers(&r.Spec.Template); return i })},
		{Name: "SELECTOR", Wide: true, Cell: rs(func(r *appsv1.ReplicaSet) string { return labelSelectorString(r.Spec.Selector) })},
	}
}
