package proxy

import (
	"fmt"
	"github.com/podnet/podnet/internal/api"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// endpoint is one address . port a Service port can send to.
type endpoint struct {
	addr netip.Addr
	port uint16
	// here: on this node, or on no node the slice names (a hand-written
	// slice): the endpoints a local client can be (hairpin).
	here bool
}

func (e endpoint) String() string { return fmt.Sprintf("%s:%d", e.addr, e.port) }

// elem is a map or set element the proxy owns.
type elem struct {
	set     string // map or set name
	isMap   bool
	key     string // joined with " . "
	value   string // "" for set elements
	comment string
}

func (e elem) id() string { return e.set + "|" + e.key }

func (e elem) less(o elem) bool {
	if e.set != o.set {
		return e.set < o.set
	}
	return e.key < o.key
}

// affSet is one sessionAffinity set (one per endpoint of an affinity
// group).
type affSet struct {
	timeout time.Duration
}

// udpFront is a UDP frontend: what clients send to (addr . port, or a node
// port when addr is invalid), with the endpoints behind it.
type udpFront struct {
	addr netip.Addr
	port uint16
}

// svcState is everything the kernel holds for one Service.
type svcState struct {
	chains map[string][]string // name → rules
	sets   map[string]affSet
	elems  map[string]elem // by elem.id()
	groups map[string]bool // endpoint group names (their ids are in Proxier.ids)
	// hairpin is every endpoint address that may be a pod of this node
	// (refcounted globally): only a local pod can reach itself.
	hairpin map[netip.Addr]bool
	// udp maps each UDP frontend to its endpoint addresses; a nil value
	// means the frontend rejects (no endpoints).
	udp map[udpFront]map[netip.Addr]bool
	// counts for logging
	ports, endpoints int
}

func newState() *svcState {
	return &svcState{chains: map[string][]string{}, sets: map[string]affSet{}, elems: map[string]elem{},
		groups: map[string]bool{}, hairpin: map[netip.Addr]bool{}, udp: map[udpFront]map[netip.Addr]bool{}}
}

// builder carries what building a Service's state needs from the Proxier.
type builder struct {
	node        string
	clusterCIDR netip.Prefix
	group       func(name string) (uint32, error) // allocates or returns a group id
}

func protoName(p corev1.Protocol) string {
	switch p {
	case corev1.ProtocolUDP:
		return "udp"
	case corev1.ProtocolSCTP:
		return "sctp"
	default:
		return "tcp"
	}
}

// frontIPs returns a Service's ClusterIPs and its external addresses
// (spec.externalIPs and status.loadBalancer.ingress[].ip), IPv4 only.
func frontIPs(svc *corev1.Service) (cluster, external []netip.Addr) {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
			cluster = append(cluster, a)
		}
	}
	seen := map[netip.Addr]bool{}
	add := func(s string) {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() && !seen[a] {
			seen[a] = true
			external = append(external, a)
		}
	}
	for _, s := range svc.Spec.ExternalIPs {
		add(s)
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		add(in.IP)
	}
	return cluster, external
}

// pickEndpoints returns the endpoints for a Service port: ready ones, or
// when there are none the serving-but-terminating ones (as kube-proxy),
// for the whole cluster and for this node.
func pickEndpoints(sp corev1.ServicePort, slices []*discoveryv1.EndpointSlice, node string) (cluster, local []endpoint) {
	type cand struct {
		ep          endpoint
		ready, term bool
		local       bool
	}
	var cands []cand
	type addrPort struct {
		a netip.Addr
		p uint16
	}
	seen := map[addrPort]bool{}
	for _, sl := range slices {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		var port int32 = -1
		for _, p := range sl.Ports {
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = *p.Protocol
			}
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			if name == sp.Name && proto == sp.Protocol && p.Port != nil {
				port = *p.Port
				break
			}
		}
		if port <= 0 || port > 65535 {
			continue
		}
		for _, e := range sl.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			a, err := netip.ParseAddr(e.Addresses[0])
			if err != nil || !a.Is4() {
				continue
			}
			ep := endpoint{addr: a, port: uint16(port), here: e.NodeName == nil || *e.NodeName == "" || *e.NodeName == node}
			if seen[addrPort{a, ep.port}] {
				continue
			}
			seen[addrPort{a, ep.port}] = true
			ready := e.Conditions.Ready == nil || *e.Conditions.Ready
			serving := ready
			if e.Conditions.Serving != nil {
				serving = *e.Conditions.Serving
			}
			term := e.Conditions.Terminating != nil && *e.Conditions.Terminating
			c := cand{ep: ep, ready: ready, local: e.NodeName != nil && *e.NodeName == node}
			if !ready && serving && term {
				c.term = true
			}
			if ready || c.term {
				cands = append(cands, c)
			}
		}
	}
	choose := func(onlyLocal bool) []endpoint {
		var ready, term []endpoint
		for _, c := range cands {
			if onlyLocal && !c.local {
				continue
			}
			if c.ready {
				ready = append(ready, c.ep)
			} else {
				term = append(term, c.ep)
			}
		}
		out := ready
		if len(out) == 0 {
			out = term
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].addr != out[j].addr {
				return out[i].addr.Less(out[j].addr)
			}
			return out[i].port < out[j].port
		})
		if len(out) > maxGroupEps {
			out = out[:maxGroupEps]
		}
		return out
	}
	return choose(false), choose(true)
}

// build computes the kernel state of svc (with its slices).
func (b *builder) build(svc *corev1.Service, slices []*discoveryv1.EndpointSlice) (*svcState, error) {
	st := newState()
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return st, nil
	}
	if _, other := svc.Labels[api.LabelServiceProxyName]; other {
		// Served by another component (kube-dns: the node-local DNS
		// server), as kube-proxy skips such Services.
		return st, nil
	}
	owner := svc.Namespace + "/" + svc.Name
	cluster, external := frontIPs(svc)
	if len(cluster) == 0 { // headless or not yet allocated
		return st, nil
	}
	var affTimeout time.Duration
	if svc.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		affTimeout = 10800 * time.Second
		if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil && *c.ClientIP.TimeoutSeconds > 0 {
			affTimeout = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
		}
	}
	etpLocal := svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal &&
		(svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer || len(external) > 0)
	itpLocal := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
	hasNodePorts := svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer

	for _, sp := range svc.Spec.Ports {
		proto := protoName(sp.Protocol)
		portID := fmt.Sprintf("%s/%s/%d", owner, proto, sp.Port)
		cl, lo := pickEndpoints(sp, slices, b.node)
		st.ports++
		st.endpoints += len(cl)
		nodePort := hasNodePorts && sp.NodePort > 0
		type front struct {
			key string
			ext bool
		}
		var fronts []front
		for _, a := range cluster {
			fronts = append(fronts, front{fmt.Sprintf("%s . %s . %d", a, proto, sp.Port), false})
		}
		for _, a := range external {
			fronts = append(fronts, front{fmt.Sprintf("%s . %s . %d", a, proto, sp.Port), true})
		}
		if proto == "udp" {
			var eps map[netip.Addr]bool
			if len(cl) > 0 {
				eps = map[netip.Addr]bool{}
				for _, e := range cl {
					eps[e.addr] = true
				}
			}
			for _, a := range append(append([]netip.Addr{}, cluster...), external...) {
				st.udp[udpFront{a, uint16(sp.Port)}] = eps
			}
			if nodePort {
				st.udp[udpFront{netip.Addr{}, uint16(sp.NodePort)}] = eps
			}
		}
		if len(cl) == 0 {
			// No endpoint anywhere: reject at once.
			for _, f := range fronts {
				st.add(elem{set: MapNoEndpoints, isMap: true, key: f.key, value: "goto " + ChainReject, comment: owner})
			}
			if nodePort {
				st.add(elem{set: MapNoEndpointPorts, isMap: true, key: fmt.Sprintf("%s . %d", proto, sp.NodePort), value: "goto " + ChainReject, comment: owner})
			}
			continue
		}
		for _, e := range cl {
			if e.here {
				st.hairpin[e.addr] = true
			}
		}
		// The ClusterIP entry chain.
		internal, internalGroup := cl, portID+"/cluster"
		if itpLocal {
			internal, internalGroup = lo, portID+"/local"
		}
		var svcRules []string
		if len(internal) == 0 {
			svcRules = []string{"drop"} // internalTrafficPolicy Local, no endpoint on this node
		} else {
			pick, err := b.pick(st, internalGroup, portID, owner, internal, affTimeout)
			if err != nil {
				return nil, err
			}
			svcRules = pick
			if b.clusterCIDR.IsValid() {
				svcRules = append(svcRules, fmt.Sprintf("ip saddr != %s meta mark set meta mark | 0x%08x", b.clusterCIDR.Masked(), markMasq))
			}
			svcRules = append(svcRules, "goto "+ChainDNAT)
		}
		svcChain := objName(prefixSvc, portID, svcRules...)
		st.chains[svcChain] = svcRules
		for _, f := range fronts {
			if !f.ext {
				st.add(elem{set: MapServiceIPs, isMap: true, key: f.key, value: "goto " + svcChain, comment: owner})
			}
		}
		if len(external) == 0 && !nodePort {
			continue
		}
		// The external entry chain.
		var extRules []string
		if !etpLocal {
			pick, err := b.pick(st, portID+"/cluster", portID, owner, cl, affTimeout)
			if err != nil {
				return nil, err
			}
			extRules = append(pick, fmt.Sprintf("meta mark set meta mark | 0x%08x", markMasq), "goto "+ChainDNAT)
		} else {
			if b.clusterCIDR.IsValid() {
				// Pods reaching an external address of the Service take
				// the internal path, as kube-proxy does.
				extRules = append(extRules, fmt.Sprintf("ip saddr %s goto %s", b.clusterCIDR.Masked(), svcChain))
			}
			// The node itself: masquerade, any endpoint.
			extRules = append(extRules, "fib saddr type local goto "+svcChain)
			if len(lo) == 0 {
				extRules = append(extRules, "drop") // Local policy, no endpoint here
			} else {
				pick, err := b.pick(st, portID+"/local", portID, owner, lo, affTimeout)
				if err != nil {
					return nil, err
				}
				extRules = append(extRules, pick...)
				extRules = append(extRules, "goto "+ChainDNAT)
			}
		}
		extChain := objName(prefixExt, portID, extRules...)
		st.chains[extChain] = extRules
		for _, f := range fronts {
			if f.ext {
				st.add(elem{set: MapServiceIPs, isMap: true, key: f.key, value: "goto " + extChain, comment: owner})
			}
		}
		if nodePort {
			st.add(elem{set: MapServiceNodePorts, isMap: true, key: fmt.Sprintf("%s . %d", proto, sp.NodePort), value: "goto " + extChain, comment: owner})
		}
	}
	return st, nil
}

func (st *svcState) add(e elem) { st.elems[e.id()] = e }

// pick returns the rules that choose one of eps at random (or the one a
// client is pinned to) into the mark, and adds the group's service-eps
// elements (and affinity sets) to st.
func (b *builder) pick(st *svcState, group, portID, owner string, eps []endpoint, aff time.Duration) ([]string, error) {
	id, err := b.group(group)
	if err != nil {
		return nil, err
	}
	base := uint32(markService) | id<<groupShift
	if !st.groups[group] {
		st.groups[group] = true
		for i, e := range eps {
			st.add(elem{set: MapEndpoints, isMap: true, key: markHex(base + uint32(i)),
				value: e.addr.String() + " . " + strconv.Itoa(int(e.port)), comment: group})
		}
	}
	var rules []string
	if len(eps) == 1 {
		rules = append(rules, fmt.Sprintf("meta mark set 0x%08x", base))
	} else {
		rules = append(rules, fmt.Sprintf("meta mark set numgen random mod %d offset 0x%08x", len(eps), base))
	}
	if aff > 0 {
		names := make([]string, len(eps))
		for i, e := range eps {
			names[i] = objName(prefixAff, portID, group, e.String(), aff.String())
			st.sets[names[i]] = affSet{timeout: aff}
		}
		for i := range eps {
			rules = append(rules, fmt.Sprintf("ip saddr @%s meta mark set 0x%08x", names[i], base+uint32(i)))
		}
		for i := range eps {
			rules = append(rules, fmt.Sprintf("meta mark 0x%08x update @%s { ip saddr }", base+uint32(i), names[i]))
		}
	}
	return rules, nil
}

// markHex writes a mark as the keys of service-eps are written: 0x%08x.
func markHex(v uint32) string {
	const digits = "0123456789abcdef"
	b := []byte("0x00000000")
	for i := 9; i >= 2; i-- {
		b[i] = digits[v&0xf]
		v >>= 4
	}
	return string(b)
}

// groupOwner returns the owning Service of a group name.
func groupOwner(group string) string {
	parts := strings.SplitN(group, "/", 3)
	if len(parts) < 3 {
		return ""
	}
	return parts[0] + "/" + parts[1]
}
