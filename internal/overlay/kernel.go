package overlay

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteProtocol marks the routes podnet programs (the rtm_protocol field;
// `ip route show proto 110`). It is not taken in iproute2's rt_protos.
const RouteProtocol = 110

// Link is a network interface as the overlay needs to see it.
type Link struct {
	Name  string
	Index int
	MTU   int
	MAC   net.HardwareAddr
	Up    bool
	VXLAN *VXLANAttrs // set for VXLAN devices
}

// VXLANAttrs are the settings of a VXLAN device the overlay relies on.
type VXLANAttrs struct {
	VNI           int
	Port          int        // UDP destination port
	Local         netip.Addr // source address of the encapsulation
	UnderlayIndex int        // the device encapsulated packets leave by
	Learning      bool       // source-address learning (podnet wants it off)
}

// Neigh is a permanent IPv4 neighbour (ARP) entry.
type Neigh struct {
	IP  netip.Addr
	MAC net.HardwareAddr
}

// FDBEntry is a VXLAN forwarding entry: frames to MAC go to the VTEP at Dst.
type FDBEntry struct {
	MAC net.HardwareAddr
	Dst netip.Addr
}

// Route is an IPv4 route in the main table with protocol RouteProtocol.
type Route struct {
	Dst    netip.Prefix
	Via    netip.Addr
	Dev    string
	OnLink bool
}

func (r Route) String() string {
	s := fmt.Sprintf("%s via %s dev %s", r.Dst, r.Via, r.Dev)
	if r.OnLink {
		s += " onlink"
	}
	return s
}

// Path is how the kernel would reach an address: the device, and the
// gateway if it is not directly connected.
type Path struct {
	Dev     string
	Gateway netip.Addr // invalid: on-link
}

// Kernel is the overlay's boundary to the kernel. Missing objects are not
// errors for the getters (LinkByName returns nil) and deleting something
// absent is not an error.
type Kernel interface {
	LinkByName(name string) (*Link, error)
	// LinkByAddr returns the link holding address ip, or nil.
	LinkByAddr(ip netip.Addr) (*Link, error)
	AddVXLAN(name string, mac net.HardwareAddr, mtu int, a VXLANAttrs) error
	DelLink(name string) error
	// SetUp sets the link's MTU and brings it up.
	SetUp(name string, mtu int) error

	Addrs(dev string) ([]netip.Prefix, error)
	AddAddr(dev string, p netip.Prefix) error
	DelAddr(dev string, p netip.Prefix) error

	Neighs(dev string) ([]Neigh, error)
	SetNeigh(dev string, n Neigh) error
	DelNeigh(dev string, n Neigh) error

	FDB(dev string) ([]FDBEntry, error)
	SetFDB(dev string, e FDBEntry) error
	DelFDB(dev string, e FDBEntry) error

	// Routes lists the main table's IPv4 routes with protocol
	// RouteProtocol.
	Routes() ([]Route, error)
	ReplaceRoute(r Route) error
	DelRoute(r Route) error
	// PathTo is `ip route get dst`.
	PathTo(dst netip.Addr) (Path, error)
}

// Netlink is the real Kernel, over a netlink handle.
type Netlink struct {
	h *netlink.Handle
}

var _ Kernel = (*Netlink)(nil)

// NewNetlink returns a Kernel for the calling process's network namespace
// (h nil), or for the namespace h was opened in (netlink.NewHandleAt).
func NewNetlink(h *netlink.Handle) *Netlink {
	if h == nil {
		h = &netlink.Handle{}
	}
	return &Netlink{h: h}
}

func addrOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func toLink(l netlink.Link) *Link {
	a := l.Attrs()
	out := &Link{Name: a.Name, Index: a.Index, MTU: a.MTU, MAC: a.HardwareAddr, Up: a.Flags&net.FlagUp != 0}
	if v, ok := l.(*netlink.Vxlan); ok {
		out.VXLAN = &VXLANAttrs{VNI: v.VxlanId, Port: v.Port, Local: addrOf(v.SrcAddr), UnderlayIndex: v.VtepDevIndex, Learning: v.Learning}
	}
	return out
}

func (k *Netlink) link(name string) (netlink.Link, error) {
	l, err := k.h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("link %s: %w", name, err)
	}
	return l, nil
}

func (k *Netlink) mustLink(name string) (netlink.Link, error) {
	l, err := k.link(name)
	if err == nil && l == nil {
		err = fmt.Errorf("link %s: not found", name)
	}
	return l, err
}

func (k *Netlink) LinkByName(name string) (*Link, error) {
	l, err := k.link(name)
	if l == nil {
		return nil, err
	}
	return toLink(l), nil
}

func (k *Netlink) LinkByAddr(ip netip.Addr) (*Link, error) {
	addrs, err := k.h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if addrOf(a.IP) == ip {
			l, err := k.h.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("link of address %s: %w", ip, err)
			}
			return toLink(l), nil
		}
	}
	return nil, nil
}

func (k *Netlink) AddVXLAN(name string, mac net.HardwareAddr, mtu int, a VXLANAttrs) error {
	v := &netlink.Vxlan{
		LinkAttrs:    netlink.LinkAttrs{Name: name, MTU: mtu, HardwareAddr: mac},
		VxlanId:      a.VNI,
		VtepDevIndex: a.UnderlayIndex,
		SrcAddr:      a.Local.AsSlice(),
		Port:         a.Port,
		Learning:     a.Learning,
	}
	if err := k.h.LinkAdd(v); err != nil {
		return fmt.Errorf("add vxlan %s: %w", name, err)
	}
	return nil
}

func (k *Netlink) DelLink(name string) error {
	l, err := k.link(name)
	if l == nil {
		return err
	}
	if err := k.h.LinkDel(l); err != nil {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

func (k *Netlink) SetUp(name string, mtu int) error {
	l, err := k.mustLink(name)
	if err != nil {
		return err
	}
	if l.Attrs().MTU != mtu {
		if err := k.h.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("link %s: set mtu %d: %w", name, mtu, err)
		}
	}
	if err := k.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("link %s: set up: %w", name, err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func (k *Netlink) Addrs(dev string) ([]netip.Prefix, error) {
	l, err := k.mustLink(dev)
	if err != nil {
		return nil, err
	}
	addrs, err := k.h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("link %s: list addresses: %w", dev, err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(addrOf(a.IP), ones))
	}
	return out, nil
}

func (k *Netlink) AddAddr(dev string, p netip.Prefix) error {
	l, err := k.mustLink(dev)
	if err != nil {
		return err
	}
	if err := k.h.AddrReplace(l, &netlink.Addr{IPNet: ipNet(p)}); err != nil {
		return fmt.Errorf("link %s: add address %s: %w", dev, p, err)
	}
	return nil
}

func (k *Netlink) DelAddr(dev string, p netip.Prefix) error {
	l, err := k.link(dev)
	if l == nil {
		return err
	}
	if err := k.h.AddrDel(l, &netlink.Addr{IPNet: ipNet(p)}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("link %s: delete address %s: %w", dev, p, err)
	}
	return nil
}

func (k *Netlink) Neighs(dev string) ([]Neigh, error) {
	l, err := k.mustLink(dev)
	if err != nil {
		return nil, err
	}
	ns, err := k.h.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("link %s: list neighbours: %w", dev, err)
	}
	var out []Neigh
	for _, n := range ns {
		if n.State&netlink.NUD_PERMANENT == 0 || n.LinkIndex != l.Attrs().Index {
			continue
		}
		out = append(out, Neigh{IP: addrOf(n.IP), MAC: n.HardwareAddr})
	}
	return out, nil
}

func (k *Netlink) neigh(dev string, n Neigh) (*netlink.Neigh, error) {
	l, err := k.mustLink(dev)
	if err != nil {
		return nil, err
	}
	return &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: n.IP.AsSlice(), HardwareAddr: n.MAC}, nil
}

func (k *Netlink) SetNeigh(dev string, n Neigh) error {
	nn, err := k.neigh(dev, n)
	if err != nil {
		return err
	}
	if err := k.h.NeighSet(nn); err != nil {
		return fmt.Errorf("link %s: set neighbour %s lladdr %s: %w", dev, n.IP, n.MAC, err)
	}
	return nil
}

func (k *Netlink) DelNeigh(dev string, n Neigh) error {
	nn, err := k.neigh(dev, n)
	if err != nil {
		return err
	}
	if err := k.h.NeighDel(nn); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("link %s: delete neighbour %s: %w", dev, n.IP, err)
	}
	return nil
}

func (k *Netlink) FDB(dev string) ([]FDBEntry, error) {
	l, err := k.mustLink(dev)
	if err != nil {
		return nil, err
	}
	ns, err := k.h.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("link %s: list fdb: %w", dev, err)
	}
	var out []FDBEntry
	for _, n := range ns {
		if n.LinkIndex != l.Attrs().Index || n.IP == nil {
			continue
		}
		out = append(out, FDBEntry{MAC: n.HardwareAddr, Dst: addrOf(n.IP)})
	}
	return out, nil
}

func (k *Netlink) fdb(dev string, e FDBEntry) (*netlink.Neigh, error) {
	l, err := k.mustLink(dev)
	if err != nil {
		return nil, err
	}
	return &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, State: netlink.NUD_PERMANENT, IP: e.Dst.AsSlice(), HardwareAddr: e.MAC}, nil
}

func (k *Netlink) SetFDB(dev string, e FDBEntry) error {
	n, err := k.fdb(dev, e)
	if err != nil {
		return err
	}
	if err := k.h.NeighSet(n); err != nil {
		return fmt.Errorf("link %s: set fdb %s dst %s: %w", dev, e.MAC, e.Dst, err)
	}
	return nil
}

func (k *Netlink) DelFDB(dev string, e FDBEntry) error {
	n, err := k.fdb(dev, e)
	if err != nil {
		return err
	}
	if err := k.h.NeighDel(n); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("link %s: delete fdb %s dst %s: %w", dev, e.MAC, e.Dst, err)
	}
	return nil
}

func (k *Netlink) Routes() ([]Route, error) {
	rs, err := k.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	names := map[int]string{}
	var out []Route
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		name, ok := names[r.LinkIndex]
		if !ok {
			if l, err := k.h.LinkByIndex(r.LinkIndex); err == nil {
				name = l.Attrs().Name
			}
			names[r.LinkIndex] = name
		}
		ones, _ := r.Dst.Mask.Size()
		out = append(out, Route{
			Dst:    netip.PrefixFrom(addrOf(r.Dst.IP), ones),
			Via:    addrOf(r.Gw),
			Dev:    name,
			OnLink: r.Flags&int(netlink.FLAG_ONLINK) != 0,
		})
	}
	return out, nil
}

func (k *Netlink) route(r Route) (*netlink.Route, error) {
	l, err := k.mustLink(r.Dev)
	if err != nil {
		return nil, err
	}
	nr := &netlink.Route{
		LinkIndex: l.Attrs().Index,
		Dst:       ipNet(r.Dst),
		Gw:        r.Via.AsSlice(),
		Protocol:  RouteProtocol,
		Table:     unix.RT_TABLE_MAIN,
		Scope:     netlink.SCOPE_UNIVERSE,
	}
	if r.OnLink {
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	return nr, nil
}

func (k *Netlink) ReplaceRoute(r Route) error {
	nr, err := k.route(r)
	if err != nil {
		return err
	}
	if err := k.h.RouteReplace(nr); err != nil {
		return fmt.Errorf("route %s: %w", r, err)
	}
	return nil
}

func (k *Netlink) DelRoute(r Route) error {
	nr, err := k.route(r)
	if err != nil {
		// Its device is gone, and the route with it.
		return nil
	}
	if err := k.h.RouteDel(nr); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("delete route %s: %w", r, err)
	}
	return nil
}

func (k *Netlink) PathTo(dst netip.Addr) (Path, error) {
	rs, err := k.h.RouteGet(dst.AsSlice())
	if err != nil {
		return Path{}, fmt.Errorf("route get %s: %w", dst, err)
	}
	if len(rs) == 0 {
		return Path{}, fmt.Errorf("route get %s: no route", dst)
	}
	p := Path{Gateway: addrOf(rs[0].Gw)}
	if l, err := k.h.LinkByIndex(rs[0].LinkIndex); err == nil {
		p.Dev = l.Attrs().Name
	}
	return p, nil
}
