// Package ipam is podnet-cni's node-local address and host-port allocator.
//
// The Allocator is pure logic over a small Store interface: it picks the next
// free address of a range round robin (after the last one handed out),
// honours requested addresses, and reserves host ports. DiskStore keeps the
// state crash-safely under dataDir/<network>/ (one O_EXCL file per address
// and per host port, JSON attachment records written with temp file + fsync +
// rename, all under an flock); MemStore is the in-memory fake for tests.
package ipam

import (
	"errors"
	"fmt"
	"net/netip"
)

// Store is the state an Allocator works on. Callers serialise access (the
// disk store's Lock); the methods themselves need not be atomic as a group.
type Store interface {
	// ReserveIP records ip as owned by key. It returns false (and no error)
	// if ip is already reserved by anyone.
	ReserveIP(key string, ip netip.Addr, rangeID string) (bool, error)
	// ReleaseIPs frees every address owned by key.
	ReleaseIPs(key string) error
	// IPs returns every reserved address and its owner key.
	IPs() (map[netip.Addr]string, error)
	// LastReserved returns the last address reserved in rangeID, if any.
	LastReserved(rangeID string) (netip.Addr, bool, error)
	// ReservePort records port as owned by key. It returns false if the
	// exact port is already reserved.
	ReservePort(key string, p Port) (bool, error)
	// ReleasePorts frees every port owned by key.
	ReleasePorts(key string) error
	// Ports returns every reserved port and its owner key.
	Ports() (map[Port]string, error)
}

// Port is a host port reservation. HostIP is invalid (zero) for "all
// addresses".
type Port struct {
	Proto  string // "tcp" or "udp"
	HostIP netip.Addr
	Port   uint16
}

func (p Port) String() string { return fmt.Sprintf("%s/%d", p.Proto, p.Port) }

// conflicts reports whether two host ports can't coexist: same protocol and
// port, and the same host address or either one on all addresses.
func (p Port) conflicts(q Port) bool {
	if p.Proto != q.Proto || p.Port != q.Port {
		return false
	}
	return !p.HostIP.IsValid() || !q.HostIP.IsValid() || p.HostIP == q.HostIP
}

// Range is a contiguous block of assignable addresses inside Subnet.
type Range struct {
	Subnet  netip.Prefix
	Start   netip.Addr // first assignable address
	End     netip.Addr // last assignable address
	Gateway netip.Addr // never handed out
}

// ID names the range in the store (for round robin state).
func (r Range) ID() string { return r.Subnet.Masked().String() }

// Contains reports whether ip is assignable in r.
func (r Range) Contains(ip netip.Addr) bool {
	return r.Subnet.Contains(ip) && ip.Compare(r.Start) >= 0 && ip.Compare(r.End) <= 0
}

// Size is the number of addresses from Start to End (capped).
func (r Range) Size() uint64 {
	var n uint64 = 1
	for a := r.Start; a != r.End && n < 1<<40; a = a.Next() {
		n++
	}
	return n
}

// DefaultBounds returns the first and last host address of a subnet: for
// IPv4 the network and broadcast addresses are skipped, for IPv6 only the
// subnet-router anycast (all-zero host) address.
func DefaultBounds(p netip.Prefix) (start, end netip.Addr) {
	p = p.Masked()
	start = p.Addr().Next()
	end = lastAddr(p)
	if p.Addr().Is4() {
		end = end.Prev()
	}
	return start, end
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// ErrExhausted is wrapped by the error returned when a range has no free address.
var ErrExhausted = errors.New("address range exhausted")

// ErrPortTaken is wrapped by the error returned when a host port is in use.
var ErrPortTaken = errors.New("host port already allocated")

// ErrIPTaken is wrapped by the error returned when a requested address is in use.
var ErrIPTaken = errors.New("requested address already allocated")

// Allocator hands out addresses and host ports from a Store.
type Allocator struct {
	Store Store
}

// Allocate reserves one address in r for key: want if valid (it must be in
// the range and free), else the next free address after the last one
// reserved, wrapping around.
func (a *Allocator) Allocate(key string, r Range, want netip.Addr) (netip.Addr, error) {
	used, err := a.Store.IPs()
	if err != nil {
		return netip.Addr{}, err
	}
	if want.IsValid() {
		if !r.Contains(want) || want == r.Gateway {
			return netip.Addr{}, fmt.Errorf("requested address %s is not assignable in range %s-%s", want, r.Start, r.End)
		}
		if owner, ok := used[want]; ok && owner != key {
			return netip.Addr{}, fmt.Errorf("requested address %s is in use by %s: %w", want, owner, ErrIPTaken)
		}
		ok, err := a.Store.ReserveIP(key, want, r.ID())
		if err != nil {
			return netip.Addr{}, err
		}
		if !ok {
			return netip.Addr{}, fmt.Errorf("requested address %s: %w", want, ErrIPTaken)
		}
		return want, nil
	}
	start := r.Start
	if last, ok, err := a.Store.LastReserved(r.ID()); err != nil {
		return netip.Addr{}, err
	} else if ok && r.Contains(last) && last != r.End {
		start = last.Next()
	}
	ip := start
	for {
		if _, taken := used[ip]; !taken && ip != r.Gateway {
			ok, err := a.Store.ReserveIP(key, ip, r.ID())
			if err != nil {
				return netip.Addr{}, err
			}
			if ok {
				return ip, nil
			}
		}
		if ip == r.End {
			ip = r.Start
		} else {
			ip = ip.Next()
		}
		if ip == start {
			break
		}
	}
	inUse := 0
	for u := range used {
		if r.Contains(u) {
			inUse++
		}
	}
	return netip.Addr{}, &ExhaustedError{Subnet: r.Subnet.Masked(), InUse: inUse}
}

// ExhaustedError says a range has no free address. It wraps ErrExhausted.
type ExhaustedError struct {
	Subnet netip.Prefix
	InUse  int
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("no free address in range %s (%d in use)", e.Subnet, e.InUse)
}

func (e *ExhaustedError) Unwrap() error { return ErrExhausted }

// ReservePorts reserves every port for key, or none: on a conflict it
// releases nothing that was held before and returns an error wrapping
// ErrPortTaken that names the owner.
func (a *Allocator) ReservePorts(key string, ports []Port) error {
	held, err := a.Store.Ports()
	if err != nil {
		return err
	}
	for i, p := range ports {
		for q, owner := range held {
			if owner != key && p.conflicts(q) {
				return &PortConflictError{Port: p, Owner: owner}
			}
		}
		for _, q := range ports[:i] {
			if p.conflicts(q) {
				return fmt.Errorf("host port %s is mapped twice in this request", p)
			}
		}
	}
	for _, p := range ports {
		ok, err := a.Store.ReservePort(key, p)
		if err != nil {
			_ = a.Store.ReleasePorts(key)
			return err
		}
		if !ok {
			_ = a.Store.ReleasePorts(key)
			return &PortConflictError{Port: p}
		}
	}
	return nil
}

// PortConflictError says a host port is held by another attachment.
type PortConflictError struct {
	Port  Port
	Owner string // store key of the owner, if known
}

func (e *PortConflictError) Error() string {
	if e.Owner == "" {
		return fmt.Sprintf("host port %s is already allocated", e.Port)
	}
	return fmt.Sprintf("host port %s is already allocated to %s", e.Port, e.Owner)
}

func (e *PortConflictError) Unwrap() error { return ErrPortTaken }

// Release frees every address and port of key.
func (a *Allocator) Release(key string) error {
	return errors.Join(a.Store.ReleaseIPs(key), a.Store.ReleasePorts(key))
}
