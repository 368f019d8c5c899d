package lbipam

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
	IPPrefix      = "/podnet/ipam/lb/"
	ServicePrefix = "/podnet/ipam/lbsvc/"
)

// ErrTaken is wrapped when a requested address is held by another Service.
var ErrTaken = errors.New("load-balancer address held by another Service")

// Allocator claims load-balancer addresses in etcd.
type Allocator struct{ c *clientv3.Client }

// New returns an allocator storing its claims through c.
func New(c *clientv3.Client) *Allocator { return &Allocator{c: c} }

func ipKey(ip netip.Addr) string          { return IPPrefix + ip.String() }
func svcKey(owner string) string          { return ServicePrefix + owner }
func Owner(namespace, name string) string { return namespace + "/" + name }

// pair is the claim of ip by owner: the address key names the Service,
// the Service key names the address.
func pair(ip netip.Addr, owner string) claim.Pair {
	return claim.Pair{ValueKey: ipKey(ip), Owner: owner, OwnerKey: svcKey(owner), Value: ip.String()}
}

// Claims returns every claimed address and its owner ("ns/name").
func (a *Allocator) Claims(ctx context.Context) (map[netip.Addr]string, error) {
	resp, err := a.c.Get(ctx, IPPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("list load-balancer claims: %w", err)
	}
	out := make(map[netip.Addr]string, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		ip, err := netip.ParseAddr(strings.TrimPrefix(string(kv.Key), IPPrefix))
		if err != nil {
			continue
		}
		out[ip] = string(kv.Value)
	}
	return out, nil
}

// Held returns the address owner holds, if any.
func (a *Allocator) Held(ctx context.Context, owner string) (netip.Addr, bool, error) {
	resp, err := a.c.Get(ctx, svcKey(owner))
	if err != nil {
		return netip.Addr{}, false, fmt.Errorf("service %s: read load-balancer claim: %w", owner, err)
	}
	if len(resp.Kvs) == 0 {
		return netip.Addr{}, false, nil
	}
	ip, err := netip.ParseAddr(string(resp.Kvs[0].Value))
	if err != nil {
		return netip.Addr{}, false, fmt.Errorf("service %s: load-balancer claim %q: %w", owner, resp.Kvs[0].Value, err)
	}
	return ip, true, nil
}

// Claim records that owner holds ip. It succeeds if owner already holds
// ip, and fails wrapping ErrTaken if another Service holds it or if owner
// holds another address (release that first).
func (a *Allocator) Claim(ctx context.Context, ip netip.Addr, owner string) error {
	r, err := claim.Create(ctx, a.c, pair(ip, owner))
	if err != nil {
		return fmt.Errorf("service %s: claim load-balancer address %s: %w", owner, ip, err)
	}
	if r.Created {
		return nil
	}
	holder, held := r.Holder, r.Held
	switch {
	case holder == owner && held == ip.String():
		return nil
	case holder != "" && holder != owner:
		return fmt.Errorf("load-balancer address %s is held by service %s: %w", ip, holder, ErrTaken)
	case held != "" && held != ip.String():
		return fmt.Errorf("service %s already holds load-balancer address %s, not %s", owner, held, ip)
	}
	return fmt.Errorf("service %s: claim of load-balancer address %s changed while claiming; retry", owner, ip)
}

// Allocate claims the lowest free address of pool for owner, or returns
// the one it holds already. ok is false when the pool is exhausted.
func (a *Allocator) Allocate(ctx context.Context, pool Pool, owner string) (ip netip.Addr, ok bool, err error) {
	for attempt := 0; attempt < 100; attempt++ {
		if ip, ok, err := a.Held(ctx, owner); err != nil || ok {
			return ip, ok, err
		}
		claims, err := a.Claims(ctx)
		if err != nil {
			return netip.Addr{}, false, err
		}
		used := make(map[netip.Addr]bool, len(claims))
		for ip := range claims {
			used[ip] = true
		}
		ip, ok := pool.FirstFree(used)
		if !ok {
			return netip.Addr{}, false, nil
		}
		err = a.Claim(ctx, ip, owner)
		if err == nil {
			return ip, true, nil
		}
		if !errors.Is(err, ErrTaken) {
			return netip.Addr{}, false, err
		}
	}
	return netip.Addr{}, false, fmt.Errorf("service %s: load-balancer allocation kept conflicting", owner)
}

// Release frees ip if owner holds it; released is false if it did not.
func (a *Allocator) Release(ctx context.Context, ip netip.Addr, owner string) (released bool, err error) {
	released, err = claim.Release(ctx, a.c, pair(ip, owner))
	if err != nil {
		return false, fmt.Errorf("service %s: release load-balancer address %s: %w", owner, ip, err)
	}
	return released, nil
}
