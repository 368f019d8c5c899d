package overlay

// Design note: the vxlan backend's route, neighbour and FDB scheme.
//
// Each node has one VXLAN device, "podnet.vxlan" (VNI 1, UDP port 4789,
// the IANA port, rather than Linux's historical default 8472; local = the
// node's InternalIP, encapsulating through the interface holding that
// address; learning off). The device is a layer-3 hop: it holds the
// network address of the node's pod CIDR as a /32 (node 10.244.1.0/24 →
// 10.244.1.0/32 on podnet.vxlan), which is the address a peer routes to
// as its gateway towards this node's pods. The bridge keeps the pods'
// gateway (10.244.1.1), so the two never clash.
//
// For each peer (node n2, IP 192.168.250.12, pod CIDR 10.244.2.0/24, VTEP
// MAC M2) Sync programs, in this order:
//
//  1. neighbour: 10.244.2.0 lladdr M2 dev podnet.vxlan nud permanent
//  2. FDB:       M2 dst 192.168.250.12 dev podnet.vxlan self permanent
//  3. route:     10.244.2.0/24 via 10.244.2.0 dev podnet.vxlan onlink proto 110
//
// The route comes last: from the moment it exists, the kernel resolves
// the gateway 10.244.2.0 from the permanent neighbour entry (never ARPing
// over the overlay, which has no one to answer), and the resulting frame
// to M2 finds its VTEP in the FDB (never flooding: there is no default
// FDB entry). A peer whose steps fail halfway is rolled back (the steps
// this Sync created are undone in reverse), so no route ever points at a
// gateway without a neighbour. Removal runs in reverse: route, FDB,
// neighbour.
//
// What is ours: every permanent neighbour and every FDB entry on
// podnet.vxlan, and every main-table route with protocol 110. Anything of
// those not wanted is removed, so Sync needs no memory of past peers and a
// restarted agent converges from whatever the kernel holds.
//
// The VTEP MAC is what peers store; it must survive agent restarts and
// device re-creation. It is kept in <StateDir>/vtep-mac (first choice),
// else taken from an existing device, else generated (locally
// administered), and written back to the file. ensureLink reuses an
// existing device whose VNI, port, local address, underlay, learning and
// MAC match, and deletes and re-creates one that does not (the kernel
// then drops its neighbours, FDB and routes; the next Sync restores them).
//
// MTU: VXLAN over IPv4 adds 50 bytes (outer IPv4 20 + UDP 8 + VXLAN 8 +
// inner Ethernet 14), so the device and the pods get the underlay MTU
// minus 50 and a full-size packet with DF set fits the underlay
// (flannel-io/flannel#1011 is what happens otherwise).

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// VXLAN defaults.
const (
	DefaultVXLANDevice = "podnet.vxlan"
	DefaultVXLANPort   = 4789
	DefaultVNI         = 1
	// VXLANOverhead is what encapsulation adds to an inner IPv4 packet.
	VXLANOverhead = 50
	// MACFile is the VTEP MAC's file in the state directory.
	MACFile = "vtep-mac"
)

type vxlanBackend struct {
	cfg Config
	k   Kernel
	log *slog.Logger

	mu       sync.Mutex
	mac      net.HardwareAddr
	underlay *Link
	mtu      int
}

func newVXLAN(cfg Config) (*vxlanBackend, error) {
	if cfg.Device == "" {
		cfg.Device = DefaultVXLANDevice
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultVXLANPort
	}
	if cfg.VNI == 0 {
		cfg.VNI = DefaultVNI
	}
	if len(cfg.Device) > 15 || strings.ContainsAny(cfg.Device, "/ \t\n") {
		return nil, fmt.Errorf("overlay: vxlan device name %q: must be at most 15 characters, without / or spaces", cfg.Device)
	}
	return &vxlanBackend{cfg: cfg, k: cfg.Kernel, log: cfg.Logger.With("backend", "vxlan", "dev", cfg.Device)}, nil
}

func (v *vxlanBackend) Name() string { return "vxlan" }

// gateway is the overlay address of a node: its pod CIDR's network address.
func gateway(podCIDR netip.Prefix) netip.Addr { return podCIDR.Masked().Addr() }

func (v *vxlanBackend) Setup(ctx context.Context) (NodeData, int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.ensure(); err != nil {
		return NodeData{}, 0, err
	}
	return NodeData{VTEPMAC: v.mac.String()}, v.mtu, nil
}

// ensure finds the underlay, settles the VTEP MAC, and makes the device
// and its address right. Called with mu held.
func (v *vxlanBackend) ensure() error {
	self := v.cfg.Self
	under, err := v.k.LinkByAddr(self.IP)
	if err != nil {
		return fmt.Errorf("vxlan: find underlay of %s: %w", self.IP, err)
	}
	if under == nil {
		return fmt.Errorf("vxlan: node IP %s is on no interface of this node", self.IP)
	}
	if under.MTU <= VXLANOverhead+68 {
		return fmt.Errorf("vxlan: underlay %s MTU %d is too small for VXLAN", under.Name, under.MTU)
	}
	v.underlay, v.mtu = under, under.MTU-VXLANOverhead
	existing, err := v.k.LinkByName(v.cfg.Device)
	if err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	if v.mac == nil {
		mac, err := v.loadMAC(existing)
		if err != nil {
			return err
		}
		v.mac = mac
	}
	if err := v.ensureLink(existing); err != nil {
		return err
	}
	return v.ensureAddr()
}

// loadMAC returns the persisted VTEP MAC, else the existing device's,
// else a new one, and persists it.
func (v *vxlanBackend) loadMAC(existing *Link) (net.HardwareAddr, error) {
	path := ""
	if v.cfg.StateDir != "" {
		path = filepath.Join(v.cfg.StateDir, MACFile)
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			mac, perr := net.ParseMAC(strings.TrimSpace(string(b)))
			if perr == nil && len(mac) == 6 && mac[0]&1 == 0 {
				return mac, nil
			}
			v.log.Warn("ignoring unreadable VTEP MAC file", "file", path, "content", strings.TrimSpace(string(b)))
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("vxlan: read VTEP MAC %s: %w", path, err)
		}
	}
	var mac net.HardwareAddr
	if existing != nil && existing.VXLAN != nil && len(existing.MAC) == 6 {
		mac = existing.MAC
	} else {
		mac = make(net.HardwareAddr, 6)
		if _, err := rand.Read(mac); err != nil {
			return nil, fmt.Errorf("vxlan: generate VTEP MAC: %w", err)
		}
		mac[0] = mac[0]&^1 | 2 // unicast, locally administered
	}
	if path != "" {
		if err := writeFileAtomic(path, []byte(mac.String()+"\n")); err != nil {
			return nil, fmt.Errorf("vxlan: persist VTEP MAC in %s: %w", path, err)
		}
	}
	return mac, nil
}

func (v *vxlanBackend) wantAttrs() VXLANAttrs {
	return VXLANAttrs{VNI: v.cfg.VNI, Port: v.cfg.Port, Local: v.cfg.Self.IP, UnderlayIndex: v.underlay.Index}
}

// incompatible says why an existing device cannot be reused, or "".
func (v *vxlanBackend) incompatible(l *Link) string {
	want := v.wantAttrs()
	switch {
	case l.VXLAN == nil:
		return "not a VXLAN device"
	case l.VXLAN.VNI != want.VNI:
		return fmt.Sprintf("VNI %d, want %d", l.VXLAN.VNI, want.VNI)
	case l.VXLAN.Port != want.Port:
		return fmt.Sprintf("port %d, want %d", l.VXLAN.Port, want.Port)
	case l.VXLAN.Local != want.Local:
		return fmt.Sprintf("local %s, want %s", l.VXLAN.Local, want.Local)
	case l.VXLAN.UnderlayIndex != want.UnderlayIndex:
		return fmt.Sprintf("underlay index %d, want %d (%s)", l.VXLAN.UnderlayIndex, want.UnderlayIndex, v.underlay.Name)
	case l.VXLAN.Learning:
		return "learning on"
	case l.MAC.String() != v.mac.String():
		return fmt.Sprintf("MAC %s, want %s", l.MAC, v.mac)
	}
	return ""
}

// ensureLink reuses a compatible device, re-creates an incompatible one,
// and sets the MTU and up.
func (v *vxlanBackend) ensureLink(existing *Link) error {
	dev := v.cfg.Device
	if existing != nil {
		if why := v.incompatible(existing); why != "" {
			v.log.Warn("re-creating incompatible VXLAN device", "reason", why)
			if err := v.k.DelLink(dev); err != nil {
				return fmt.Errorf("vxlan: device %s (%s): %w", dev, why, err)
			}
			existing = nil
		}
	}
	if existing == nil {
		if err := v.k.AddVXLAN(dev, v.mac, v.mtu, v.wantAttrs()); err != nil {
			return fmt.Errorf("vxlan: %w", err)
		}
		v.log.Info("VXLAN device created", "vni", v.cfg.VNI, "port", v.cfg.Port, "local", v.cfg.Self.IP, "underlay", v.underlay.Name, "mac", v.mac.String(), "mtu", v.mtu)
	}
	if existing == nil || !existing.Up || existing.MTU != v.mtu {
		if err := v.k.SetUp(dev, v.mtu); err != nil {
			return fmt.Errorf("vxlan: %w", err)
		}
	}
	return nil
}

// ensureAddr gives the device exactly the node's overlay address.
func (v *vxlanBackend) ensureAddr() error {
	want := netip.PrefixFrom(gateway(v.cfg.Self.PodCIDR), 32)
	have, err := v.k.Addrs(v.cfg.Device)
	if err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	for _, a := range have {
		if a != want {
			if err := v.k.DelAddr(v.cfg.Device, a); err != nil {
				return fmt.Errorf("vxlan: %w", err)
			}
		}
	}
	if !slices.Contains(have, want) {
		if err := v.k.AddAddr(v.cfg.Device, want); err != nil {
			return fmt.Errorf("vxlan: %w", err)
		}
	}
	return nil
}

type vxlanPeer struct {
	node  Node
	mac   net.HardwareAddr
	neigh Neigh
	fdb   FDBEntry
	route Route
}

func (v *vxlanBackend) Sync(ctx context.Context, peers []Node) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	// Heal a device deleted or changed behind our back.
	if err := v.ensure(); err != nil {
		return err
	}
	dev := v.cfg.Device
	valid, errs := validPeers(v.cfg.Self, peers)
	var want []vxlanPeer
	for _, p := range valid {
		mac, err := net.ParseMAC(p.Data.VTEPMAC)
		if p.Data.VTEPMAC == "" {
			v.log.Debug("peer has not published its VTEP MAC yet", "peer", p.Name)
			continue
		}
		if err != nil || len(mac) != 6 {
			errs = append(errs, fmt.Errorf("node %s: backend data vtepMAC %q: not a MAC address", p.Name, p.Data.VTEPMAC))
			continue
		}
		gw := gateway(p.PodCIDR)
		want = append(want, vxlanPeer{
			node:  p,
			mac:   mac,
			neigh: Neigh{IP: gw, MAC: mac},
			fdb:   FDBEntry{MAC: mac, Dst: p.IP},
			route: Route{Dst: p.PodCIDR, Via: gw, Dev: dev, OnLink: true},
		})
	}

	neighs, err := v.k.Neighs(dev)
	if err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	fdb, err := v.k.FDB(dev)
	if err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	routes, err := v.k.Routes()
	if err != nil {
		return fmt.Errorf("vxlan: %w", err)
	}
	wantNeigh := map[netip.Addr]string{}
	wantFDB := map[string]netip.Addr{}
	wantRoute := map[Route]bool{}
	for _, p := range want {
		wantNeigh[p.neigh.IP] = p.mac.String()
		wantFDB[p.mac.String()] = p.fdb.Dst
		wantRoute[p.route] = true
	}

	// Removal: route, FDB, neighbour.
	for _, r := range routes {
		if !wantRoute[r] {
			if err := v.k.DelRoute(r); err != nil {
				errs = append(errs, fmt.Errorf("vxlan: %w", err))
			} else {
				v.log.Info("route removed", "route", r.String())
			}
		}
	}
	haveFDB := map[string]netip.Addr{}
	for _, e := range fdb {
		if dst, ok := wantFDB[e.MAC.String()]; !ok || dst != e.Dst {
			if err := v.k.DelFDB(dev, e); err != nil {
				errs = append(errs, fmt.Errorf("vxlan: %w", err))
			}
			continue
		}
		haveFDB[e.MAC.String()] = e.Dst
	}
	haveNeigh := map[netip.Addr]string{}
	for _, n := range neighs {
		if mac, ok := wantNeigh[n.IP]; !ok || mac != n.MAC.String() {
			if !ok {
				if err := v.k.DelNeigh(dev, n); err != nil {
					errs = append(errs, fmt.Errorf("vxlan: %w", err))
				}
			}
			continue
		}
		haveNeigh[n.IP] = n.MAC.String()
	}
	haveRoute := map[Route]bool{}
	for _, r := range routes {
		haveRoute[r] = wantRoute[r]
	}

	// Addition: neighbour, FDB, route; a failed peer is rolled back.
	for _, p := range want {
		if err := v.addPeer(p, haveNeigh, haveFDB, haveRoute); err != nil {
			errs = append(errs, err)
		}
	}
	return peerErr("vxlan", errs)
}

// addPeer programs what of p is missing, in order, undoing this call's
// additions if a later step fails.
func (v *vxlanBackend) addPeer(p vxlanPeer, haveNeigh map[netip.Addr]string, haveFDB map[string]netip.Addr, haveRoute map[Route]bool) error {
	dev := v.cfg.Device
	var undo []func()
	fail := func(err error) error {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		return fmt.Errorf("vxlan: node %s: %w", p.node, err)
	}
	if haveNeigh[p.neigh.IP] != p.mac.String() {
		_, existed := haveNeigh[p.neigh.IP]
		if err := v.k.SetNeigh(dev, p.neigh); err != nil {
			return fail(err)
		}
		if !existed {
			undo = append(undo, func() { _ = v.k.DelNeigh(dev, p.neigh) })
		}
	}
	if dst, ok := haveFDB[p.mac.String()]; !ok || dst != p.fdb.Dst {
		if err := v.k.SetFDB(dev, p.fdb); err != nil {
			return fail(err)
		}
		undo = append(undo, func() { _ = v.k.DelFDB(dev, p.fdb) })
	}
	if !haveRoute[p.route] {
		if err := v.k.ReplaceRoute(p.route); err != nil {
			return fail(err)
		}
		v.log.Info("peer programmed", "peer", p.node.Name, "nodeIP", p.node.IP, "podCIDR", p.node.PodCIDR, "vtepMAC", p.mac.String())
	}
	return nil
}

func (v *vxlanBackend) Teardown(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	var errs []error
	if err := v.k.DelLink(v.cfg.Device); err != nil {
		errs = append(errs, err)
	}
	routes, err := v.k.Routes()
	if err != nil {
		errs = append(errs, err)
	}
	for _, r := range routes {
		if err := v.k.DelRoute(r); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("vxlan: teardown: %w", err)
	}
	return nil
}

// writeFileAtomic replaces path with data through a synced temp file.
func writeFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
