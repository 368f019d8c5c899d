package api

import (
	"fmt"
	"net/netip"
	"strings"
)

// AddrRange is an inclusive range of IPv4 addresses, such as a
// load-balancer pool.
type AddrRange struct {
	First, Last netip.Addr
}

// ParseAddrRange reads "192.168.250.200-192.168.250.250" or a CIDR such as
// "192.168.250.192/27" (every address of it, network and broadcast
// included only for /31 and /32).
func ParseAddrRange(s string) (AddrRange, error) {
	s = strings.TrimSpace(s)
	if a, b, ok := strings.Cut(s, "-"); ok {
		first, err := netip.ParseAddr(strings.TrimSpace(a))
		if err != nil {
			return AddrRange{}, fmt.Errorf("load-balancer range %q: first address: %w", s, err)
		}
		last, err := netip.ParseAddr(strings.TrimSpace(b))
		if err != nil {
			return AddrRange{}, fmt.Errorf("load-balancer range %q: last address: %w", s, err)
		}
		if !first.Is4() || !last.Is4() {
			return AddrRange{}, fmt.Errorf("load-balancer range %q: want IPv4 addresses", s)
		}
		if last.Less(first) {
			return AddrRange{}, fmt.Errorf("load-balancer range %q: last address before the first", s)
		}
		return AddrRange{First: first, Last: last}, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return AddrRange{}, fmt.Errorf("load-balancer range %q: want first-last (192.168.250.200-192.168.250.250) or a CIDR: %w", s, err)
	}
	if !p.Addr().Is4() {
		return AddrRange{}, fmt.Errorf("load-balancer range %q: want IPv4", s)
	}
	if p.Masked() != p {
		return AddrRange{}, fmt.Errorf("load-balancer range %q: host bits set (did you mean %s?)", s, p.Masked())
	}
	first := p.Addr()
	last := lastOf(p)
	if p.Bits() < 31 {
		first, last = first.Next(), last.Prev()
	}
	return AddrRange{First: first, Last: last}, nil
}

func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= (1 << (32 - p.Bits())) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// Contains reports whether ip is in the pool.
func (p AddrRange) Contains(ip netip.Addr) bool {
	return ip.Is4() && !ip.Less(p.First) && !p.Last.Less(ip)
}

// Size is the number of addresses.
func (p AddrRange) Size() int {
	a, b := p.First.As4(), p.Last.As4()
	u := func(x [4]byte) int { return int(x[0])<<24 | int(x[1])<<16 | int(x[2])<<8 | int(x[3]) }
	return u(b) - u(a) + 1
}

// Overlaps reports whether any address of the pool is in prefix.
func (p AddrRange) Overlaps(prefix netip.Prefix) bool {
	prefix = prefix.Masked()
	return prefix.Contains(p.First) || prefix.Contains(p.Last) || (p.First.Less(prefix.Addr()) && prefix.Addr().Less(p.Last))
}

// String is the canonical "first-last".
func (p AddrRange) String() string { return p.First.String() + "-" + p.Last.String() }

// FirstFree returns the lowest address of the pool not in used.
func (p AddrRange) FirstFree(used map[netip.Addr]bool) (netip.Addr, bool) {
	for a := p.First; ; a = a.Next() {
		if !used[a] {
			return a, true
		}
		if a == p.Last {
			return netip.Addr{}, false
		}
	}
}
