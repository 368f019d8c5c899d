package kubernetes

import (
	"errors"
	"net/netip"
	"sort"
	"strings"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// The labels of the schema: <service>.<ns>.svc.<zone> and
// <a-b-c-d>.<ns>.pod.<zone>.
const (
	svcLabel = "svc"
	podLabel = "pod"
)

var (
	// errNoItems: the name does not exist (NXDOMAIN, or fallthrough).
	errNoItems = errors.New("no items found")
	// errInvalid: the name cannot be a record of the schema (NXDOMAIN).
	errInvalid = errors.New("invalid query name")
)

// request is a forward name split into the schema's parts, right to left:
// [[_port._proto.|endpoint.]service.]namespace.svc|pod.zone. An empty
// part was not in the name; "*" or "any" match everything.
type request struct {
	port, protocol, endpoint, service, namespace, podOrSvc string
}

func stripUnderscore(s string) string {
	if strings.HasPrefix(s, "_") {
		return s[1:]
	}
	return s
}

// parseRequest splits name (lower-cased, in zone).
func parseRequest(name, zone string) (request, error) {
	var r request
	base := strings.TrimSuffix(strings.TrimSuffix(name, zone), ".")
	if zone == "." {
		base = strings.TrimSuffix(name, ".")
	}
	if base == "" || base == svcLabel || base == podLabel {
		return r, nil // the apex and svc/pod themselves: NODATA
	}
	segs := dns.SplitDomainName(base)
	last := len(segs) - 1
	r.podOrSvc = segs[last]
	if r.podOrSvc != svcLabel && r.podOrSvc != podLabel {
		return r, errInvalid
	}
	if last--; last < 0 {
		return r, nil
	}
	r.namespace = segs[last]
	if last--; last < 0 {
		return r, nil
	}
	r.service = segs[last]
	if last--; last < 0 {
		return r, nil
	}
	switch last {
	case 0:
		r.endpoint = segs[0]
	case 1:
		r.port, r.protocol = stripUnderscore(segs[0]), stripUnderscore(segs[1])
	default:
		return r, errInvalid
	}
	return r, nil
}

func wildcard(s string) bool { return s == "*" || s == "any" }

// match compares a request part a (empty or wild: anything) with b.
func match(a, b string) bool {
	return a == "" || wildcard(a) || strings.EqualFold(a, b)
}

// record is one answer's worth of data: an address (or, for ExternalName,
// a target name) at port under the owner name key, which SRV targets use.
type record struct {
	host   string // IP, or a name for ExternalName
	port   int    // -1 when the endpoint has no port
	target string // e.g. web.default.svc.cluster.local. or 10-0-0-5.web.default.svc.cluster.local.
}

func (r record) isIP() bool { _, err := netip.ParseAddr(r.host); return err == nil }

// endpointHostname is the endpoint's DNS label: its hostname, else (with
// endpoint_pod_names) its pod's name, else its address with dashes.
func (k *Kubernetes) endpointHostname(ep discoveryv1.Endpoint, addr string) string {
	if ep.Hostname != nil && *ep.Hostname != "" {
		return strings.ToLower(*ep.Hostname)
	}
	if k.endpointPodNames && ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" && ep.TargetRef.Name != "" {
		return strings.ToLower(ep.TargetRef.Name)
	}
	if strings.Contains(addr, ".") {
		return strings.ReplaceAll(addr, ".", "-")
	}
	return strings.ToLower(strings.ReplaceAll(addr, ":", "-"))
}

func ready(ep discoveryv1.Endpoint) bool {
	return ep.Conditions.Ready == nil || *ep.Conditions.Ready
}

// namespaceExposed: the namespace is listed by `namespaces` (when given),
// exists, and matches namespace_labels.
func (k *Kubernetes) namespaceExposed(ns string) bool {
	if len(k.namespaces) > 0 && !k.namespaces[ns] {
		return false
	}
	n, ok := k.cache.nss[ns]
	if !ok {
		return false
	}
	return k.cache.nsSel == nil || k.cache.nsSel.Matches(labels.Set(n.Labels))
}

func headless(s *corev1.Service) bool { return s.Spec.ClusterIP == corev1.ClusterIPNone }

// candidates returns the services a request may name, sorted so answers
// are stable. The caller holds the cache's read lock.
func (k *Kubernetes) candidates(r request) []*corev1.Service {
	if !wildcard(r.namespace) && !wildcard(r.service) {
		if s := k.cache.svcs[key(r.namespace, r.service)]; s != nil {
			return []*corev1.Service{s}
		}
		return nil
	}
	var out []*corev1.Service
	for _, s := range k.cache.svcs {
		if match(r.namespace, s.Namespace) && match(r.service, s.Name) && k.namespaceExposed(s.Namespace) {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return key(out[i].Namespace, out[i].Name) < key(out[j].Namespace, out[j].Name) })
	return out
}

// findServices returns the records of a svc request, or errNoItems. A
// request without a service name in an existing namespace has none and
// no error (NODATA).
func (k *Kubernetes) findServices(r request, zone string) ([]record, error) {
	if !wildcard(r.namespace) && !k.namespaceExposed(r.namespace) {
		return nil, errNoItems
	}
	if r.service == "" {
		return nil, nil
	}
	var out []record
	err := errNoItems
	for _, s := range k.candidates(r) {
		name := dns.Fqdn(s.Name + "." + s.Namespace + "." + svcLabel + "." + strings.TrimSuffix(zone, "."))
		if zone == "." {
			name = s.Name + "." + s.Namespace + "." + svcLabel + "."
		}
		if s.Spec.Type == corev1.ServiceTypeExternalName {
			if r.endpoint != "" {
				continue
			}
			err = nil
			target := dns.Fqdn(strings.ToLower(s.Spec.ExternalName))
			out = append(out, record{host: target, port: -1, target: target})
			for _, p := range s.Spec.Ports {
				if match(r.port, p.Name) && match(r.protocol, string(p.Protocol)) {
					out = append(out, record{host: target, port: int(p.Port), target: target})
				}
			}
			continue
		}
		if headless(s) || r.endpoint != "" {
			if k.noEndpoints {
				continue
			}
			seen := map[string]bool{}
			for _, sl := range sortedSlices(k.cache.slicesBySvc[key(s.Namespace, s.Name)]) {
				ports := sl.Ports
				if len(ports) == 0 {
					ports = []discoveryv1.EndpointPort{{}} // no port: A records only
				}
				for _, ep := range sl.Endpoints {
					if !ready(ep) {
						continue
					}
					for _, a := range ep.Addresses {
						a = canonIP(a)
						host := k.endpointHostname(ep, a)
						if r.endpoint != "" && !match(r.endpoint, host) {
							continue
						}
						for _, p := range ports {
							pname, proto, port := "", "", -1
							if p.Name != nil {
								pname = *p.Name
							}
							if p.Protocol != nil {
								proto = string(*p.Protocol)
							}
							if p.Port != nil {
								port = int(*p.Port)
							}
							if (r.port != "" || r.protocol != "") && port < 0 {
								continue
							}
							if !match(r.port, pname) || !match(r.protocol, proto) {
								continue
							}
							rec := record{host: a, port: port, target: host + "." + name}
							id := rec.host + "|" + rec.target + "|" + itoa(port)
							if seen[id] {
								continue
							}
							seen[id] = true
							err = nil
							out = append(out, rec)
						}
					}
				}
			}
			continue
		}
		if k.ignoreEmpty && !k.hasReadyEndpoint(s) {
			continue
		}
		for _, p := range s.Spec.Ports {
			if !match(r.port, p.Name) || !match(r.protocol, string(p.Protocol)) {
				continue
			}
			err = nil
			for _, ip := range serviceIPs(s) {
				out = append(out, record{host: ip, port: int(p.Port), target: name})
			}
		}
	}
	return out, err
}

func (k *Kubernetes) hasReadyEndpoint(s *corev1.Service) bool {
	for _, sl := range k.cache.slicesBySvc[key(s.Namespace, s.Name)] {
		for _, ep := range sl.Endpoints {
			if ready(ep) && len(ep.Addresses) > 0 {
				return true
			}
		}
	}
	return false
}

func sortedSlices(m map[string]*discoveryv1.EndpointSlice) []*discoveryv1.EndpointSlice {
	out := make([]*discoveryv1.EndpointSlice, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func itoa(i int) string {
	if i < 0 {
		return "-" + itoa(-i)
	}
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// findPods answers <a-b-c-d>.<ns>.pod.<zone> as the pods mode says:
// disabled never, insecure for any well-formed address, verified only for
// a pod of that namespace with that IP.
func (k *Kubernetes) findPods(r request, zone string) ([]record, error) {
	if k.podMode == podsDisabled {
		return nil, errNoItems
	}
	if !wildcard(r.namespace) && !k.namespaceExposed(r.namespace) {
		return nil, errNoItems
	}
	if r.service == "" {
		return nil, nil
	}
	var ip string
	if strings.Count(r.service, "-") == 3 && !strings.Contains(r.service, "--") {
		ip = strings.ReplaceAll(r.service, "-", ".")
	} else {
		ip = strings.ReplaceAll(r.service, "-", ":")
	}
	a, perr := netip.ParseAddr(ip)
	if perr != nil {
		return nil, errNoItems
	}
	ip = a.Unmap().String()
	name := r.service + "." + r.namespace + "." + podLabel + "." + zone
	if k.podMode == podsInsecure {
		return []record{{host: ip, port: -1, target: name}}, nil
	}
	var out []record
	for _, p := range k.cache.podsByIP[ip] {
		if match(r.namespace, p.Namespace) {
			out = append(out, record{host: ip, port: -1, target: name})
			break
		}
	}
	if len(out) == 0 {
		return nil, errNoItems
	}
	return out, nil
}

// reverse returns the names of ip: the services whose cluster IP it is,
// else the endpoints with that address.
func (k *Kubernetes) reverse(ip string) []string {
	zone := k.primaryZone()
	join := func(parts ...string) string {
		n := strings.Join(parts, ".") + "."
		if zone != "." {
			n += zone
		}
		return n
	}
	var names []string
	for _, s := range sortedServices(k.cache.svcByIP[ip]) {
		if len(k.namespaces) > 0 && !k.namespaceExposed(s.Namespace) {
			continue
		}
		return []string{join(s.Name, s.Namespace, svcLabel)}
	}
	seen := map[string]bool{}
	for _, sl := range sortedSlices(k.cache.sliceByIP[ip]) {
		if len(k.namespaces) > 0 && !k.namespaceExposed(sl.Namespace) {
			continue
		}
		svc := sl.Labels["kubernetes.io/service-name"]
		for _, ep := range sl.Endpoints {
			for _, a := range ep.Addresses {
				if canonIP(a) != ip {
					continue
				}
				n := join(k.endpointHostname(ep, ip), svc, sl.Namespace, svcLabel)
				if !seen[n] {
					seen[n] = true
					names = append(names, n)
				}
			}
		}
	}
	return names
}

func sortedServices(m map[string]*corev1.Service) []*corev1.Service {
	out := make([]*corev1.Service, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return key(out[i].Namespace, out[i].Name) < key(out[j].Namespace, out[j].Name) })
	return out
}

// reverseIP is the address a PTR name stands for ("5.0.96.10.in-addr.arpa."
// → 10.96.0.5), or "" when the name is not a whole address.
func reverseIP(name string) string {
	name = strings.ToLower(name)
	switch {
	case strings.HasSuffix(name, ".in-addr.arpa."):
		l := dns.SplitDomainName(strings.TrimSuffix(name, ".in-addr.arpa."))
		if len(l) != 4 {
			return ""
		}
		for i, j := 0, len(l)-1; i < j; i, j = i+1, j-1 {
			l[i], l[j] = l[j], l[i]
		}
		a, err := netip.ParseAddr(strings.Join(l, "."))
		if err != nil || !a.Is4() {
			return ""
		}
		return a.String()
	case strings.HasSuffix(name, ".ip6.arpa."):
		l := dns.SplitDomainName(strings.TrimSuffix(name, ".ip6.arpa."))
		if len(l) != 32 {
			return ""
		}
		var b strings.Builder
		for i := len(l) - 1; i >= 0; i-- {
			if len(l[i]) != 1 {
				return ""
			}
			b.WriteString(l[i])
			if i%4 == 0 && i > 0 {
				b.WriteByte(':')
			}
		}
		a, err := netip.ParseAddr(b.String())
		if err != nil || !a.Is6() {
			return ""
		}
		return a.String()
	}
	return ""
}

func isReverse(zone string) bool {
	return zone == "in-addr.arpa." || zone == "ip6.arpa." || strings.HasSuffix(zone, ".in-addr.arpa.") || strings.HasSuffix(zone, ".ip6.arpa.")
}
