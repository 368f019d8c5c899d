package clusteripam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/podnet/podnet/internal/claim"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Key prefixes of the claims.
const (
	CIDRPrefix = "/podnet/ipam/nodecidrs/"
	NodePrefix = "/podnet/ipam/nodes/"
)

// ErrTaken is wrapped when a requested block is held by another node.
var ErrTaken = errors.New("pod CIDR held by another node")

// Allocator hands out a Pool's blocks through etcd.
type Allocator struct {
	c    *clientv3.Client
	pool Pool
}

// New returns an allocator of pool's blocks stored through c.
func New(c *clientv3.Client, pool Pool) *Allocator { return &Allocator{c: c, pool: pool} }

// Pool returns the allocator's pool.
func (a *Allocator) Pool() Pool { return a.pool }

func cidrKey(c netip.Prefix) string { return CIDRPrefix + c.String() }
func nodeKey(node string) string    { return NodePrefix + node }

// pair is the claim of block c by node: the block key names the node, the
// node key names the block.
func pair(c netip.Prefix, node string) claim.Pair {
	return claim.Pair{ValueKey: cidrKey(c), Owner: node, OwnerKey: nodeKey(node), Value: c.String()}
}

// Claims returns every claimed block and its node, and the revision read.
func (a *Allocator) Claims(ctx context.Context) (map[netip.Prefix]string, int64, error) {
	resp, err := a.c.Get(ctx, CIDRPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("list pod CIDR claims: %w", err)
	}
	out := make(map[netip.Prefix]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		c, err := netip.ParsePrefix(strings.TrimPrefix(string(kv.Key), CIDRPrefix))
		if err != nil {
			continue // not ours to interpret
		}
		out[c] = string(kv.Value)
	}
	return out, resp.Header.Revision, nil
}

// Lookup returns the block node holds, if any.
func (a *Allocator) Lookup(ctx context.Context, node string) (netip.Prefix, bool, error) {
	resp, err := a.c.Get(ctx, nodeKey(node))
	if err != nil {
		return netip.Prefix{}, false, fmt.Errorf("node %s: read pod CIDR claim: %w", node, err)
	}
	if len(resp.Kvs) == 0 {
		return netip.Prefix{}, false, nil
	}
	c, err := netip.ParsePrefix(string(resp.Kvs[0].Value))
	if err != nil {
		return netip.Prefix{}, false, fmt.Errorf("node %s: pod CIDR claim %q: %w", node, resp.Kvs[0].Value, err)
	}
	return c, true, nil
}

// Allocate returns node's block: the one it already holds, else prefer if
// that is a free block of the pool, else the lowest free block. It fails
// with an error wrapping ErrExhausted when none is free.
func (a *Allocator) Allocate(ctx context.Context, node string, prefer netip.Prefix) (netip.Prefix, error) {
	for attempt := 0; ; attempt++ {
		if c, ok, err := a.Lookup(ctx, node); err != nil || ok {
			return c, err
		}
		claims, _, err := a.Claims(ctx)
		if err != nil {
			return netip.Prefix{}, err
		}
		used := make(map[netip.Prefix]bool, len(claims))
		for c := range claims {
			used[c] = true
		}
		want := prefer
		if !prefer.IsValid() || !a.pool.Contains(prefer) || used[prefer] {
			if want, err = a.pool.FirstFree(used, node); err != nil {
				return netip.Prefix{}, err
			}
		}
		ok, err := a.claim(ctx, want, node)
		if err != nil {
			return netip.Prefix{}, err
		}
		if ok {
			return want, nil
		}
		if attempt > 1000 {
			return netip.Prefix{}, fmt.Errorf("node %s: pod CIDR allocation kept conflicting", node)
		}
	}
}

// Claim records that node holds c (a static pod CIDR). It succeeds if node
// already holds c and fails wrapping ErrTaken if another node holds it.
func (a *Allocator) Claim(ctx context.Context, c netip.Prefix, node string) error {
	for {
		ok, err := a.claim(ctx, c, node)
		if err != nil || ok {
			return err
		}
		resp, err := a.c.Txn(ctx).Then(clientv3.OpGet(cidrKey(c)), clientv3.OpGet(nodeKey(node))).Commit()
		if err != nil {
			return fmt.Errorf("node %s: pod CIDR %s: %w", node, c, err)
		}
		owner, held := "", ""
		if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
			owner = string(kvs[0].Value)
		}
		if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
			held = string(kvs[0].Value)
		}
		switch {
		case owner == node && held == c.String():
			return nil
		case owner != "" && owner != node:
			return fmt.Errorf("node %s: pod CIDR %s is held by node %s: %w", node, c, owner, ErrTaken)
		case held != "" && held != c.String():
			return fmt.Errorf("node %s: already holds pod CIDR %s, not %s; delete the node to release it", node, held, c)
		}
		// Both keys vanished between the two reads: try again.
	}
}

// claim creates both keys if neither exists.
func (a *Allocator) claim(ctx context.Context, c netip.Prefix, node string) (bool, error) {
	r, err := claim.Create(ctx, a.c, pair(c, node))
	if err != nil {
		return false, fmt.Errorf("node %s: claim pod CIDR %s: %w", node, c, err)
	}
	return r.Created, nil
}

// Release frees c if node holds it; released is false if it did not (the
// block is free already, or someone else holds it) or a guard failed.
// Guards are extra conditions checked in the same transaction, e.g. that
// the node's lease key is still absent.
func (a *Allocator) Release(ctx context.Context, c netip.Prefix, node string, guards ...clientv3.Cmp) (released bool, err error) {
	released, err = claim.Release(ctx, a.c, pair(c, node), guards...)
	if err != nil {
		return false, fmt.Errorf("node %s: release pod CIDR %s: %w", node, c, err)
	}
	return released, nil
}
