// Package clusteripam splits the cluster CIDR into per-node pod CIDRs and
// hands them out atomically through etcd.
//
// The allocation logic (Pool) is pure and deterministic: the cluster CIDR
// is cut into blocks of the node mask size, numbered from the lowest
// address, and a node gets the lowest block nobody holds. The etcd side
// (Allocator) records each claim twice, in one transaction that succeeds
// only if neither key exists:
//
//	/podnet/ipam/nodecidrs/<cidr> = <node>   (who holds a block)
//	/podnet/ipam/nodes/<node>     = <cidr>   (what a node holds)
//
// so two nodes can never hold one block and one node never holds two. A
// lost race re-reads the claims and tries the next free block.
package clusteripam

import (
	"errors"
	"fmt"
	"math/big"
	"net/netip"
)

// ErrExhausted is wrapped by errors when the cluster CIDR has no free block.
var ErrExhausted = errors.New("cluster CIDR exhausted")

// Pool is a cluster CIDR split into node blocks of one prefix length.
type Pool struct {
	cluster netip.Prefix
	bits    int
}

// NewPool checks and returns the pool of cluster split into /bits blocks.
func NewPool(cluster string, bits int) (Pool, error) {
	p, err := netip.ParsePrefix(cluster)
	if err != nil {
		return Pool{}, fmt.Errorf("cluster CIDR %q: %w", cluster, err)
	}
	if p.Masked() != p {
		return Pool{}, fmt.Errorf("cluster CIDR %q: host bits set", cluster)
	}
	if bits <= p.Bits() || bits > p.Addr().BitLen() {
		return Pool{}, fmt.Errorf("node CIDR mask size /%d: must be longer than the cluster CIDR's /%d and at most /%d", bits, p.Bits(), p.Addr().BitLen())
	}
	return Pool{cluster: p, bits: bits}, nil
}

// Cluster returns the cluster CIDR.
func (p Pool) Cluster() netip.Prefix { return p.cluster }

// Bits returns the node block prefix length.
func (p Pool) Bits() int { return p.bits }

// Size returns how many node blocks the pool has (capped at 1<<30, more
// than any cluster needs).
func (p Pool) Size() int {
	n := p.bits - p.cluster.Bits()
	if n >= 30 {
		return 1 << 30
	}
	return 1 << n
}

// Block returns the i-th node block (0-based).
func (p Pool) Block(i int) netip.Prefix {
	base := new(big.Int).SetBytes(p.cluster.Addr().AsSlice())
	off := new(big.Int).Lsh(big.NewInt(int64(i)), uint(p.cluster.Addr().BitLen()-p.bits))
	base.Add(base, off)
	b := base.FillBytes(make([]byte, p.cluster.Addr().BitLen()/8))
	a, _ := netip.AddrFromSlice(b)
	return netip.PrefixFrom(a, p.bits)
}

// Contains reports whether c is exactly one of the pool's blocks.
func (p Pool) Contains(c netip.Prefix) bool {
	return c.Bits() == p.bits && c.Masked() == c && p.cluster.Contains(c.Addr())
}

// FirstFree returns the lowest block not in used, or an error wrapping
// ErrExhausted naming the node that asked.
func (p Pool) FirstFree(used map[netip.Prefix]bool, node string) (netip.Prefix, error) {
	n := p.Size()
	for i := 0; i < n; i++ {
		if b := p.Block(i); !used[b] {
			return b, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("cluster CIDR %s has no free /%d for node %s (all %d in use): %w", p.cluster, p.bits, node, n, ErrExhausted)
}
