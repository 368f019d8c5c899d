package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/clusteripam"
	"github.com/podnet/podnet/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Node leases and conditions.
const (
	// NodeLeasePrefix holds one key per live node agent, attached to an
	// etcd lease the agent keeps alive: /podnet/leases/nodes/<name>. The
	// node lifecycle controller turns a node without one NotReady.
	NodeLeasePrefix = "/podnet/leases/nodes/"
	// DefaultLeaseTTL is the node lease's time to live.
	DefaultLeaseTTL = 10 * time.Second
	// NodePodCIDRAllocated is False when the node has no pod CIDR: the
	// cluster CIDR is exhausted (reason CIDRExhausted) or the node's range
	// was reclaimed (reason CIDRReclaimed).
	NodePodCIDRAllocated corev1.NodeConditionType = "PodCIDRAllocated"
)

// NodeLeaseKey is the lease key of a node.
func NodeLeaseKey(node string) string { return NodeLeasePrefix + node }

// NodeConfig describes this node to Register.
type NodeConfig struct {
	Name string
	IP   string
	// PodCIDR, if set, is a static pod range instead of one from the
	// cluster's IPAM. If it is one of the cluster CIDR's node blocks it is
	// claimed there too, so no other node gets it.
	PodCIDR  string
	StateDir string // the agent's per-node state directory
	NetNS    string // the named namespace the node runs in, if any
	// Labels are added to the node's labels (kubernetes.io/hostname and
	// kubernetes.io/os are always set).
	Labels map[string]string
	// LeaseTTL is the node lease's TTL; default DefaultLeaseTTL.
	LeaseTTL time.Duration
	Logger   *slog.Logger
}

// Registration is what the node learned from the cluster.
type Registration struct {
	PodCIDR string
	Cluster api.ClusterConfig
	// Lease keeps the node's lease alive and its Ready condition True; add
	// it to the agent's Runners.
	Lease *NodeLease
}

var nodeKind, _ = api.KindOf(&corev1.Node{})

// Register creates or updates this node's Node object (addresses,
// annotations, labels), gives it a pod CIDR, grants its lease and marks it
// Ready. The pod CIDR is, in order: the static NodeConfig.PodCIDR; the
// block the node already holds in the cluster IPAM (so a restarted agent
// keeps its range); the Node's recorded spec.podCIDR if still free; the
// lowest free block. When the cluster CIDR is exhausted the Node gets
// condition PodCIDRAllocated=False (reason CIDRExhausted) and the error,
// wrapping clusteripam.ErrExhausted, is returned; callers retry.
func Register(ctx context.Context, s *store.Store, n NodeConfig) (Registration, error) {
	if n.Name == "" {
		return Registration{}, errors.New("register node: no name")
	}
	if n.LeaseTTL <= 0 {
		n.LeaseTTL = DefaultLeaseTTL
	}
	if n.Logger == nil {
		n.Logger = slog.New(slog.DiscardHandler)
	}
	cfg, ok, err := s.ClusterConfig(ctx)
	if err != nil {
		return Registration{}, fmt.Errorf("node %s: %w", n.Name, err)
	}
	if !ok {
		return Registration{}, fmt.Errorf("node %s: the store has no cluster configuration yet; is `podnet server` running against it?", n.Name)
	}
	pool, err := clusteripam.NewPool(cfg.ClusterCIDR, cfg.NodeCIDRMaskSize)
	if err != nil {
		return Registration{}, fmt.Errorf("node %s: %w", n.Name, err)
	}
	l := &NodeLease{s: s, n: n, cfg: cfg, alloc: clusteripam.New(s.Client(), pool), log: n.Logger.With("node", n.Name)}
	node, err := l.ensureNode(ctx)
	if err != nil {
		return Registration{}, err
	}
	cidr, err := l.allocate(ctx, node)
	if err != nil {
		if errors.Is(err, clusteripam.ErrExhausted) {
			l.setConditions(ctx, netip.Prefix{}, "CIDRExhausted", err.Error())
		}
		return Registration{}, err
	}
	l.cidr = cidr
	if err := l.grant(ctx); err != nil {
		return Registration{}, err
	}
	if err := l.setConditions(ctx, cidr, "", ""); err != nil {
		return Registration{}, err
	}
	return Registration{PodCIDR: cidr.String(), Cluster: cfg, Lease: l}, nil
}

// NodeLease is the Runner that keeps a registered node's lease alive. When
// the lease is lost (the store was unreachable longer than the TTL, or the
// key was removed) it grants a new one and re-asserts the node: its Node
// object, its pod CIDR claim, Ready=True. It never touches pods: while the
// store is away the node keeps running as it is.
type NodeLease struct {
	s     *store.Store
	n     NodeConfig
	cfg   api.ClusterConfig
	alloc *clusteripam.Allocator
	log   *slog.Logger
	cidr  netip.Prefix
	lease atomic.Int64 // the current clientv3.LeaseID, 0 if none
}

// LeaseID returns the current lease (0 if none).
func (l *NodeLease) LeaseID() clientv3.LeaseID { return clientv3.LeaseID(l.lease.Load()) }

var _ Runner = (*NodeLease)(nil)

// Run keeps the lease until ctx ends, then revokes it so the node turns
// NotReady at once rather than after the TTL.
func (l *NodeLease) Run(ctx context.Context) error {
	cli := l.s.Client()
	defer func() {
		if id := l.LeaseID(); id != 0 {
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, _ = cli.Revoke(rctx, id)
			cancel()
		}
	}()
	backoff := 500 * time.Millisecond
	check := time.NewTicker(max(l.n.LeaseTTL/4, 500*time.Millisecond))
	defer check.Stop()
	for ctx.Err() == nil {
		if l.LeaseID() == 0 {
			if err := l.grant(ctx); err != nil {
				l.log.Warn("cannot renew node lease; retrying (pods keep running)", "err", err, "retryIn", backoff)
				sleep(ctx, backoff)
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			backoff = 500 * time.Millisecond
			l.log.Info("node lease granted", "lease", fmt.Sprintf("%x", l.LeaseID()))
			l.reassert(ctx)
		}
		kctx, cancel := context.WithCancel(ctx)
		ka, err := cli.KeepAlive(kctx, l.LeaseID())
		if err != nil {
			cancel()
			l.log.Warn("node lease keepalive failed; re-granting", "err", err)
			l.lease.Store(0)
			continue
		}
	alive:
		for {
			select {
			case <-ctx.Done():
				break alive
			case _, ok := <-ka:
				if !ok {
					if ctx.Err() == nil {
						l.log.Warn("node lease lost; re-granting")
					}
					l.lease.Store(0)
					break alive
				}
			case <-check.C:
				if !l.keyHeld(ctx) {
					l.log.Warn("node lease key gone; re-granting")
					l.lease.Store(0)
					break alive
				}
				l.reassert(ctx)
			}
		}
		cancel()
	}
	return nil
}

// grant takes a new lease and attaches the node's lease key to it.
func (l *NodeLease) grant(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cli := l.s.Client()
	g, err := cli.Grant(ctx, int64(max(l.n.LeaseTTL/time.Second, 2)))
	if err != nil {
		return fmt.Errorf("node %s: grant lease: %w", l.n.Name, err)
	}
	if _, err := cli.Put(ctx, NodeLeaseKey(l.n.Name), l.n.Name, clientv3.WithLease(g.ID)); err != nil {
		return fmt.Errorf("node %s: lease key: %w", l.n.Name, err)
	}
	l.lease.Store(int64(g.ID))
	return nil
}

func (l *NodeLease) keyHeld(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := l.s.Client().Get(ctx, NodeLeaseKey(l.n.Name))
	if err != nil {
		return true // unreachable: the keepalive channel tells us about loss
	}
	return len(resp.Kvs) == 1 && clientv3.LeaseID(resp.Kvs[0].Lease) == l.LeaseID()
}

// reassert makes the Node match this agent again if something changed it:
// the node was deleted, marked NotReady, or had its CIDR reclaimed. The
// node keeps its own CIDR; if another node took it meanwhile the agent
// cannot continue with it and says so in the node's conditions.
func (l *NodeLease) reassert(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	o, err := l.s.Get(ctx, nodeKind, "", l.n.Name)
	if err == nil {
		node := o.(*corev1.Node)
		if node.Spec.PodCIDR == l.cidr.String() && api.NodeReady(node) == corev1.ConditionTrue &&
			time.Since(readyCond(node).LastHeartbeatTime.Time) < time.Minute && l.claimHeld(ctx) {
			return
		}
	} else if !apierrors.IsNotFound(err) {
		return
	}
	if _, err := l.ensureNode(ctx); err != nil {
		l.log.Warn("re-register node", "err", err)
		return
	}
	if l.alloc.Pool().Contains(l.cidr) {
		if err := l.alloc.Claim(ctx, l.cidr, l.n.Name); err != nil {
			l.log.Error("this node's pod CIDR was reclaimed and taken by another node; restart the agent to get a new one", "podCIDR", l.cidr, "err", err)
			l.setConditions(ctx, netip.Prefix{}, "CIDRReclaimed", err.Error())
			return
		}
	}
	if err := l.setConditions(ctx, l.cidr, "", ""); err != nil {
		l.log.Warn("mark node ready", "err", err)
		return
	}
	l.log.Info("node re-asserted Ready", "podCIDR", l.cidr)
}

// claimHeld reports whether the node's claim on its CIDR is intact (true
// for a static CIDR outside the cluster's, and when the store cannot say).
func (l *NodeLease) claimHeld(ctx context.Context) bool {
	if !l.alloc.Pool().Contains(l.cidr) {
		return true
	}
	c, ok, err := l.alloc.Lookup(ctx, l.n.Name)
	return err != nil || (ok && c == l.cidr)
}

// ensureNode creates the Node or brings its addresses, labels and
// annotations up to date.
func (l *NodeLease) ensureNode(ctx context.Context) (*corev1.Node, error) {
	n := l.n
	apply := func(node *corev1.Node) {
		if node.Labels == nil {
			node.Labels = map[string]string{}
		}
		node.Labels[corev1.LabelHostname] = n.Name
		node.Labels[corev1.LabelOSStable] = "linux"
		for k, v := range n.Labels {
			node.Labels[k] = v
		}
		if node.Annotations == nil {
			node.Annotations = map[string]string{}
		}
		node.Annotations[api.AnnotationBackend] = l.cfg.Backend
		setOrDelete(node.Annotations, api.AnnotationStateDir, n.StateDir)
		setOrDelete(node.Annotations, api.AnnotationNetNS, n.NetNS)
		var addrs []corev1.NodeAddress
		if n.IP != "" {
			addrs = append(addrs, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: n.IP})
		}
		addrs = append(addrs, corev1.NodeAddress{Type: corev1.NodeHostName, Address: hostname(n)})
		node.Status.Addresses = addrs
	}
	for attempt := 0; ; attempt++ {
		o, err := l.s.Mutate(ctx, nodeKind, "", n.Name, func(o api.Object) error {
			apply(o.(*corev1.Node))
			return nil
		})
		if err == nil {
			return o.(*corev1.Node), nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("node %s: update: %w", n.Name, err)
		}
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name}}
		apply(node)
		err = l.s.Create(ctx, node)
		if err == nil {
			l.log.Info("node registered", "ip", n.IP)
			return node, nil
		}
		if !apierrors.IsAlreadyExists(err) || attempt > 5 {
			return nil, fmt.Errorf("node %s: create: %w", n.Name, err)
		}
	}
}

func hostname(n NodeConfig) string {
	if n.NetNS != "" {
		return n.Name // a node in a namespace shares the machine's hostname
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return n.Name
}

func setOrDelete(m map[string]string, k, v string) {
	if v == "" {
		delete(m, k)
	} else {
		m[k] = v
	}
}

// allocate picks the node's pod CIDR (see Register).
func (l *NodeLease) allocate(ctx context.Context, node *corev1.Node) (netip.Prefix, error) {
	pool := l.alloc.Pool()
	if l.n.PodCIDR != "" {
		c, err := netip.ParsePrefix(l.n.PodCIDR)
		if err != nil {
			return c, fmt.Errorf("node %s: pod CIDR %q: %w", l.n.Name, l.n.PodCIDR, err)
		}
		if pool.Contains(c) {
			if err := l.alloc.Claim(ctx, c, l.n.Name); err != nil {
				return c, err
			}
		} else if c.Overlaps(pool.Cluster()) {
			return c, fmt.Errorf("node %s: static pod CIDR %s overlaps the cluster CIDR %s but is not one of its /%d blocks", l.n.Name, c, pool.Cluster(), pool.Bits())
		}
		return c, nil
	}
	var prefer netip.Prefix
	if node.Spec.PodCIDR != "" {
		prefer, _ = netip.ParsePrefix(node.Spec.PodCIDR)
	}
	c, err := l.alloc.Allocate(ctx, l.n.Name, prefer)
	if err != nil {
		return c, err
	}
	if node.Spec.PodCIDR != "" && node.Spec.PodCIDR != c.String() {
		l.log.Warn("node's recorded pod CIDR was taken by another node; using a new one", "was", node.Spec.PodCIDR, "now", c)
	}
	return c, nil
}

// setConditions writes the node's pod CIDR and conditions. With a valid
// cidr the node is Ready; otherwise PodCIDRAllocated and Ready are False
// with reason and message.
func (l *NodeLease) setConditions(ctx context.Context, cidr netip.Prefix, reason, msg string) error {
	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	_, err := l.s.Mutate(ctx, nodeKind, "", l.n.Name, func(o api.Object) error {
		node := o.(*corev1.Node)
		if cidr.IsValid() {
			if node.Spec.PodCIDR != "" && node.Spec.PodCIDR != cidr.String() {
				// Only a controller clears it; a changed static CIDR needs
				// the node deleted first.
				return fmt.Errorf("node %s: spec.podCIDR is %s, not %s; delete the node to change it", l.n.Name, node.Spec.PodCIDR, cidr)
			}
			node.Spec.PodCIDR = cidr.String()
			node.Spec.PodCIDRs = []string{cidr.String()}
			SetNodeCondition(node, corev1.NodeCondition{Type: NodePodCIDRAllocated, Status: corev1.ConditionTrue, Reason: "CIDRAllocated", Message: "pod CIDR " + cidr.String()}, now)
			SetNodeCondition(node, corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "AgentReady", Message: "podnet agent is posting ready status"}, now)
		} else {
			SetNodeCondition(node, corev1.NodeCondition{Type: NodePodCIDRAllocated, Status: corev1.ConditionFalse, Reason: reason, Message: msg}, now)
			SetNodeCondition(node, corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse, Reason: "NoPodCIDR", Message: msg}, now)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("node %s: write status: %w", l.n.Name, err)
	}
	return nil
}

// SetNodeCondition sets c on node with heartbeat now, keeping the
// transition time if the status did not change.
func SetNodeCondition(node *corev1.Node, c corev1.NodeCondition, now metav1.Time) {
	c.LastHeartbeatTime = now
	c.LastTransitionTime = now
	for i, old := range node.Status.Conditions {
		if old.Type != c.Type {
			continue
		}
		if old.Status == c.Status {
			c.LastTransitionTime = old.LastTransitionTime
		}
		node.Status.Conditions[i] = c
		return
	}
	node.Status.Conditions = append(node.Status.Conditions, c)
}

func readyCond(n *corev1.Node) corev1.NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c
		}
	}
	return corev1.NodeCondition{}
}

// Runner is a node-level loop the agent runs beside its pod workers: the
// node lease, the overlay. Run returns when ctx ends.
type Runner interface {
	Run(ctx context.Context) error
}
