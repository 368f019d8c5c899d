package cluster

import (
	"fmt"
	"net/netip"
	"regexp"
	"time"

	"github.com/podnet/podnet/internal/agent"
	"github.com/podnet/podnet/internal/api"
)

// Spec is what the user asks for.
type Spec struct {
	Name        string `json:"name"`
	Nodes       int    `json:"nodes"`
	Backend     string `json:"backend"`
	TwoSubnets  bool   `json:"twoSubnets,omitempty"`
	ClusterCIDR string `json:"clusterCIDR"`
	// EtcdMembers, if not 0, puts the store in an external etcd cluster of
	// that many members (Debian's etcd, one host each) instead of the
	// server's embedded etcd; the server then runs only the controllers.
	EtcdMembers int `json:"etcdMembers,omitempty"`
	// CNIVersion is passed to every agent as --cni-version (empty: the
	// agent's default).
	CNIVersion string `json:"cniVersion,omitempty"`
	// LBRange is the load-balancer pool passed to the server as
	// --lb-range: by default DefaultLBRange, on the outside host's
	// segment (subnet A) and clear of the router (.1), control plane
	// (.2), outside (.3), etcd members (.4-.8) and nodes (.11-.210 with
	// MaxNodes; a range overlapping node addresses is refused).
	LBRange string `json:"lbRange,omitempty"`
	// ServiceCIDR, NodePortRange and PodEvictionTimeout are passed to the
	// server as --service-cluster-ip-range, --service-node-port-range and
	// --pod-eviction-timeout when set (empty/zero: the server's defaults).
	// NodeLeaseTTL is passed to every agent as --node-lease-ttl when set:
	// how long after an agent dies its node turns NotReady (and its
	// load-balancer addresses move).
	NodeLeaseTTL       time.Duration `json:"nodeLeaseTTL,omitempty"`
	ServiceCIDR        string        `json:"serviceCIDR,omitempty"`
	NodePortRange      string        `json:"nodePortRange,omitempty"`
	PodEvictionTimeout time.Duration `json:"podEvictionTimeout,omitempty"`
}

// Limits of a Spec.
const (
	MaxNodes   = 200
	maxNameLen = 24
	// MaxEtcdMembers bounds Spec.EtcdMembers.
	MaxEtcdMembers = 5
	// EtcdPort is the etcd client port on the underlay (the control
	// plane's, or each external member's).
	EtcdPort = 2379
	// EtcdPeerPort is an external member's peer port.
	EtcdPeerPort = 2380
)

// Roles of hosts.
const (
	RoleControlPlane = "control-plane"
	RoleOutside      = "outside"
	RoleRouter       = "router"
	RoleNode         = "node"
	// RoleEtcd is a member of an external etcd cluster.
	RoleEtcd = "etcd"
)

// Names inside every host and switch.
const (
	// BridgeName is the switch's bridge.
	BridgeName = "pnbr0"
	// UplinkName is a host's first cable; the router's second is pneth1.
	UplinkName = "pneth0"
)

var nameRE = regexp.MustCompile(`^[a-z]([a-z0-9-]*[a-z0-9])?$`)

// Default fills unset fields.
func (s *Spec) Default() {
	if s.Name == "" {
		s.Name = "podnet"
	}
	if s.Nodes == 0 {
		s.Nodes = 3
	}
	if s.Backend == "" {
		s.Backend = api.BackendVXLAN
	}
	if s.ClusterCIDR == "" {
		s.ClusterCIDR = "10.244.0.0/16"
	}
	if s.LBRange == "" {
		s.LBRange = DefaultLBRange
	}
}

// Validate checks the spec; errors name the flag.
func (s *Spec) Validate() error {
	if len(s.Name) > maxNameLen || !nameRE.MatchString(s.Name) {
		return fmt.Errorf("--name %q: want lower-case letters, digits and '-', starting with a letter, at most %d characters", s.Name, maxNameLen)
	}
	if s.Nodes < 1 || s.Nodes > MaxNodes {
		return fmt.Errorf("--nodes %d: want 1 to %d", s.Nodes, MaxNodes)
	}
	switch s.Backend {
	case api.BackendVXLAN, api.BackendHostGW:
	default:
		return fmt.Errorf("--backend %q: want %s or %s", s.Backend, api.BackendVXLAN, api.BackendHostGW)
	}
	if p, err := netip.ParsePrefix(s.ClusterCIDR); err != nil || p.Masked() != p || p.Bits() > 22 {
		return fmt.Errorf("--cluster-cidr %q: want a network CIDR of /22 or larger", s.ClusterCIDR)
	}
	if s.EtcdMembers < 0 || s.EtcdMembers > MaxEtcdMembers {
		return fmt.Errorf("--etcd-members %d: want 1 to %d (or 0: the server's embedded etcd)", s.EtcdMembers, MaxEtcdMembers)
	}
	r, err := api.ParseAddrRange(s.LBRange)
	if err != nil {
		return fmt.Errorf("--lb-range: %w", err)
	}
	if !subnetA.Contains(r.First) || !subnetA.Contains(r.Last) {
		return fmt.Errorf("--lb-range %s: want addresses of the outside host's segment %s, so outside reaches them on L2", r, subnetA)
	}
	first, last := hostAddr(subnetA, 1).Addr(), hostAddr(subnetA, 10+s.Nodes).Addr()
	if !r.Last.Less(first) && !last.Less(r.First) {
		return fmt.Errorf("--lb-range %s: overlaps the hosts' addresses %s-%s", r, first, last)
	}
	if s.NodeLeaseTTL != 0 && (s.NodeLeaseTTL < 2*time.Second || s.NodeLeaseTTL%time.Second != 0) {
		return fmt.Errorf("--node-lease-ttl %s: want whole seconds, at least 2s", s.NodeLeaseTTL)
	}
	if s.CNIVersion != "" {
		if err := agent.CheckCNIVersion(s.CNIVersion); err != nil {
			return fmt.Errorf("--cni-version: %w", err)
		}
	}
	return nil
}

// Switch is an L2 segment: a bridge inside a namespace of its own.
type Switch struct {
	NetNS  string       `json:"netns"`
	Bridge string       `json:"bridge"`
	Subnet netip.Prefix `json:"subnet"`
}

// Iface is a host's cable to a switch: Name inside the host, Port on the
// switch's bridge.
type Iface struct {
	Name   string       `json:"name"`
	Switch string       `json:"switch"` // the switch's netns
	Port   string       `json:"port"`
	Addr   netip.Prefix `json:"addr"`
}

// Route is a static route on a host.
type Route struct {
	Dst netip.Prefix `json:"dst"`
	Via netip.Addr   `json:"via"`
}

// Host is a namespace standing for a machine.
type Host struct {
	Role    string  `json:"role"`
	Name    string  `json:"name"` // the node name for nodes, else the role
	NetNS   string  `json:"netns"`
	Ifaces  []Iface `json:"ifaces"`
	Routes  []Route `json:"routes,omitempty"`
	Forward bool    `json:"forward,omitempty"`
}

// IP is the host's first address.
func (h *Host) IP() netip.Addr { return h.Ifaces[0].Addr.Addr() }

// Topology is the planned cluster: switches and hosts.
type Topology struct {
	Spec     Spec     `json:"spec"`
	Switches []Switch `json:"switches"`
	Hosts    []Host   `json:"hosts"`
}

// NetNSPrefix is the prefix of every namespace of the named cluster.
func NetNSPrefix(cluster string) string { return "podnet-" + cluster + "-" }

// EtcdMemberName is the name of an external etcd's i-th member (from 1),
// also its host's name.
func EtcdMemberName(i int) string { return fmt.Sprintf("etcd%d", i) }

// NodeName is the name of the cluster's i-th node (from 1).
func NodeName(cluster string, i int) string { return fmt.Sprintf("%s-n%d", cluster, i) }

// DefaultLBRange is a local cluster's load-balancer pool.
const DefaultLBRange = "192.168.250.200-192.168.250.250"

var (
	subnetA = netip.MustParsePrefix("192.168.250.0/24")
	subnetB = netip.MustParsePrefix("192.168.251.0/24")
)

func hostAddr(subnet netip.Prefix, last int) netip.Prefix {
	b := subnet.Addr().As4()
	b[3] = byte(last)
	return netip.PrefixFrom(netip.AddrFrom4(b), subnet.Bits())
}

// Plan computes the topology of a valid spec. It is pure: the same spec
// always gives the same names and addresses.
func Plan(s Spec) Topology {
	pre := NetNSPrefix(s.Name)
	t := Topology{Spec: s}
	swA := Switch{NetNS: pre + "sw", Bridge: BridgeName, Subnet: subnetA}
	t.Switches = append(t.Switches, swA)
	var swB Switch
	routerA := hostAddr(subnetA, 1).Addr()
	if s.TwoSubnets {
		swB = Switch{NetNS: pre + "sw2", Bridge: BridgeName, Subnet: subnetB}
		t.Switches = append(t.Switches, swB)
	}
	// toB is the route a host on subnet A needs when there are two.
	toB := func() []Route {
		if !s.TwoSubnets {
			return nil
		}
		return []Route{{Dst: subnetB, Via: routerA}}
	}
	if s.TwoSubnets {
		t.Hosts = append(t.Hosts, Host{
			Role: RoleRouter, Name: RoleRouter, NetNS: pre + "router", Forward: true,
			Ifaces: []Iface{
				{Name: UplinkName, Switch: swA.NetNS, Port: "pnp-rt", Addr: hostAddr(subnetA, 1)},
				{Name: "pneth1", Switch: swB.NetNS, Port: "pnp-rt", Addr: hostAddr(subnetB, 1)},
			},
		})
	}
	t.Hosts = append(t.Hosts,
		Host{Role: RoleControlPlane, Name: RoleControlPlane, NetNS: pre + "cp",
			Ifaces: []Iface{{Name: UplinkName, Switch: swA.NetNS, Port: "pnp-cp", Addr: hostAddr(subnetA, 2)}},
			Routes: toB()},
		Host{Role: RoleOutside, Name: RoleOutside, NetNS: pre + "outside",
			Ifaces: []Iface{{Name: UplinkName, Switch: swA.NetNS, Port: "pnp-out", Addr: hostAddr(subnetA, 3)}},
			Routes: toB()},
	)
	for i := 1; i <= s.EtcdMembers; i++ {
		t.Hosts = append(t.Hosts, Host{Role: RoleEtcd, Name: EtcdMemberName(i), NetNS: pre + EtcdMemberName(i),
			Ifaces: []Iface{{Name: UplinkName, Switch: swA.NetNS, Port: fmt.Sprintf("pnp-e%d", i), Addr: hostAddr(subnetA, 3+i)}},
			Routes: toB()})
	}
	for i := 1; i <= s.Nodes; i++ {
		t.Hosts = append(t.Hosts, nodeHost(s, i, NodeName(s.Name, i)))
	}
	return t
}

// nodeHost plans the cluster's i-th node host (from 1), named name: its
// namespace <prefix>n<i>, its cable pnp-n<i> and address .10+i, on the
// second subnet for even i with --two-subnets.
func nodeHost(s Spec, i int, name string) Host {
	pre := NetNSPrefix(s.Name)
	h := Host{Role: RoleNode, Name: name, NetNS: fmt.Sprintf("%sn%d", pre, i)}
	port := fmt.Sprintf("pnp-n%d", i)
	if s.TwoSubnets && i%2 == 0 {
		h.Ifaces = []Iface{{Name: UplinkName, Switch: pre + "sw2", Port: port, Addr: hostAddr(subnetB, 10+i)}}
		h.Routes = []Route{{Dst: subnetA, Via: hostAddr(subnetB, 1).Addr()}}
	} else {
		h.Ifaces = []Iface{{Name: UplinkName, Switch: pre + "sw", Port: port, Addr: hostAddr(subnetA, 10+i)}}
		if s.TwoSubnets {
			h.Routes = []Route{{Dst: subnetB, Via: hostAddr(subnetA, 1).Addr()}}
		}
	}
	return h
}

// Namespaces lists every namespace of the topology: switches first.
func (t *Topology) Namespaces() []string {
	var out []string
	for _, s := range t.Switches {
		out = append(out, s.NetNS)
	}
	for _, h := range t.Hosts {
		out = append(out, h.NetNS)
	}
	return out
}

// Host returns the host with the given role (or node name), or nil.
func (t *Topology) Host(role string) *Host {
	for i := range t.Hosts {
		if t.Hosts[i].Role == role || t.Hosts[i].Name == role {
			return &t.Hosts[i]
		}
	}
	return nil
}

// Nodes returns the node hosts in order.
func (t *Topology) Nodes() []Host {
	var out []Host
	for _, h := range t.Hosts {
		if h.Role == RoleNode {
			out = append(out, h)
		}
	}
	return out
}

// EtcdEndpoint is the control plane's etcd client URL on the underlay
// (where the server's embedded etcd listens).
func (t *Topology) EtcdEndpoint() string {
	return fmt.Sprintf("http://%s", netip.AddrPortFrom(t.Host(RoleControlPlane).IP(), EtcdPort))
}

// EtcdHosts returns the external etcd members' hosts in order (none with
// the embedded store).
func (t *Topology) EtcdHosts() []Host {
	var out []Host
	for _, h := range t.Hosts {
		if h.Role == RoleEtcd {
			out = append(out, h)
		}
	}
	return out
}

// EtcdEndpoints are the client URLs of the cluster's store: every
// external member's, else the control plane's embedded etcd.
func (t *Topology) EtcdEndpoints() []string {
	hs := t.EtcdHosts()
	if len(hs) == 0 {
		return []string{t.EtcdEndpoint()}
	}
	var out []string
	for _, h := range hs {
		out = append(out, fmt.Sprintf("http://%s", netip.AddrPortFrom(h.IP(), EtcdPort)))
	}
	return out
}

// Lookup finds a host by role, node name, short node name ("n2") or
// namespace name, and returns its namespace.
func (t *Topology) Lookup(name string) (string, bool) {
	switch name {
	case "cp":
		name = RoleControlPlane
	}
	for _, h := range t.Hosts {
		if h.Role == name && h.Role != RoleNode || h.Name == name || h.NetNS == name || h.NetNS == NetNSPrefix(t.Spec.Name)+name {
			return h.NetNS, true
		}
	}
	for _, s := range t.Switches {
		if s.NetNS == name || s.NetNS == NetNSPrefix(t.Spec.Name)+name {
			return s.NetNS, true
		}
	}
	return "", false
}
