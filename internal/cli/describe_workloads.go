package cli

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/l2announce"
	"github.com/podnet/podnet/internal/store"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// describeTime is how describe prints a timestamp, as kubectl.
const describeTime = "Mon, 02 Jan 2006 15:04:05 -0700"

// prefixWriter is describe's output: one tabwriter (columns aligned per
// block of lines, two spaces apart, as kubectl's) with indent levels.
type prefixWriter struct{ tw *tabwriter.Writer }

func newPrefixWriter(w io.Writer) *prefixWriter {
	return &prefixWriter{tw: tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)}
}

// line writes one line at an indent level (two spaces each).
func (p *prefixWriter) line(level int, format string, args ...any) {
	fmt.Fprintf(p.tw, strings.Repeat("  ", level)+format+"\n", args...)
}

func (p *prefixWriter) Flush() error { return p.tw.Flush() }

// annotations prints annotations as kubectl's describe: `key: value`, one
// a line.
func annotations(m map[string]string) string {
	if len(m) == 0 {
		return api.None
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + ": " + m[k]
	}
	return strings.Join(keys, "\n\t")
}

func selectorString(sel *metav1.LabelSelector) string {
	if sel == nil {
		return api.None
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return api.None
	}
	return orNone(s.String())
}

func describeService(ctx context.Context, s *store.Store, o api.Object, w io.Writer) error {
	svc := o.(*corev1.Service)
	slices, err := serviceSlices(ctx, s, svc)
	if err != nil {
		return err
	}
	pw := newPrefixWriter(w)
	pw.line(0, "Name:\t%s", svc.Name)
	pw.line(0, "Namespace:\t%s", svc.Namespace)
	pw.line(0, "Labels:\t%s", kv(svc.Labels))
	pw.line(0, "Annotations:\t%s", annotations(svc.Annotations))
	pw.line(0, "Selector:\t%s", api.SelectorString(svc.Spec.Selector))
	pw.line(0, "Type:\t%s", svc.Spec.Type)
	if svc.Spec.IPFamilyPolicy != nil {
		pw.line(0, "IP Family Policy:\t%s", *svc.Spec.IPFamilyPolicy)
	}
	if len(svc.Spec.IPFamilies) > 0 {
		fams := make([]string, len(svc.Spec.IPFamilies))
		for i, f := range svc.Spec.IPFamilies {
			fams[i] = string(f)
		}
		pw.line(0, "IP Families:\t%s", strings.Join(fams, ","))
	}
	pw.line(0, "IP:\t%s", orNone(svc.Spec.ClusterIP))
	if len(svc.Spec.ClusterIPs) > 0 {
		pw.line(0, "IPs:\t%s", strings.Join(svc.Spec.ClusterIPs, ","))
	} else {
		pw.line(0, "IPs:\t%s", api.None)
	}
	if svc.Spec.ExternalName != "" {
		pw.line(0, "External Name:\t%s", svc.Spec.ExternalName)
	}
	if len(svc.Spec.ExternalIPs) > 0 {
		pw.line(0, "External IPs:\t%s", strings.Join(svc.Spec.ExternalIPs, ","))
	}
	if svc.Spec.LoadBalancerIP != "" {
		pw.line(0, "LoadBalancer IP:\t%s", svc.Spec.LoadBalancerIP)
	}
	if len(svc.Status.LoadBalancer.Ingress) > 0 {
		var ing []string
		for _, in := range svc.Status.LoadBalancer.Ingress {
			a := in.IP
			if a == "" {
				a = in.Hostname
			}
			if in.IPMode != nil {
				a += " (" + string(*in.IPMode) + ")"
			}
			ing = append(ing, a)
		}
		pw.line(0, "LoadBalancer Ingress:\t%s", strings.Join(ing, ", "))
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			pw.line(0, "Announced By (L2):\t%s", announcers(ctx, s, svc, slices))
		}
	}
	for _, p := range svc.Spec.Ports {
		name := p.Name
		if name == "" {
			name = "<unset>"
		}
		pw.line(0, "Port:\t%s\t%d/%s", name, p.Port, p.Protocol)
		if p.TargetPort.String() != "0" && p.TargetPort.String() != "" {
			pw.line(0, "TargetPort:\t%s/%s", p.TargetPort.String(), p.Protocol)
		} else {
			pw.line(0, "TargetPort:\t%d/%s", p.Port, p.Protocol)
		}
		if p.NodePort != 0 {
			pw.line(0, "NodePort:\t%s\t%d/%s", name, p.NodePort, p.Protocol)
		}
		pw.line(0, "Endpoints:\t%s", readyEndpoints(slices, p.Name))
	}
	pw.line(0, "Session Affinity:\t%s", svc.Spec.SessionAffinity)
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP && svc.Spec.SessionAffinityConfig != nil &&
		svc.Spec.SessionAffinityConfig.ClientIP != nil && svc.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds != nil {
		pw.line(0, "Session Affinity Timeout:\t%ds", *svc.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds)
	}
	if svc.Spec.ExternalTrafficPolicy != "" {
		pw.line(0, "External Traffic Policy:\t%s", svc.Spec.ExternalTrafficPolicy)
	}
	if svc.Spec.InternalTrafficPolicy != nil {
		pw.line(0, "Internal Traffic Policy:\t%s", *svc.Spec.InternalTrafficPolicy)
	}
	if svc.Spec.HealthCheckNodePort != 0 {
		pw.line(0, "HealthCheck NodePort:\t%d", svc.Spec.HealthCheckNodePort)
	}
	if len(svc.Spec.LoadBalancerSourceRanges) > 0 {
		pw.line(0, "LoadBalancer Source Ranges:\t%s", strings.Join(svc.Spec.LoadBalancerSourceRanges, ","))
	}
	pw.line(0, "Events:\t<none>")
	return pw.Flush()
}

// announcers says which node answers ARP for each load-balancer address,
// computed as every agent does (l2announce.Assign): "n1", or
// "192.168.250.200 on n1, ..." for several, "<none>" if no node may.
func announcers(ctx context.Context, s *store.Store, svc *corev1.Service, slices []*discoveryv1.EndpointSlice) string {
	k, _ := api.KindOf(&corev1.Node{})
	list, _, err := s.List(ctx, k, "")
	if err != nil {
		return "<unknown: " + err.Error() + ">"
	}
	nodes := make([]*corev1.Node, 0, len(list))
	for _, o := range list {
		nodes = append(nodes, o.(*corev1.Node))
	}
	got := l2announce.Assign([]*corev1.Service{svc}, nodes, slices)
	var out []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		ip, err := netip.ParseAddr(in.IP)
		if err != nil {
			continue
		}
		n := got[ip]
		if n == "" {
			n = api.None
		}
		if len(svc.Status.LoadBalancer.Ingress) == 1 {
			return n
		}
		out = append(out, in.IP+" on "+n)
	}
	if len(out) == 0 {
		return api.None
	}
	return strings.Join(out, ", ")
}

// serviceSlices are the EndpointSlices of a Service (by the
// kubernetes.io/service-name label), by name.
func serviceSlices(ctx context.Context, s *store.Store, svc *corev1.Service) ([]*discoveryv1.EndpointSlice, error) {
	k, err := api.KindOf(&discoveryv1.EndpointSlice{})
	if err != nil {
		return nil, err
	}
	list, _, err := s.List(ctx, k, svc.Namespace)
	if err != nil {
		return nil, err
	}
	var out []*discoveryv1.EndpointSlice
	for _, o := range list {
		if sl := o.(*discoveryv1.EndpointSlice); sl.Labels[api.LabelServiceName] == svc.Name {
			out = append(out, sl)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// readyEndpoints is describe's Endpoints line for a service port: the
// ready addresses of the slices with that port, as ip:port (the first
// three and a count of the rest, as kubectl), `<none>` if there are none.
func readyEndpoints(slices []*discoveryv1.EndpointSlice, portName string) string {
	var addrs []string
	for _, sl := range slices {
		for _, p := range sl.Ports {
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			if name != portName || p.Port == nil {
				continue
			}
			for _, e := range sl.Endpoints {
				if e.Conditions.Ready != nil && !*e.Conditions.Ready {
					continue
				}
				for _, a := range e.Addresses {
					if sl.AddressType == discoveryv1.AddressTypeIPv6 {
						a = "[" + a + "]"
					}
					addrs = append(addrs, fmt.Sprintf("%s:%d", a, *p.Port))
				}
			}
		}
	}
	if len(addrs) == 0 {
		return api.None
	}
	if len(addrs) > 3 {
		return strings.Join(addrs[:3], ",") + fmt.Sprintf(" + %d more...", len(addrs)-3)
	}
	return strings.Join(addrs, ",")
}

func describeDeployment(ctx context.Context, s *store.Store, o api.Object, w io.Writer) error {
	d := o.(*appsv1.Deployment)
	rss, err := ownedReplicaSets(ctx, s, d)
	if err != nil {
		return err
	}
	pw := newPrefixWriter(w)
	pw.line(0, "Name:\t%s", d.Name)
	pw.line(0, "Namespace:\t%s", d.Namespace)
	pw.line(0, "CreationTimestamp:\t%s", d.CreationTimestamp.Time.Format(describeTime))
	pw.line(0, "Labels:\t%s", kv(d.Labels))
	pw.line(0, "Annotations:\t%s", annotations(d.Annotations))
	pw.line(0, "Selector:\t%s", selectorString(d.Spec.Selector))
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	pw.line(0, "Replicas:\t%d desired | %d updated | %d total | %d available | %d unavailable", want, st.UpdatedReplicas, st.Replicas, st.AvailableReplicas, st.UnavailableReplicas)
	pw.line(0, "StrategyType:\t%s", d.Spec.Strategy.Type)
	pw.line(0, "MinReadySeconds:\t%d", d.Spec.MinReadySeconds)
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
		pw.line(0, "RollingUpdateStrategy:\t%s max unavailable, %s max surge", ru.MaxUnavailable.String(), ru.MaxSurge.String())
	}
	describePodTemplate(pw, d.Spec.Template)
	if len(st.Conditions) > 0 {
		pw.line(0, "Conditions:")
		pw.line(1, "Type\tStatus\tReason")
		pw.line(1, "----\t------\t------")
		for _, c := range st.Conditions {
			pw.line(1, "%s\t%s\t%s", c.Type, c.Status, c.Reason)
		}
	}
	var newRS *appsv1.ReplicaSet
	var old []string
	for i := len(rss) - 1; i >= 0; i-- {
		if newRS == nil && sameTemplate(rss[i], d) {
			newRS = rss[i]
		}
	}
	for _, rs := range rss {
		if rs != newRS && rs.Spec.Replicas != nil && *rs.Spec.Replicas != 0 {
			old = append(old, rsSummary(rs))
		}
	}
	pw.line(0, "OldReplicaSets:\t%s", orNone(strings.Join(old, ", ")))
	if newRS != nil {
		pw.line(0, "NewReplicaSet:\t%s", rsSummary(newRS))
	} else {
		pw.line(0, "NewReplicaSet:\t%s", api.None)
	}
	pw.line(0, "Events:\t<none>")
	return pw.Flush()
}

// rsSummary is how a deployment's describe names a ReplicaSet.
func rsSummary(rs *appsv1.ReplicaSet) string {
	want := int32(1)
	if rs.Spec.Replicas != nil {
		want = *rs.Spec.Replicas
	}
	return fmt.Sprintf("%s (%d/%d replicas created)", rs.Name, rs.Status.Replicas, want)
}

func describeReplicaSet(ctx context.Context, s *store.Store, o api.Object, w io.Writer) error {
	rs := o.(*appsv1.ReplicaSet)
	pods, _, err := s.List(ctx, podKindOf(), rs.Namespace)
	if err != nil {
		return err
	}
	var running, waiting, succeeded, failed int
	for _, o := range pods {
		p := o.(*corev1.Pod)
		if ref := metav1.GetControllerOf(p); ref == nil || ref.UID != rs.UID {
			continue
		}
		switch p.Status.Phase {
		case corev1.PodRunning:
			running++
		case corev1.PodSucceeded:
			succeeded++
		case corev1.PodFailed:
			failed++
		default:
			waiting++
		}
	}
	want := int32(1)
	if rs.Spec.Replicas != nil {
		want = *rs.Spec.Replicas
	}
	pw := newPrefixWriter(w)
	pw.line(0, "Name:\t%s", rs.Name)
	pw.line(0, "Namespace:\t%s", rs.Namespace)
	pw.line(0, "Selector:\t%s", selectorString(rs.Spec.Selector))
	pw.line(0, "Labels:\t%s", kv(rs.Labels))
	pw.line(0, "Annotations:\t%s", annotations(rs.Annotations))
	if ref := metav1.GetControllerOf(rs); ref != nil {
		pw.line(0, "Controlled By:\t%s/%s", ref.Kind, ref.Name)
	}
	pw.line(0, "Replicas:\t%d current / %d desired", rs.Status.Replicas, want)
	pw.line(0, "Pods Status:\t%d Running / %d Waiting / %d Succeeded / %d Failed", running, waiting, succeeded, failed)
	describePodTemplate(pw, rs.Spec.Template)
	pw.line(0, "Events:\t<none>")
	return pw.Flush()
}

// describePodTemplate prints a pod template as kubectl's describe of a
// deployment or replicaset. podnet's containers run commands, so Command
// is always shown and Image only when set.
func describePodTemplate(pw *prefixWriter, t corev1.PodTemplateSpec) {
	pw.line(0, "Pod Template:")
	pw.line(1, "Labels:\t%s", kv(t.Labels))
	if len(t.Annotations) > 0 {
		pw.line(1, "Annotations:\t%s", annotations(t.Annotations))
	}
	if t.Spec.HostNetwork {
		pw.line(1, "Host Network:\ttrue")
	}
	pw.line(1, "Containers:")
	for _, c := range t.Spec.Containers {
		pw.line(1, " %s:", c.Name)
		if c.Image != "" {
			pw.line(2, "Image:\t%s", c.Image)
		}
		if len(c.Ports) == 0 {
			pw.line(2, "Port:\t<none>")
			pw.line(2, "Host Port:\t<none>")
		}
		for _, p := range c.Ports {
			name := ""
			if p.Name != "" {
				name = " (" + p.Name + ")"
			}
			pw.line(2, "Port:\t%d/%s%s", p.ContainerPort, p.Protocol, name)
			pw.line(2, "Host Port:\t%d/%s", p.HostPort, p.Protocol)
		}
		if len(c.Command) > 0 {
			pw.line(2, "Command:")
			for _, a := range c.Command {
				pw.line(3, "%s", a)
			}
		}
		if len(c.Args) > 0 {
			pw.line(2, "Args:")
			for _, a := range c.Args {
				pw.line(3, "%s", a)
			}
		}
		for _, pr := range []struct {
			what string
			p    *corev1.Probe
		}{{"Liveness", c.LivenessProbe}, {"Readiness", c.ReadinessProbe}, {"Startup", c.StartupProbe}} {
			if pr.p != nil {
				pw.line(2, "%s:\t%s", pr.what, probeString(pr.p))
			}
		}
		if len(c.Env) == 0 {
			pw.line(2, "Environment:\t<none>")
		} else {
			pw.line(2, "Environment:")
			for _, e := range c.Env {
				v := e.Value
				if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
					v = fmt.Sprintf(" (%s:%s)", e.ValueFrom.FieldRef.APIVersion, e.ValueFrom.FieldRef.FieldPath)
				}
				pw.line(3, "%s:\t%s", e.Name, v)
			}
		}
		pw.line(2, "Mounts:\t<none>")
	}
	pw.line(1, "Volumes:\t<none>")
}

// probeString is a probe as describe shows it:
// `http-get http://:8080/healthz delay=0s timeout=1s period=10s #success=1 #failure=3`.
func probeString(p *corev1.Probe) string {
	var what string
	switch h := p.ProbeHandler; {
	case h.HTTPGet != nil:
		scheme := strings.ToLower(string(h.HTTPGet.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		what = fmt.Sprintf("http-get %s://%s:%s%s", scheme, h.HTTPGet.Host, h.HTTPGet.Port.String(), h.HTTPGet.Path)
	case h.TCPSocket != nil:
		what = fmt.Sprintf("tcp-socket %s:%s", h.TCPSocket.Host, h.TCPSocket.Port.String())
	case h.Exec != nil:
		what = fmt.Sprintf("exec %v", h.Exec.Command)
	case h.GRPC != nil:
		what = fmt.Sprintf("grpc <pod>:%d", h.GRPC.Port)
	default:
		what = "unknown"
	}
	sec := func(n int32) time.Duration { return time.Duration(n) * time.Second }
	return fmt.Sprintf("%s delay=%s timeout=%s period=%s #success=%d #failure=%d", what,
		sec(p.InitialDelaySeconds), sec(p.TimeoutSeconds), sec(p.PeriodSeconds), p.SuccessThreshold, p.FailureThreshold)
}

func describeEndpointSlice(_ context.Context, _ *store.Store, o api.Object, w io.Writer) error {
	sl := o.(*discoveryv1.EndpointSlice)
	unset := func(s *string) string {
		if s == nil || *s == "" {
			return "<unset>"
		}
		return *s
	}
	cond := func(b *bool) string {
		if b == nil {
			return "<unset>"
		}
		return fmt.Sprint(*b)
	}
	pw := newPrefixWriter(w)
	pw.line(0, "Name:\t%s", sl.Name)
	pw.line(0, "Namespace:\t%s", sl.Namespace)
	pw.line(0, "Labels:\t%s", kv(sl.Labels))
	pw.line(0, "Annotations:\t%s", annotations(sl.Annotations))
	pw.line(0, "AddressType:\t%s", sl.AddressType)
	if len(sl.Ports) == 0 {
		pw.line(0, "Ports:\t<unset>")
	} else {
		pw.line(0, "Ports:")
		pw.line(1, "Name\tPort\tProtocol")
		pw.line(1, "----\t----\t--------")
		for _, p := range sl.Ports {
			port := "<unset>"
			if p.Port != nil {
				port = fmt.Sprint(*p.Port)
			}
			proto := "<unset>"
			if p.Protocol != nil {
				proto = string(*p.Protocol)
			}
			pw.line(1, "%s\t%s\t%s", unset(p.Name), port, proto)
		}
	}
	if len(sl.Endpoints) == 0 {
		pw.line(0, "Endpoints:\t<none>")
	} else {
		pw.line(0, "Endpoints:")
	}
	for _, e := range sl.Endpoints {
		pw.line(1, "- Addresses:\t%s", strings.Join(e.Addresses, ","))
		pw.line(2, "Conditions:")
		pw.line(3, "Ready:\t%s", cond(e.Conditions.Ready))
		pw.line(3, "Serving:\t%s", cond(e.Conditions.Serving))
		pw.line(3, "Terminating:\t%s", cond(e.Conditions.Terminating))
		pw.line(2, "Hostname:\t%s", unset(e.Hostname))
		if e.TargetRef != nil {
			pw.line(2, "TargetRef:\t%s/%s", e.TargetRef.Kind, e.TargetRef.Name)
		} else {
			pw.line(2, "TargetRef:\t<unset>")
		}
		pw.line(2, "NodeName:\t%s", unset(e.NodeName))
		pw.line(2, "Zone:\t%s", unset(e.Zone))
	}
	pw.line(0, "Events:\t<none>")
	return pw.Flush()
}
