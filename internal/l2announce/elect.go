// Package l2announce makes type LoadBalancer addresses reachable on the
// nodes' shared L2 segment, as MetalLB's L2 mode does: for each address
// exactly one node answers ARP requests, and it sends gratuitous ARP when
// it takes the address over, so the segment's neighbour caches follow a
// failover.
//
// Who announces is a pure function of what every agent sees in the store
// (Assign): the candidates are the Ready nodes on the address's segment
// (AnnotationSegment; for externalTrafficPolicy Local only those with a
// ready endpoint of the Service; for Cluster those with a ready endpoint if
// there are any, else all), and the one with the lowest hash(node, address)
// wins. Every agent computes the
// same answer, so no coordination is needed beyond the node lifecycle:
// when a node's lease expires the controller marks it NotReady/Unknown and
// the others re-elect.
//
// The address is never added to an interface: an agent killed with
// SIGKILL would leave it behind, and two nodes would answer. Answering
// from user space (an AF_PACKET socket on the underlay interface, see
// Responder) stops the moment the agent dies.
package l2announce

import (
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"sort"

	"github.com/podnet/podnet/internal/api"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// LabelExcludeFromLB keeps a node out of every election, as Kubernetes'
// service controller and MetalLB do.
const LabelExcludeFromLB = "node.kubernetes.io/exclude-from-external-load-balancers"

// AnnotationSegment is the subnet of the node's underlay interface (the one
// holding its node IP), written by its agent: a node is a candidate only for
// addresses inside it, since its ARP answers reach only that segment (with
// `cluster create --two-subnets`, nodes behind the router never announce
// for outside's segment). A node without it is a candidate for every
// address.
const AnnotationSegment = "podnet.io/l2-segment"

// onSegment: node n's answers reach ip's segment, as far as it is known.
func onSegment(n *corev1.Node, ip netip.Addr) bool {
	v, ok := n.Annotations[AnnotationSegment]
	if !ok {
		return true
	}
	p, err := netip.ParsePrefix(v)
	return err == nil && p.Contains(ip)
}

// Score is the election rank of node for ip: the lowest wins. It is the
// first 8 bytes of SHA-256 over the node name and the address (a plain
// FNV hash let the node name decide for every address), so each address
// picks its own node and a cluster's addresses spread over its nodes.
func Score(node string, ip netip.Addr) uint64 {
	h := sha256.New()
	h.Write([]byte(node))
	h.Write([]byte{0})
	b := ip.As16()
	h.Write(b[:])
	return binary.BigEndian.Uint64(h.Sum(nil))
}

// Elect returns the candidate with the lowest Score for ip (the lower name
// on a tie), or "" if there is none.
func Elect(ip netip.Addr, candidates []string) string {
	best, bestScore := "", uint64(0)
	for _, c := range candidates {
		s := Score(c, ip)
		if best == "" || s < bestScore || s == bestScore && c < best {
			best, bestScore = c, s
		}
	}
	return best
}

// Assign returns, for every IPv4 load-balancer address of the Services
// (status.loadBalancer.ingress[].ip of type LoadBalancer Services), the
// node that announces it. An address no node may announce (no Ready node;
// externalTrafficPolicy Local without a ready endpoint on a Ready node) is
// absent. Two Services claiming one address (which lbipam prevents) are
// resolved by the lower namespace/name.
func Assign(svcs []*corev1.Service, nodes []*corev1.Node, slices []*discoveryv1.EndpointSlice) map[netip.Addr]string {
	var ready []string
	byName := map[string]*corev1.Node{}
	for _, n := range nodes {
		if n.DeletionTimestamp != nil || api.NodeReady(n) != corev1.ConditionTrue {
			continue
		}
		if _, ok := n.Labels[LabelExcludeFromLB]; ok {
			continue
		}
		ready = append(ready, n.Name)
		byName[n.Name] = n
	}
	sort.Strings(ready)
	// reach keeps the nodes whose segment holds ip.
	reach := func(names []string, ip netip.Addr) []string {
		var out []string
		for _, n := range names {
			if onSegment(byName[n], ip) {
				out = append(out, n)
			}
		}
		return out
	}
	// The nodes with a ready endpoint, per Service.
	epNodes := map[string]map[string]bool{}
	for _, sl := range slices {
		svc := sl.Labels[api.LabelServiceName]
		if svc == "" {
			continue
		}
		key := sl.Namespace + "/" + svc
		for _, e := range sl.Endpoints {
			if e.NodeName == nil || *e.NodeName == "" || e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			if epNodes[key] == nil {
				epNodes[key] = map[string]bool{}
			}
			epNodes[key][*e.NodeName] = true
		}
	}
	owner := map[netip.Addr]string{} // address -> the Service that has it
	out := map[netip.Addr]string{}
	for _, svc := range svcs {
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
			continue
		}
		key := svc.Namespace + "/" + svc.Name
		var withEP []string
		for _, n := range ready {
			if epNodes[key][n] {
				withEP = append(withEP, n)
			}
		}
		for _, in := range svc.Status.LoadBalancer.Ingress {
			ip, err := netip.ParseAddr(in.IP)
			if err != nil || !ip.Is4() {
				continue
			}
			if o, ok := owner[ip]; ok && o < key {
				continue
			}
			owner[ip] = key
			cands := reach(withEP, ip)
			if len(cands) == 0 && svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
				// Any node forwards (or rejects at once when there is no
				// endpoint at all, rather than leaving clients to time out).
				cands = reach(ready, ip)
			}
			if n := Elect(ip, cands); n != "" {
				out[ip] = n
			} else {
				delete(out, ip)
			}
		}
	}
	return out
}
