package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"github.com/podnet/podnet/internal/nft"
	"sigs.k8s.io/knftables"
)

// Static objects of the proxy's part of `inet podnet`. README.md explains
// the layout and the measurements behind it.
const (
	// maps
	MapServiceIPs       = "service-ips"            // daddr . proto . port : verdict (ClusterIPs, externalIPs, LB IPs)
	MapServiceNodePorts = "service-nodeports"      // proto . nodePort : verdict (fib daddr type local)
	MapNoEndpoints      = "service-noep"           // daddr . proto . port : goto services-reject
	MapNoEndpointPorts  = "service-noep-nodeports" // proto . nodePort : goto services-reject
	MapEndpoints        = "service-eps"            // mark : endpoint addr . port (one global map)
	SetHairpin          = "service-hairpin"        // ep . ep: a pod reaching itself through a Service

	// chains
	ChainDNAT   = "services-dnat"   // the only rules that read service-eps
	ChainReject = "services-reject" // tcp reset / icmp port unreachable

	layoutPrefix = "services-layout-"
)

// Packet mark bits. A service entry chain overwrites the mark with
// markService | group<<groupShift | endpoint index (the key of
// service-eps), then may add markMasq; services-dnat looks the key up with
// markMasq masked off; services-masq clears the mark.
const (
	markService = 0x80000000
	markMasq    = 0x40000000
	keyMask     = 0xbfffffff // mark & keyMask = the service-eps key
	groupShift  = 12         // up to 4096 endpoints per group
	maxGroupEps = 1 << groupShift
	maxGroupID  = (1 << (30 - groupShift)) - 1
)

// Chain and set name prefixes of per-Service objects. Names are
// <prefix><ns>/<name>/<proto>/<port>-<hash of content>, so a name says
// whose object it is and an equal name means equal content: a sync never
// needs to read a rule back, and a restart diffs names.
const (
	prefixSvc = "svc-" // ClusterIP entry
	prefixExt = "ext-" // NodePort / externalIP / LoadBalancer entry
	prefixAff = "aff-" // sessionAffinity set, one per endpoint
)

type staticChain struct {
	name  string
	rules []string
}

// static returns the proxy's fixed chains for a cluster and service CIDR.
func staticChains(clusterCIDR, serviceCIDR netip.Prefix) []staticChain {
	filter := []string{
		"ip daddr . meta l4proto . th dport vmap @" + MapNoEndpoints,
		"fib daddr type local meta l4proto . th dport vmap @" + MapNoEndpointPorts,
	}
	if serviceCIDR.IsValid() {
		// Still addressed to the service range after dstnat: an unallocated
		// IP or a port no Service has. Never route it out. An address of
		// the range the node holds itself (the node-local cluster DNS on
		// its dummy link, whose traffic is notrack and never DNAT'd) is
		// delivered.
		filter = append(filter, fmt.Sprintf("ip daddr %s fib daddr type != local goto %s", serviceCIDR.Masked(), ChainReject))
	}
	dnat := []string{}
	for _, p := range []string{"tcp", "udp", "sctp"} {
		dnat = append(dnat, fmt.Sprintf("meta l4proto %s dnat ip to meta mark & 0x%08x map @%s", p, keyMask, MapEndpoints))
	}
	return []staticChain{
		{nft.ChainServices, []string{
			"ip daddr . meta l4proto . th dport vmap @" + MapServiceIPs,
			"fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @" + MapServiceNodePorts,
		}},
		{ChainDNAT, dnat},
		{nft.ChainServicesMasq, []string{
			fmt.Sprintf("meta mark & 0x%08x == 0 return", markService),
			fmt.Sprintf("meta mark & 0x%08x != 0 meta mark set 0 masquerade", markMasq),
			"ip saddr . ip daddr @" + SetHairpin + " meta mark set 0 masquerade",
			// Service traffic that keeps its source: skip pod-masq, whose
			// published-port hairpin rule would masquerade pod to pod.
			"meta mark set 0 accept",
		}},
		{nft.ChainServicesFilter, filter},
		{ChainReject, []string{
			"meta l4proto tcp reject with tcp reset",
			"reject",
		}},
	}
}

func staticMaps() []knftables.Map {
	return []knftables.Map{
		{Name: MapServiceIPs, Type: "ipv4_addr . inet_proto . inet_service : verdict"},
		{Name: MapServiceNodePorts, Type: "inet_proto . inet_service : verdict"},
		{Name: MapNoEndpoints, Type: "ipv4_addr . inet_proto . inet_service : verdict"},
		{Name: MapNoEndpointPorts, Type: "inet_proto . inet_service : verdict"},
		{Name: MapEndpoints, Type: "mark : ipv4_addr . inet_service"},
	}
}

func staticSets() []knftables.Set {
	return []knftables.Set{{Name: SetHairpin, Type: "ipv4_addr . ipv4_addr"}}
}

// layoutName is the marker set of this build's static layout for these
// CIDRs (podnet-cni has its own, layout-<hash>).
func layoutName(clusterCIDR, serviceCIDR netip.Prefix) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%v|%v|%v|", nft.BaseLayout(), staticChains(clusterCIDR, serviceCIDR), staticMaps(), staticSets())
	return layoutPrefix + hex.EncodeToString(h.Sum(nil))[:12]
}

// ownedChain reports whether name is a per-Service chain, and its owner.
func ownerOf(name string) (owner string, ok bool) {
	for _, p := range []string{prefixSvc, prefixExt, prefixAff} {
		if rest, found := strings.CutPrefix(name, p); found {
			parts := strings.SplitN(rest, "/", 3)
			if len(parts) == 3 {
				return parts[0] + "/" + parts[1], true
			}
		}
	}
	return "", false
}

// objName is a content-addressed per-Service object name.
func objName(prefix, portID string, content ...string) string {
	h := sha256.New()
	for _, c := range content {
		h.Write([]byte(c))
		h.Write([]byte{0})
	}
	return prefix + portID + "-" + hex.EncodeToString(h.Sum(nil))[:8]
}
