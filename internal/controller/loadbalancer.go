package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/lbipam"
	"github.com/podnet/podnet/internal/store"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

var serviceKind, _ = api.KindOf(&corev1.Service{})

// LoadBalancer gives every type LoadBalancer Service an address from the
// cluster's pool (ClusterConfig.LoadBalancerRange, `podnet server
// --lb-range`), claimed through lbipam, and writes it to
// status.loadBalancer.ingress[0].ip. A requested spec.loadBalancerIP is
// honoured if it is in the pool and free; otherwise the Service stays
// <pending> with a log line saying why. The address is released when the
// Service is deleted or stops being a LoadBalancer (its status is then
// cleared), or when the pool no longer contains it (the Service then gets
// a new one). Without a pool, LoadBalancer Services stay <pending>.
// Nodes announce the addresses (internal/l2announce); this loop only
// allocates.
type LoadBalancer struct {
	s      *store.Store
	log    *slog.Logger
	resync time.Duration
	alloc  *lbipam.Allocator
	// pending remembers why a Service is pending, so the reason is logged
	// once per change and not every pass.
	pending map[string]string
}

// NewLoadBalancer returns the load-balancer address controller.
func NewLoadBalancer(s *store.Store, log *slog.Logger, resync time.Duration) *LoadBalancer {
	return &LoadBalancer{s: s, log: log.With("controller", "loadbalancer"), resync: resync,
		alloc: lbipam.New(s.Client()), pending: map[string]string{}}
}

func (c *LoadBalancer) Name() string { return "loadbalancer" }

// Run keeps a cache of Services (list + watch, internal/informer) and
// reconciles from it every resync and whenever a Service or the cluster
// configuration changes, so a pass reads no Services from the store: only
// the cluster configuration and the load-balancer claims (one key each per
// LoadBalancer Service), which are the truth this loop writes.
func (c *LoadBalancer) Run(ctx context.Context) error {
	var cs caches
	svcs := addCache[*corev1.Service](&cs, c.s, serviceKind, c.log)
	go watchKeys(ctx, c.s.Client(), store.ClusterConfigKey, cs.kick())
	cs.run(ctx, c.resync, c.log, "reconcile load-balancer addresses", func(ctx context.Context) error {
		return c.reconcile(ctx, svcs.List)
	})
	return nil
}

// Reconcile runs one pass over all Services and claims, read from the
// store.
func (c *LoadBalancer) Reconcile(ctx context.Context) error {
	return c.reconcile(ctx, nil)
}

// reconcile runs one pass. services returns the Services to reconcile
// (a cache's contents); nil lists them from the store. It is called after
// the claims are read: a cache never goes back to an older state, and this
// loop claims only for Services it has seen, so a claim whose Service is
// missing from the cache is still an orphan.
func (c *LoadBalancer) reconcile(ctx context.Context, services func() []*corev1.Service) error {
	cfg, ok, err := c.s.ClusterConfig(ctx)
	if err != nil || !ok {
		return err
	}
	var pool *lbipam.Pool
	if cfg.LoadBalancerRange != "" {
		p, err := lbipam.ParsePool(cfg.LoadBalancerRange)
		if err != nil {
			return fmt.Errorf("cluster config loadBalancerRange: %w", err)
		}
		pool = &p
	}
	// Claims before Services: only this loop claims, so a claim whose
	// Service is missing from the later list is an orphan.
	claims, err := c.alloc.Claims(ctx)
	if err != nil {
		return err
	}
	held := map[string]netip.Addr{}
	for ip, owner := range claims {
		held[owner] = ip
	}
	var svcs []*corev1.Service
	if services != nil {
		svcs = services()
	} else {
		objs, _, err := c.s.List(ctx, serviceKind, "")
		if err != nil {
			return err
		}
		svcs = make([]*corev1.Service, 0, len(objs))
		for _, o := range objs {
			svcs = append(svcs, o.(*corev1.Service))
		}
	}
	wanted := map[string]bool{}
	for _, svc := range svcs {
		owner := lbipam.Owner(svc.Namespace, svc.Name)
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || svc.DeletionTimestamp != nil {
			continue
		}
		wanted[owner] = true
		ip, has := held[owner]
		if err := c.service(ctx, svc, pool, ip, has); err != nil {
			c.log.Warn("load-balancer address", "service", owner, "err", err)
		}
	}
	// Release what no LoadBalancer Service wants any more, and clear the
	// status of Services that stopped being LoadBalancers.
	for owner, ip := range held {
		if wanted[owner] {
			continue
		}
		if ok, err := c.alloc.Release(ctx, ip, owner); err != nil {
			c.log.Warn("release load-balancer address", "service", owner, "ip", ip, "err", err)
		} else if ok {
			c.log.Info("released load-balancer address", "service", owner, "ip", ip)
		}
	}
	for _, svc := range svcs {
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer && len(svc.Status.LoadBalancer.Ingress) > 0 {
			if err := c.setIngress(ctx, svc, netip.Addr{}); err != nil {
				c.log.Warn("clear load-balancer status", "service", lbipam.Owner(svc.Namespace, svc.Name), "err", err)
			}
		}
	}
	for owner := range c.pending {
		if !wanted[owner] {
			delete(c.pending, owner)
		}
	}
	return nil
}

// service makes one LoadBalancer Service hold an address and show it.
func (c *LoadBalancer) service(ctx context.Context, svc *corev1.Service, pool *lbipam.Pool, ip netip.Addr, has bool) error {
	owner := lbipam.Owner(svc.Namespace, svc.Name)
	var want netip.Addr
	if s := svc.Spec.LoadBalancerIP; s != "" {
		a, err := netip.ParseAddr(s)
		if err != nil {
			c.setPending(owner, fmt.Sprintf("spec.loadBalancerIP %q is not an IP address", s))
			return nil
		}
		want = a
	}
	// Drop what the Service holds if it is not what it should hold.
	if has && (pool == nil || !pool.Contains(ip) || (want.IsValid() && want != ip)) {
		if _, err := c.alloc.Release(ctx, ip, owner); err != nil {
			return err
		}
		why := "the pool no longer contains it"
		if want.IsValid() && want != ip && pool != nil && pool.Contains(ip) {
			why = "spec.loadBalancerIP asks for " + want.String()
		}
		c.log.Info("released load-balancer address", "service", owner, "ip", ip, "reason", why)
		has = false
	}
	if !has {
		switch {
		case pool == nil:
			c.setPending(owner, "the cluster has no load-balancer pool (podnet server --lb-range, or podnet cluster create --lb-range); EXTERNAL-IP stays <pending>")
			return c.setIngress(ctx, svc, netip.Addr{})
		case want.IsValid():
			if !pool.Contains(want) {
				c.setPending(owner, fmt.Sprintf("spec.loadBalancerIP %s is outside the load-balancer pool %s", want, pool))
				return c.setIngress(ctx, svc, netip.Addr{})
			}
			if err := c.alloc.Claim(ctx, want, owner); err != nil {
				c.setPending(owner, fmt.Sprintf("spec.loadBalancerIP: %v", err))
				return c.setIngress(ctx, svc, netip.Addr{})
			}
			ip = want
		default:
			a, ok, err := c.alloc.Allocate(ctx, *pool, owner)
			if err != nil {
				return err
			}
			if !ok {
				c.setPending(owner, fmt.Sprintf("the load-balancer pool %s is exhausted (all %d addresses in use)", pool, pool.Size()))
				return c.setIngress(ctx, svc, netip.Addr{})
			}
			ip = a
		}
		c.log.Info("assigned load-balancer address", "service", owner, "ip", ip)
	}
	delete(c.pending, owner)
	return c.setIngress(ctx, svc, ip)
}

func (c *LoadBalancer) setPending(owner, why string) {
	if c.pending[owner] == why {
		return
	}
	c.pending[owner] = why
	c.log.Warn("load-balancer address pending", "service", owner, "reason", why)
}

// setIngress writes status.loadBalancer.ingress = [{ip}] (or nothing for
// an invalid ip) if it differs.
func (c *LoadBalancer) setIngress(ctx context.Context, svc *corev1.Service, ip netip.Addr) error {
	want := []corev1.LoadBalancerIngress(nil)
	if ip.IsValid() {
		want = []corev1.LoadBalancerIngress{{IP: ip.String()}}
	}
	if ingressEqual(svc.Status.LoadBalancer.Ingress, want) {
		return nil
	}
	_, err := c.s.Mutate(ctx, serviceKind, svc.Namespace, svc.Name, func(o api.Object) error {
		cur := o.(*corev1.Service)
		if cur.UID != svc.UID {
			return nil // replaced meanwhile; the next pass handles it
		}
		cur.Status.LoadBalancer.Ingress = want
		return nil
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("write status.loadBalancer: %w", err)
	}
	return nil
}

func ingressEqual(a, b []corev1.LoadBalancerIngress) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].IP != b[i].IP || a[i].Hostname != b[i].Hostname {
			return false
		}
	}
	return true
}
