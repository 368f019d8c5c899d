// Package link sets up podnet's layer 2 over netlink: the node bridge (with
// the pod networks' gateway addresses) and one veth pair per pod
// attachment, whose container end is created directly inside the pod's
// network namespace and configured through a netlink handle opened there.
// Nothing here switches the calling thread's namespace.
//
// Host-side veths are named "pn" + 11 hex digits of sha256(containerID + "/"
// + ifname), so DEL and GC find them without the pod's namespace.
package link

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// HostVethName is the deterministic host-side name of an attachment's veth.
func HostVethName(containerID, ifname string) string {
	h := sha256.Sum256([]byte(containerID + "/" + ifname))
	return "pn" + hex.EncodeToString(h[:])[:11]
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func addrFlags(p netip.Prefix) int {
	if p.Addr().Is6() {
		return unix.IFA_F_NODAD
	}
	return 0
}

// EnsureBridge makes the named bridge exist, be up, carry every address in
// addrs (IPv6 without duplicate address detection) and, if mtu > 0, have
// that MTU. It is idempotent and safe to race with itself. A link with the
// name that is not a bridge is an error.
func EnsureBridge(name string, mtu int, addrs []netip.Prefix) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return nil, fmt.Errorf("bridge %s: %w", name, err)
		}
		mac := make(net.HardwareAddr, 6)
		_, _ = rand.Read(mac)
		mac[0] = (mac[0] | 0x02) & 0xfe // local, unicast: a fixed MAC keeps pods' ARP caches valid as ports come and go
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, HardwareAddr: mac, TxQLen: -1}}
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("bridge %s: create: %w", name, err)
		}
		if l, err = netlink.LinkByName(name); err != nil {
			return nil, fmt.Errorf("bridge %s: %w", name, err)
		}
	}
	if l.Type() != "bridge" {
		return nil, fmt.Errorf("bridge %s: link exists with type %q", name, l.Type())
	}
	if mtu > 0 && l.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return nil, fmt.Errorf("bridge %s: set mtu %d: %w", name, mtu, err)
		}
	}
	// Add without listing first: a dump races with concurrent ADDs
	// (NLM_F_DUMP_INTR), while EEXIST answers the same question atomically.
	for _, p := range addrs {
		a := &netlink.Addr{IPNet: ipNet(p), Flags: addrFlags(p)}
		if err := netlink.AddrAdd(l, a); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("bridge %s: add address %s: %w", name, p, err)
		}
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("bridge %s: set up: %w", name, err)
		}
	}
	return l, nil
}

// Sysctl sets a /proc/sys value (path relative to /proc/sys) unless it
// already has it.
func Sysctl(path, value string) error {
	full := "/proc/sys/" + path
	if b, err := os.ReadFile(full); err == nil && strings.TrimSpace(string(b)) == value {
		return nil
	}
	if err := os.WriteFile(full, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", path, value, err)
	}
	return nil
}

// Veth describes one attachment's veth pair.
type Veth struct {
	HostName  string           // host side, on the bridge
	ContName  string           // container side (CNI_IFNAME)
	NetnsPath string           // the container's network namespace
	Bridge    netlink.Link     // the node bridge
	MTU       int              // 0: kernel default
	MAC       net.HardwareAddr // container side MAC, nil for random
	Hairpin   bool
	Addrs     []netip.Prefix // container addresses with their prefix length
	Routes    []Route
}

// Route is a route installed in the container.
type Route struct {
	Dst netip.Prefix
	GW  netip.Addr // invalid: on-link
}

// Created is what SetupVeth made, for the CNI result.
type Created struct {
	HostMAC, ContMAC net.HardwareAddr
}

// SetupVeth creates the pair with its container end directly in the
// namespace, attaches the host end to the bridge, and configures the
// container end (addresses, up, routes). On error it removes the pair.
func SetupVeth(v Veth) (c Created, err error) {
	ns, err := netns.GetFromPath(v.NetnsPath)
	if err != nil {
		return c, fmt.Errorf("open netns %s: %w", v.NetnsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return c, fmt.Errorf("netlink handle in %s: %w", v.NetnsPath, err)
	}
	defer h.Close()

	if _, err := h.LinkByName(v.ContName); err == nil {
		return c, fmt.Errorf("interface %s already exists in %s", v.ContName, v.NetnsPath)
	}
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name:        v.HostName,
			MTU:         v.MTU,
			MasterIndex: v.Bridge.Attrs().Index,
			Flags:       net.FlagUp,
			TxQLen:      -1,
		},
		PeerName:         v.ContName,
		PeerNamespace:    netlink.NsFd(int(ns)),
		PeerHardwareAddr: v.MAC,
	}
	if err := netlink.LinkAdd(veth); err != nil {
		// LinkAdd may fail after creating the pair (setting the master).
		_ = DeleteLink(v.HostName)
		return c, fmt.Errorf("create veth %s: %w", v.HostName, err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = DeleteLink(v.HostName)
		}
	}()
	host, err := netlink.LinkByName(v.HostName)
	if err != nil {
		return c, fmt.Errorf("veth %s: %w", v.HostName, err)
	}
	if v.Hairpin {
		if err := netlink.LinkSetHairpin(host, true); err != nil {
			return c, fmt.Errorf("veth %s: set hairpin: %w", v.HostName, err)
		}
	}
	cont, err := h.LinkByName(v.ContName)
	if err != nil {
		return c, fmt.Errorf("container %s: %w", v.ContName, err)
	}
	for _, p := range v.Addrs {
		if err := h.AddrAdd(cont, &netlink.Addr{IPNet: ipNet(p), Flags: addrFlags(p)}); err != nil {
			return c, fmt.Errorf("container %s: add address %s: %w", v.ContName, p, err)
		}
	}
	if err := h.LinkSetUp(cont); err != nil {
		return c, fmt.Errorf("container %s: set up: %w", v.ContName, err)
	}
	for _, r := range v.Routes {
		rt := &netlink.Route{LinkIndex: cont.Attrs().Index, Dst: ipNet(r.Dst)}
		if r.GW.IsValid() {
			rt.Gw = r.GW.AsSlice()
		} else {
			rt.Scope = netlink.SCOPE_LINK
		}
		if err := h.RouteAdd(rt); err != nil {
			return c, fmt.Errorf("container %s: add route %s via %s: %w", v.ContName, r.Dst, r.GW, err)
		}
	}
	ok = true
	return Created{HostMAC: host.Attrs().HardwareAddr, ContMAC: cont.Attrs().HardwareAddr}, nil
}

// DeleteLink removes a link by name (for a veth, both ends). A missing
// link is not an error.
func DeleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

// CheckVeth verifies that the host end exists and is a port of bridge, and
// that the container end exists in the namespace, is up and has every
// address in addrs.
func CheckVeth(hostName, bridge, netnsPath, contName string, addrs []netip.Prefix) error {
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return fmt.Errorf("host veth %s: %w", hostName, err)
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", bridge, err)
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		return fmt.Errorf("host veth %s is not a port of bridge %s", hostName, bridge)
	}
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", netnsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", netnsPath, err)
	}
	defer h.Close()
	cont, err := h.LinkByName(contName)
	if err != nil {
		return fmt.Errorf("container interface %s in %s: %w", contName, netnsPath, err)
	}
	if cont.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("container interface %s is down", contName)
	}
	have, err := h.AddrList(cont, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("container interface %s: list addresses: %w", contName, err)
	}
	for _, p := range addrs {
		found := false
		for _, a := range have {
			ip, _ := netip.AddrFromSlice(a.IP)
			ones, _ := a.Mask.Size()
			if ip.Unmap() == p.Addr() && ones == p.Bits() {
				found = true
			}
		}
		if !found {
			return fmt.Errorf("container interface %s lacks address %s", contName, p)
		}
	}
	return nil
}
