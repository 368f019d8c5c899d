package controller

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/podnet/podnet/internal/agent"
	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/clusteripam"
	"github.com/podnet/podnet/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Reasons the node lifecycle controller writes.
const (
	ReasonNodeStatusUnknown = "NodeStatusUnknown"
	ReasonCIDRReclaimed     = "CIDRReclaimed"
)

var nodeKind, _ = api.KindOf(&corev1.Node{})

// NodeLifecycle watches node leases. It marks a node without a lease
// Ready=Unknown, reclaims the pod CIDR of a node not Ready for longer than
// the cluster's NodeGracePeriod (no manual step, unlike Weave's rmpeer),
// and releases the CIDR of a deleted node at once.
type NodeLifecycle struct {
	s      *store.Store
	log    *slog.Logger
	resync time.Duration
	now    func() time.Time
}

// NewNodeLifecycle returns the node lifecycle controller.
func NewNodeLifecycle(s *store.Store, log *slog.Logger, resync time.Duration) *NodeLifecycle {
	return &NodeLifecycle{s: s, log: log.With("controller", "node-lifecycle"), resync: resync, now: time.Now}
}

func (c *NodeLifecycle) Name() string { return "node-lifecycle" }

// Run reconciles every resync and whenever a node or a lease changes.
func (c *NodeLifecycle) Run(ctx context.Context) error {
	k := make(kick, 1)
	go watchKeys(ctx, c.s.Client(), store.ListKey(nodeKind, ""), k)
	go watchKeys(ctx, c.s.Client(), agent.NodeLeasePrefix, k)
	t := time.NewTicker(c.resync)
	defer t.Stop()
	for {
		if err := c.Reconcile(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("reconcile nodes", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-k:
		}
	}
}

// watchKeys pokes k on every change under prefix, re-watching on failure.
func watchKeys(ctx context.Context, cli *clientv3.Client, prefix string, k kick) {
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly()) {
			if resp.Err() != nil {
				break
			}
			k.poke()
		}
		cancel()
		sleep(ctx, time.Second)
	}
}

// Reconcile runs one pass over all nodes and claims.
func (c *NodeLifecycle) Reconcile(ctx context.Context) error {
	cfg, ok, err := c.s.ClusterConfig(ctx)
	if err != nil || !ok {
		return err
	}
	pool, err := clusteripam.NewPool(cfg.ClusterCIDR, cfg.NodeCIDRMaskSize)
	if err != nil {
		return err
	}
	alloc := clusteripam.New(c.s.Client(), pool)
	// Claims before nodes: an agent creates its Node before claiming, so a
	// claim whose node is missing from the later list is truly orphaned.
	claims, _, err := alloc.Claims(ctx)
	if err != nil {
		return err
	}
	resp, err := c.s.Client().Get(ctx, agent.NodeLeasePrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return fmt.Errorf("list node leases: %w", err)
	}
	leased := map[string]bool{}
	for _, kv := range resp.Kvs {
		leased[string(kv.Key[len(agent.NodeLeasePrefix):])] = true
	}
	objs, _, err := c.s.List(ctx, nodeKind, "")
	if err != nil {
		return err
	}
	exists := map[string]bool{}
	for _, o := range objs {
		n := o.(*corev1.Node)
		exists[n.Name] = true
		if err := c.node(ctx, n, leased[n.Name], cfg.NodeGracePeriod.Duration, alloc, claims); err != nil {
			c.log.Warn("reconcile node", "node", n.Name, "err", err)
		}
	}
	for cidr, owner := range claims {
		if exists[owner] {
			continue
		}
		if ok, err := alloc.Release(ctx, cidr, owner); err != nil {
			c.log.Warn("release pod CIDR of deleted node", "node", owner, "podCIDR", cidr, "err", err)
		} else if ok {
			c.log.Info("released pod CIDR of deleted node", "node", owner, "podCIDR", cidr)
		}
	}
	return nil
}

func (c *NodeLifecycle) node(ctx context.Context, n *corev1.Node, leased bool, grace time.Duration, alloc *clusteripam.Allocator, claims map[netip.Prefix]string) error {
	now := c.now()
	ready := readyCondition(n)
	if !leased && ready.Status == corev1.ConditionTrue {
		o, err := c.s.Mutate(ctx, nodeKind, "", n.Name, func(o api.Object) error {
			cur := o.(*corev1.Node)
			if readyCondition(cur).Status != corev1.ConditionTrue {
				return nil
			}
			for i := range cur.Status.Conditions {
				if cur.Status.Conditions[i].Type == corev1.NodeReady {
					cur.Status.Conditions[i].Status = corev1.ConditionUnknown
					cur.Status.Conditions[i].Reason = ReasonNodeStatusUnknown
					cur.Status.Conditions[i].Message = "the node's agent stopped renewing its lease"
					cur.Status.Conditions[i].LastTransitionTime = metav1.NewTime(now.UTC().Truncate(time.Second))
				}
			}
			return nil
		})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("mark node %s not ready: %w", n.Name, err)
		}
		c.log.Warn("node lease expired: node not ready", "node", n.Name)
		n = o.(*corev1.Node)
		ready = readyCondition(n)
	}
	if leased || ready.Status == corev1.ConditionTrue {
		return nil
	}
	since := ready.LastTransitionTime.Time
	if since.IsZero() {
		since = n.CreationTimestamp.Time
	}
	if now.Sub(since) < grace {
		return nil
	}
	var held []netip.Prefix
	for cidr, owner := range claims {
		if owner == n.Name {
			held = append(held, cidr)
		}
	}
	if n.Spec.PodCIDR == "" && len(held) == 0 {
		return nil
	}
	// The lease's absence is re-checked in the release transaction, so an
	// agent that came back meanwhile keeps its range.
	noLease := clientv3.Compare(clientv3.CreateRevision(agent.NodeLeaseKey(n.Name)), "=", 0)
	for _, cidr := range held {
		ok, err := alloc.Release(ctx, cidr, n.Name, noLease)
		if err != nil {
			return err
		}
		if !ok {
			return nil // the agent is back
		}
	}
	msg := fmt.Sprintf("node not ready for more than %s; pod CIDR %s reclaimed", grace, orNone(n.Spec.PodCIDR))
	_, err := c.s.Mutate(ctx, nodeKind, "", n.Name, func(o api.Object) error {
		cur := o.(*corev1.Node)
		if readyCondition(cur).Status == corev1.ConditionTrue {
			return nil
		}
		cur.Spec.PodCIDR, cur.Spec.PodCIDRs = "", nil
		agent.SetNodeCondition(cur, corev1.NodeCondition{Type: agent.NodePodCIDRAllocated, Status: corev1.ConditionFalse, Reason: ReasonCIDRReclaimed, Message: msg}, metav1.NewTime(now.UTC().Truncate(time.Second)))
		return nil
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("node %s: clear spec.podCIDR: %w", n.Name, err)
	}
	c.log.Warn("reclaimed pod CIDR of a node not ready past the grace period", "node", n.Name, "podCIDR", n.Spec.PodCIDR, "gracePeriod", grace)
	return nil
}

func readyCondition(n *corev1.Node) corev1.NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c
		}
	}
	return corev1.NodeCondition{}
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
