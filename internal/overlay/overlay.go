// Package overlay carries pod traffic between nodes without NAT: the node's
// share of the cluster network, programmed into the kernel by a Backend.
//
// Two backends exist, chosen cluster-wide (api.ClusterConfig.Backend):
//
//   - vxlan (default, vxlan.go): one VXLAN device per node; for each peer a
//     permanent neighbour entry, an FDB entry and a route. Works across
//     routers; costs 50 bytes of MTU.
//   - host-gw (hostgw.go): a plain route per peer, via the peer's node
//     address. Needs every node on one L2 segment and refuses peers that
//     are not.
//
// A Backend is driven in two steps: Setup creates or verifies the node's
// own device and says what peers need to know about this node (NodeData,
// published on the Node object) and the MTU pods must use; Sync programs
// the full desired set of peers, idempotently, and removes what is no
// longer wanted. Nothing is removed when the agent stops: a restarted
// agent finds the kernel as it left it, and a Sync with the same peers
// changes nothing.
//
// Every kernel operation goes through the small Kernel interface; Netlink
// is the real one and Fake (fake.go) an in-memory model for unit tests.
// Routes podnet programs carry the route protocol RouteProtocol, which is
// how Sync tells its own routes from everyone else's.
package overlay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"

	"github.com/podnet/podnet/internal/api"
)

// Node is one node as the overlay sees it: this node, or a peer.
type Node struct {
	Name    string
	IP      netip.Addr   // the node's underlay (InternalIP) address
	PodCIDR netip.Prefix // the node's pod range
	Data    NodeData     // what its backend published
}

func (n Node) String() string { return fmt.Sprintf("%s (%s)", n.Name, n.IP) }

// NodeData is what a node's backend publishes for its peers, as the JSON
// of the Node annotation api.AnnotationBackendData:
//
//	{"vtepMAC":"0a:58:0a:f4:01:00"}   (vxlan)
//	{}                                 (host-gw)
type NodeData struct {
	// VTEPMAC is the MAC address of the node's VXLAN device (vxlan only).
	VTEPMAC string `json:"vtepMAC,omitempty"`
}

// Backend programs this node's part of the pod network.
type Backend interface {
	// Name is the backend's name in api.ClusterConfig.Backend.
	Name() string
	// Setup creates or verifies the node's own device (idempotent). It
	// returns what peers need to know about this node and the MTU pod
	// interfaces must use.
	Setup(ctx context.Context) (data NodeData, podMTU int, err error)
	// Sync makes the kernel hold exactly the given peers: it adds what is
	// missing, fixes what differs and removes peers no longer listed. A
	// repeated Sync with the same peers changes nothing. An error names
	// the peers it could not program; the others are programmed.
	Sync(ctx context.Context, peers []Node) error
	// Teardown removes everything the backend programmed on this node.
	Teardown(ctx context.Context) error
}

// Config configures a backend.
type Config struct {
	// Self is this node (Data is ignored).
	Self Node
	// StateDir keeps state that must survive restarts (the VTEP MAC in
	// <StateDir>/vtep-mac). Empty: nothing is persisted.
	StateDir string
	// Device is the VXLAN device's name (vxlan only). Default
	// DefaultVXLANDevice.
	Device string
	// Port is the VXLAN UDP port (vxlan only). Default DefaultVXLANPort.
	Port int
	// VNI is the VXLAN network identifier (vxlan only). Default 1.
	VNI    int
	Kernel Kernel
	Logger *slog.Logger
}

// New returns the backend named name (api.BackendVXLAN or
// api.BackendHostGW).
func New(name string, cfg Config) (Backend, error) {
	if cfg.Kernel == nil {
		return nil, fmt.Errorf("overlay: no kernel")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if !cfg.Self.IP.Is4() {
		return nil, fmt.Errorf("overlay: node %s: IP %v: only IPv4 underlays are supported", cfg.Self.Name, cfg.Self.IP)
	}
	if !cfg.Self.PodCIDR.IsValid() || !cfg.Self.PodCIDR.Addr().Is4() {
		return nil, fmt.Errorf("overlay: node %s: podCIDR %v: want an IPv4 CIDR", cfg.Self.Name, cfg.Self.PodCIDR)
	}
	cfg.Self.PodCIDR = cfg.Self.PodCIDR.Masked()
	switch name {
	case api.BackendVXLAN, "":
		return newVXLAN(cfg)
	case api.BackendHostGW:
		return newHostGW(cfg), nil
	}
	return nil, fmt.Errorf("overlay: backend %q: want %s or %s", name, api.BackendVXLAN, api.BackendHostGW)
}

// validPeers drops peers that cannot be programmed: no address, no pod
// CIDR, a pod CIDR overlapping this node's or an earlier peer's. It
// returns them sorted by name, with one error per dropped peer.
func validPeers(self Node, peers []Node) ([]Node, []error) {
	sorted := append([]Node(nil), peers...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var out []Node
	var errs []error
	taken := []Node{self}
	for _, p := range sorted {
		switch {
		case p.Name == self.Name:
			continue
		case !p.IP.Is4():
			errs = append(errs, fmt.Errorf("node %s: IP %v: want an IPv4 address", p.Name, p.IP))
			continue
		case !p.PodCIDR.IsValid() || !p.PodCIDR.Addr().Is4():
			errs = append(errs, fmt.Errorf("node %s: podCIDR %v: want an IPv4 CIDR", p.Name, p.PodCIDR))
			continue
		}
		p.PodCIDR = p.PodCIDR.Masked()
		ok := true
		for _, o := range taken {
			if o.PodCIDR.Overlaps(p.PodCIDR) {
				errs = append(errs, fmt.Errorf("node %s: podCIDR %s overlaps node %s's %s", p.Name, p.PodCIDR, o.Name, o.PodCIDR))
				ok = false
				break
			}
		}
		if ok {
			taken = append(taken, p)
			out = append(out, p)
		}
	}
	return out, errs
}

// PeerError is Sync's error when some peers could not be programmed. The
// other peers were.
type PeerError struct {
	Backend string
	Errs    []error
}

func (e *PeerError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

func (e *PeerError) Unwrap() []error { return e.Errs }

func peerErr(backend string, errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return &PeerError{Backend: backend, Errs: errs}
}

// SegmentError is host-gw's refusal of a peer that is not on this node's
// L2 segment.
type SegmentError struct {
	Peer    Node
	Gateway netip.Addr // the router the peer is reached through
}

func (e *SegmentError) Error() string {
	return fmt.Sprintf("host-gw: node %s (%s) is not on this node's L2 segment (reached via %s); use the vxlan backend", e.Peer.Name, e.Peer.IP, e.Gateway)
}

// IsSegmentError reports whether err holds a SegmentError.
func IsSegmentError(err error) bool {
	var se *SegmentError
	return errors.As(err, &se)
}
