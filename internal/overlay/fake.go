package overlay

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
)

// Fake is an in-memory Kernel for unit tests. It models links, addresses,
// permanent neighbours, FDB entries and podnet's routes, records every
// change in Ops (e.g. "neigh set podnet.vxlan 10.244.2.0 aa:..") and fails
// the operations Fail returns an error for.
type Fake struct {
	mu     sync.Mutex
	links  map[string]*fakeLink
	routes []Route
	next   int
	// Paths answers PathTo; an address not in it is on-link through
	// DefaultDev.
	Paths      map[netip.Addr]Path
	DefaultDev string
	// Ops lists the changes made, in order.
	Ops []string
	// Fail, if set, is asked before each change (by its op string); an
	// error fails the change.
	Fail func(op string) error
}

type fakeLink struct {
	Link
	addrs []netip.Prefix
	neigh map[netip.Addr]net.HardwareAddr
	fdb   map[string]netip.Addr // MAC → dst
}

var _ Kernel = (*Fake)(nil)

// NewFake returns a Fake with one underlay link, dev, holding addr.
func NewFake(dev string, addr netip.Prefix, mtu int) *Fake {
	f := &Fake{links: map[string]*fakeLink{}, Paths: map[netip.Addr]Path{}, DefaultDev: dev}
	f.addLink(Link{Name: dev, MTU: mtu, Up: true, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}})
	f.links[dev].addrs = []netip.Prefix{addr}
	return f
}

func (f *Fake) addLink(l Link) {
	f.next++
	l.Index = f.next
	f.links[l.Name] = &fakeLink{Link: l, neigh: map[netip.Addr]net.HardwareAddr{}, fdb: map[string]netip.Addr{}}
}

func (f *Fake) change(op string, args ...any) error {
	s := fmt.Sprintf(op, args...)
	if f.Fail != nil {
		if err := f.Fail(s); err != nil {
			return err
		}
	}
	f.Ops = append(f.Ops, s)
	return nil
}

// TakeOps returns the changes recorded so far and forgets them.
func (f *Fake) TakeOps() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ops := f.Ops
	f.Ops = nil
	return ops
}

// AddRawLink creates a link as if someone else had (e.g. an incompatible
// device under podnet's name).
func (f *Fake) AddRawLink(l Link) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addLink(l)
}

func (f *Fake) get(name string) (*fakeLink, error) {
	l := f.links[name]
	if l == nil {
		return nil, fmt.Errorf("link %s: not found", name)
	}
	return l, nil
}

func copyLink(l *fakeLink) *Link {
	c := l.Link
	if l.VXLAN != nil {
		v := *l.VXLAN
		c.VXLAN = &v
	}
	return &c
}

func (f *Fake) LinkByName(name string) (*Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l := f.links[name]; l != nil {
		return copyLink(l), nil
	}
	return nil, nil
}

func (f *Fake) LinkByAddr(ip netip.Addr) (*Link, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, l := range f.links {
		for _, a := range l.addrs {
			if a.Addr() == ip {
				return copyLink(l), nil
			}
		}
	}
	return nil, nil
}

func (f *Fake) AddVXLAN(name string, mac net.HardwareAddr, mtu int, a VXLANAttrs) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.links[name] != nil {
		return fmt.Errorf("add vxlan %s: file exists", name)
	}
	if err := f.change("link add %s vxlan id %d local %s dstport %d mac %s mtu %d learning %v", name, a.VNI, a.Local, a.Port, mac, mtu, a.Learning); err != nil {
		return err
	}
	f.addLink(Link{Name: name, MTU: mtu, MAC: mac, VXLAN: &a})
	return nil
}

func (f *Fake) DelLink(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.links[name] == nil {
		return nil
	}
	if err := f.change("link del %s", name); err != nil {
		return err
	}
	delete(f.links, name)
	f.routes = slices.DeleteFunc(f.routes, func(r Route) bool { return r.Dev == name })
	return nil
}

func (f *Fake) SetUp(name string, mtu int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.get(name)
	if err != nil {
		return err
	}
	if l.Up && l.MTU == mtu {
		return nil
	}
	if err := f.change("link set %s mtu %d up", name, mtu); err != nil {
		return err
	}
	l.Up, l.MTU = true, mtu
	return nil
}

func (f *Fake) Addrs(dev string) ([]netip.Prefix, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.get(dev)
	if err != nil {
		return nil, err
	}
	return slices.Clone(l.addrs), nil
}

func (f *Fake) AddAddr(dev string, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.get(dev)
	if err != nil {
		return err
	}
	if err := f.change("addr add %s dev %s", p, dev); err != nil {
		return err
	}
	if !slices.Contains(l.addrs, p) {
		l.addrs = append(l.addrs, p)
	}
	return nil
}

func (f *Fake) DelAddr(dev string, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.links[dev]
	if l == nil || !slices.Contains(l.addrs, p) {
		return nil
	}
	if err := f.change("addr del %s dev %s", p, dev); err != nil {
		return err
	}
	l.addrs = slices.DeleteFunc(l.addrs, func(a netip.Prefix) bool { return a == p })
	return nil
}

func (f *Fake) Neighs(dev string) ([]Neigh, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.get(dev)
	if err != nil {
		return nil, err
	}
	var out []Neigh
	for ip, mac := range l.neigh {
		out = append(out, Neigh{IP: ip, MAC: mac})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IP.Less(out[j].IP) })
	return out, nil
}

func (f *Fake) SetNeigh(dev string, n Neigh) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.get(dev)
	if err != nil {
		return err
	}
	if err := f.change("neigh set %s %s %s", dev, n.IP, n.MAC); err != nil {
		return err
	}
	l.neigh[n.IP] = n.MAC
	return nil
}

func (f *Fake) DelNeigh(dev string, n Neigh) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.links[dev]
	if l == nil {
		return nil
	}
	if _, ok := l.neigh[n.IP]; !ok {
		return nil
	}
	if err := f.change("neigh del %s %s", dev, n.IP); err != nil {
		return err
	}
	delete(l.neigh, n.IP)
	return nil
}

func (f *Fake) FDB(dev string) ([]FDBEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.get(dev)
	if err != nil {
		return nil, err
	}
	var out []FDBEntry
	for mac, dst := range l.fdb {
		m, _ := net.ParseMAC(mac)
		out = append(out, FDBEntry{MAC: m, Dst: dst})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MAC.String() < out[j].MAC.String() })
	return out, nil
}

func (f *Fake) SetFDB(dev string, e FDBEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, err := f.get(dev)
	if err != nil {
		return err
	}
	if err := f.change("fdb set %s %s dst %s", dev, e.MAC, e.Dst); err != nil {
		return err
	}
	l.fdb[e.MAC.String()] = e.Dst
	return nil
}

func (f *Fake) DelFDB(dev string, e FDBEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.links[dev]
	if l == nil {
		return nil
	}
	if _, ok := l.fdb[e.MAC.String()]; !ok {
		return nil
	}
	if err := f.change("fdb del %s %s", dev, e.MAC); err != nil {
		return err
	}
	delete(l.fdb, e.MAC.String())
	return nil
}

func (f *Fake) Routes() ([]Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.routes), nil
}

func (f *Fake) ReplaceRoute(r Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.get(r.Dev); err != nil {
		return err
	}
	if err := f.change("route replace %s", r); err != nil {
		return err
	}
	f.routes = slices.DeleteFunc(f.routes, func(o Route) bool { return o.Dst == r.Dst })
	f.routes = append(f.routes, r)
	return nil
}

func (f *Fake) DelRoute(r Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Contains(f.routes, r) {
		return nil
	}
	if err := f.change("route del %s", r); err != nil {
		return err
	}
	f.routes = slices.DeleteFunc(f.routes, func(o Route) bool { return o == r })
	return nil
}

func (f *Fake) PathTo(dst netip.Addr) (Path, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p, ok := f.Paths[dst]; ok {
		return p, nil
	}
	return Path{Dev: f.DefaultDev}, nil
}
