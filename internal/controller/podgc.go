package controller

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReasonNodeNotReady is the reason of the Ready=False condition the pod
// GC gives the pods of a node that is not Ready.
const ReasonNodeNotReady = "NodeNotReady"

// DefaultOrphanDelay is how long a pod's node must be missing before the
// pod is collected (a node being re-registered is not a deleted one).
const DefaultOrphanDelay = 5 * time.Second

// PodGC handles the pods of nodes that are gone or not Ready, as
// Kubernetes' node lifecycle controller and pod GC do:
//
//   - a pod on a node that is not Ready gets Ready=False and
//     ContainersReady=False at once (reason NodeNotReady), so its
//     endpoints stop being ready before anything else happens; the node's
//     agent rewrites the conditions when it is back;
//   - a pod on a node that has been NotReady (Ready False or Unknown) for
//     longer than the cluster's PodEvictionTimeout (`podnet server
//     --pod-eviction-timeout`) is deleted through the graceful path, so
//     its ReplicaSet replaces it at once (the scheduler skips NotReady
//     nodes); if it is still there after its grace period (its agent is
//     dead and cannot finish it) it is removed by force;
//   - a pod bound to a node that no longer exists (for OrphanDelay) is
//     removed by force: no agent will ever stop it.
type PodGC struct {
	s      *store.Store
	log    *slog.Logger
	resync time.Duration
	now    func() time.Time
	// OrphanDelay is how long a pod's node must be missing before the pod
	// is collected (default DefaultOrphanDelay).
	OrphanDelay time.Duration
	missing     map[string]time.Time // node -> first seen missing
}

// NewPodGC returns the pod eviction and collection loop.
func NewPodGC(s *store.Store, log *slog.Logger, resync time.Duration) *PodGC {
	return &PodGC{s: s, log: log.With("controller", "pod-gc"), resync: resync, now: time.Now, OrphanDelay: DefaultOrphanDelay, missing: map[string]time.Time{}}
}

func (c *PodGC) Name() string { return "pod-gc" }

// Run reconciles every resync, on node, pod and cluster config changes,
// and when an eviction falls due.
func (c *PodGC) Run(ctx context.Context) error {
	runLoop(ctx, c.s.Client(), c.log, c.resync, c.pass, store.ListKey(nodeKind, ""), store.ListKey(podKind, ""), store.ClusterConfigKey)
	return nil
}

// Reconcile runs one pass.
func (c *PodGC) Reconcile(ctx context.Context) error {
	_, err := c.pass(ctx)
	return err
}

func (c *PodGC) pass(ctx context.Context) (time.Time, error) {
	cfg, ok, err := c.s.ClusterConfig(ctx)
	if err != nil || !ok {
		return time.Time{}, err
	}
	timeout := cfg.PodEvictionTimeout.Duration
	// Pods before nodes: a pod whose node is missing from the later list
	// was bound to a node that is gone, not to one created meanwhile.
	pobjs, _, err := c.s.List(ctx, podKind, "")
	if err != nil {
		return time.Time{}, err
	}
	nobjs, _, err := c.s.List(ctx, nodeKind, "")
	if err != nil {
		return time.Time{}, err
	}
	now := c.now()
	nodes := map[string]*corev1.Node{}
	for _, o := range nobjs {
		nodes[o.GetName()] = o.(*corev1.Node)
	}
	for n := range c.missing {
		if nodes[n] != nil {
			delete(c.missing, n)
		}
	}
	var next time.Time
	var firstErr error
	fail := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for _, o := range pobjs {
		p := o.(*corev1.Pod)
		nn := p.Spec.NodeName
		if nn == "" {
			continue
		}
		n := nodes[nn]
		if n == nil {
			since, ok := c.missing[nn]
			if !ok {
				since = now
				c.missing[nn] = now
			}
			if at := since.Add(c.OrphanDelay); now.Before(at) {
				next = soonest(next, at)
				continue
			}
			fail(c.remove(ctx, p, "its node "+nn+" no longer exists"))
			continue
		}
		ready := readyCondition(n)
		if ready.Status == corev1.ConditionTrue {
			continue
		}
		fail(c.markNotReady(ctx, p, now))
		since := ready.LastTransitionTime.Time
		if since.IsZero() {
			since = n.CreationTimestamp.Time
		}
		// Stored times are cut to the second: the transition may have been
		// up to a second later, and a pod is never evicted early.
		since = since.Add(time.Second)
		if at := since.Add(timeout); now.Before(at) {
			next = soonest(next, at)
			continue
		}
		if p.DeletionTimestamp == nil {
			_, err := c.s.Delete(ctx, podKind, p.Namespace, p.Name, store.DeleteOptions{UID: p.UID})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				fail(fmt.Errorf("evict pod %s/%s: %w", p.Namespace, p.Name, err))
				continue
			}
			c.log.Warn("pod evicted: its node has been not ready longer than the pod eviction timeout", "pod", p.Namespace+"/"+p.Name, "node", nn, "timeout", timeout)
			next = soonest(next, now.Add(graceOf(p)))
			continue
		}
		if at := p.DeletionTimestamp.Add(graceOf(p)); now.Before(at) {
			next = soonest(next, at)
			continue
		}
		fail(c.remove(ctx, p, "its node "+nn+" is not ready and its grace period is over"))
	}
	return next, firstErr
}

func graceOf(p *corev1.Pod) time.Duration {
	g := p.DeletionGracePeriodSeconds
	if g == nil {
		g = p.Spec.TerminationGracePeriodSeconds
	}
	if g == nil {
		return time.Duration(corev1.DefaultTerminationGracePeriodSeconds) * time.Second
	}
	return time.Duration(*g) * time.Second
}

// remove deletes a pod by force: no agent will stop it.
func (c *PodGC) remove(ctx context.Context, p *corev1.Pod, why string) error {
	_, err := c.s.Delete(ctx, podKind, p.Namespace, p.Name, store.DeleteOptions{Force: true, UID: p.UID})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	c.log.Warn("pod removed", "pod", p.Namespace+"/"+p.Name, "node", p.Spec.NodeName, "reason", why)
	return nil
}

// markNotReady sets Ready and ContainersReady to False on a pod of a node
// that is not Ready.
func (c *PodGC) markNotReady(ctx context.Context, p *corev1.Pod, now time.Time) error {
	notReady := func(p *corev1.Pod) bool {
		for _, cd := range p.Status.Conditions {
			if (cd.Type == corev1.PodReady || cd.Type == corev1.ContainersReady) && cd.Status == corev1.ConditionTrue {
				return false
			}
		}
		return true
	}
	if notReady(p) {
		return nil
	}
	ts := metav1.NewTime(now.UTC().Truncate(time.Second))
	_, err := c.s.Mutate(ctx, podKind, p.Namespace, p.Name, func(o api.Object) error {
		cur := o.(*corev1.Pod)
		if cur.UID != p.UID || cur.Spec.NodeName != p.Spec.NodeName {
			return nil
		}
		for i := range cur.Status.Conditions {
			cd := &cur.Status.Conditions[i]
			if (cd.Type == corev1.PodReady || cd.Type == corev1.ContainersReady) && cd.Status == corev1.ConditionTrue {
				cd.Status, cd.Reason, cd.Message, cd.LastTransitionTime = corev1.ConditionFalse, ReasonNodeNotReady, "the pod's node is not ready", ts
			}
		}
		return nil
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mark pod %s/%s not ready: %w", p.Namespace, p.Name, err)
	}
	c.log.Info("pod marked not ready: its node is not ready", "pod", p.Namespace+"/"+p.Name, "node", p.Spec.NodeName)
	return nil
}
