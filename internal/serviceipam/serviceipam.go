// Package serviceipam owns the ranges Service cluster IPs and nodePorts
// come from, their claim keys in etcd and the search for free values.
//
// A claim is one etcd key per value, created in the same transaction as
// the Service write that takes it (internal/store does the transaction):
//
//	/podnet/ipam/serviceips/<ip>     = <namespace>/<name>
//	/podnet/ipam/nodeports/<port>    = <namespace>/<name>
//
// so two Services can never hold one value, a Service is never stored
// without its claims and its deletion frees them. The search probes
// candidates from a random start, a batch of key-existence checks per etcd
// round trip, so it costs one round trip however many Services exist; only
// a nearly full range falls back to reading the claimed keys.
package serviceipam

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Key prefixes of the claims.
const (
	IPPrefix       = "/podnet/ipam/serviceips/"
	NodePortPrefix = "/podnet/ipam/nodeports/"
)

// ErrFull is wrapped when a range has no free value.
var ErrFull = errors.New("range is full")

// IPKey is the claim key of a cluster IP.
func IPKey(ip netip.Addr) string { return IPPrefix + ip.String() }

// NodePortKey is the claim key of a nodePort.
func NodePortKey(port int32) string { return NodePortPrefix + strconv.Itoa(int(port)) }

// IPRange is the service CIDR.
type IPRange struct {
	prefix netip.Prefix
	base   uint32
	size   uint32 // addresses in the prefix
}

// ParseIPRange parses an IPv4 service CIDR such as 10.96.0.0/12.
func ParseIPRange(cidr string) (IPRange, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return IPRange{}, fmt.Errorf("service CIDR %q: %w", cidr, err)
	}
	if !p.Addr().Is4() {
		return IPRange{}, fmt.Errorf("service CIDR %q: only IPv4 is supported", cidr)
	}
	if p.Masked() != p {
		return IPRange{}, fmt.Errorf("service CIDR %q: host bits set (did you mean %s?)", cidr, p.Masked())
	}
	if p.Bits() > 28 {
		return IPRange{}, fmt.Errorf("service CIDR %q: too small (at most /28)", cidr)
	}
	b := p.Addr().As4()
	return IPRange{prefix: p, base: uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]), size: 1 << (32 - p.Bits())}, nil
}

func (r IPRange) String() string { return r.prefix.String() }

// Contains says whether ip is an address Services may hold: inside the
// CIDR, neither its network nor its broadcast address.
func (r IPRange) Contains(ip netip.Addr) bool {
	if !r.prefix.Contains(ip) {
		return false
	}
	off := r.offset(ip)
	return off != 0 && off != r.size-1
}

// DNS is the address kept for cluster DNS (the CIDR's tenth address,
// 10.96.0.10 by default): given only when a Service asks for it.
func (r IPRange) DNS() netip.Addr { return r.addr(10) }

func (r IPRange) addr(off uint32) netip.Addr {
	v := r.base + off
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func (r IPRange) offset(ip netip.Addr) uint32 {
	b := ip.As4()
	return (uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])) - r.base
}

// candidates are the dynamically allocatable offsets: 1..size-2 minus DNS.
func (r IPRange) dynamic(off uint32) bool { return off != 0 && off != r.size-1 && off != 10 }

// PortRange is the nodePort range.
type PortRange struct{ Lo, Hi int32 }

// ParsePortRange parses "30000-32767".
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return PortRange{}, fmt.Errorf("nodePort range %q: want FROM-TO, e.g. 30000-32767", s)
	}
	l, err1 := strconv.Atoi(strings.TrimSpace(lo))
	h, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if err1 != nil || err2 != nil || l < 1 || h > 65535 || l > h {
		return PortRange{}, fmt.Errorf("nodePort range %q: want FROM-TO with 1 <= FROM <= TO <= 65535", s)
	}
	return PortRange{Lo: int32(l), Hi: int32(h)}, nil
}

func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.Lo, r.Hi) }

// Contains says whether p is in the range.
func (r PortRange) Contains(p int32) bool { return p >= r.Lo && p <= r.Hi }

// batch is how many candidates one round trip checks (etcd allows 128
// operations per transaction).
const batch = 64

// FreeIPs returns n distinct unclaimed dynamic addresses, none in skip.
// The caller claims them in its own transaction (and retries on a lost
// race).
func FreeIPs(ctx context.Context, c *clientv3.Client, r IPRange, n int, skip map[netip.Addr]bool) ([]netip.Addr, error) {
	keys := func(off uint32) (string, bool) {
		a := r.addr(off)
		if !r.dynamic(off) || skip[a] {
			return "", false
		}
		return IPKey(a), true
	}
	offs, err := free(ctx, c, uint64(r.size), n, func(i uint64) (string, bool) { return keys(uint32(i)) }, IPPrefix, func(k string) (uint64, bool) {
		a, err := netip.ParseAddr(strings.TrimPrefix(k, IPPrefix))
		if err != nil || !r.prefix.Contains(a) {
			return 0, false
		}
		return uint64(r.offset(a)), true
	})
	if err != nil {
		return nil, fmt.Errorf("failed to allocate a service IP from %s: %w", r, err)
	}
	out := make([]netip.Addr, len(offs))
	for i, o := range offs {
		out[i] = r.addr(uint32(o))
	}
	return out, nil
}

// FreePorts returns n distinct unclaimed nodePorts, none in skip.
func FreePorts(ctx context.Context, c *clientv3.Client, r PortRange, n int, skip map[int32]bool) ([]int32, error) {
	size := uint64(r.Hi-r.Lo) + 1
	offs, err := free(ctx, c, size, n, func(i uint64) (string, bool) {
		p := r.Lo + int32(i)
		if skip[p] {
			return "", false
		}
		return NodePortKey(p), true
	}, NodePortPrefix, func(k string) (uint64, bool) {
		p, err := strconv.Atoi(strings.TrimPrefix(k, NodePortPrefix))
		if err != nil || !r.Contains(int32(p)) {
			return 0, false
		}
		return uint64(int32(p) - r.Lo), true
	})
	if err != nil {
		return nil, fmt.Errorf("failed to allocate a nodePort from %s: %w", r, err)
	}
	out := make([]int32, len(offs))
	for i, o := range offs {
		out[i] = r.Lo + int32(o)
	}
	return out, nil
}

// free finds n free offsets in [0,size): probing from a random start in
// batches of key-existence checks; after a few batches without enough (a
// nearly full range) it reads the claimed keys once and scans.
func free(ctx context.Context, c *clientv3.Client, size uint64, n int, key func(uint64) (string, bool), prefix string, parse func(string) (uint64, bool)) ([]uint64, error) {
	var out []uint64
	start := rand.Uint64N(size)
	var probed uint64
	for round := 0; round < 4 && probed < size && len(out) < n; round++ {
		var offs []uint64
		var ops []clientv3.Op
		for ; probed < size && len(ops) < batch; probed++ {
			off := (start + probed) % size
			if k, ok := key(off); ok {
				offs = append(offs, off)
				ops = append(ops, clientv3.OpGet(k, clientv3.WithCountOnly()))
			}
		}
		if len(ops) == 0 {
			continue
		}
		resp, err := c.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return nil, err
		}
		for i, r := range resp.Responses {
			if r.GetResponseRange().Count == 0 && len(out) < n {
				out = append(out, offs[i])
			}
		}
	}
	if len(out) == n {
		return out, nil
	}
	if probed >= size {
		return nil, ErrFull
	}
	// Nearly full: one read of every claim, then a scan.
	resp, err := c.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	used := make(map[uint64]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if off, ok := parse(string(kv.Key)); ok {
			used[off] = true
		}
	}
	for _, o := range out {
		used[o] = true
	}
	for i := uint64(0); i < size && len(out) < n; i++ {
		off := (start + probed + i) % size
		if _, ok := key(off); ok && !used[off] {
			out = append(out, off)
			used[off] = true
		}
	}
	if len(out) < n {
		return nil, ErrFull
	}
	return out, nil
}
