package controller

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// ReasonUnschedulable is the PodScheduled=False reason of a pod no node fits.
const ReasonUnschedulable = "Unschedulable"

// Why a node does not fit a pod, in the scheduler's message.
const (
	reasonNotReady      = "node(s) were not ready"
	reasonUnschedulable = "node(s) were unschedulable"
	reasonSelector      = "node(s) didn't match Pod's node selector"
)

var podKind, _ = api.KindOf(&corev1.Pod{})

// Scheduler binds pods without spec.nodeName to a node.
type Scheduler struct {
	s      *store.Store
	log    *slog.Logger
	resync time.Duration
}

// NewScheduler returns the scheduler.
func NewScheduler(s *store.Store, log *slog.Logger, resync time.Duration) *Scheduler {
	return &Scheduler{s: s, log: log.With("controller", "scheduler"), resync: resync}
}

func (c *Scheduler) Name() string { return "scheduler" }

// Run schedules every resync and whenever a pod or node changes.
func (c *Scheduler) Run(ctx context.Context) error {
	k := make(kick, 1)
	go watchKeys(ctx, c.s.Client(), store.ListKey(nodeKind, ""), k)
	go watchKeys(ctx, c.s.Client(), store.ListKey(podKind, ""), k)
	t := time.NewTicker(c.resync)
	defer t.Stop()
	for {
		if err := c.Reconcile(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("schedule pods", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-k:
		}
	}
}

// Decision is where a pod goes: Node, or "" and why not.
type Decision struct {
	Node    string
	Message string // for an unschedulable pod
}

// Place picks the node for p among nodes: a Ready, schedulable node that
// matches p's nodeSelector, the one with the fewest pods (count), the
// lowest name on a tie. It is pure, for tests.
func Place(p *corev1.Pod, nodes []*corev1.Node, count map[string]int) Decision {
	sel := labels.SelectorFromSet(p.Spec.NodeSelector)
	reasons := map[string]int{}
	best := ""
	for _, n := range nodes {
		switch {
		case api.NodeReady(n) != corev1.ConditionTrue:
			reasons[reasonNotReady]++
		case n.Spec.Unschedulable:
			reasons[reasonUnschedulable]++
		case !sel.Matches(labels.Set(n.Labels)):
			reasons[reasonSelector]++
		default:
			if best == "" || count[n.Name] < count[best] || (count[n.Name] == count[best] && n.Name < best) {
				best = n.Name
			}
		}
	}
	if best != "" {
		return Decision{Node: best}
	}
	var parts []string
	for r, k := range reasons {
		parts = append(parts, fmt.Sprintf("%d %s", k, r))
	}
	sort.Slice(parts, func(i, j int) bool {
		return parts[i][strings.IndexByte(parts[i], ' '):] < parts[j][strings.IndexByte(parts[j], ' '):]
	})
	msg := fmt.Sprintf("0/%d nodes are available", len(nodes))
	if len(parts) > 0 {
		msg += ": " + strings.Join(parts, ", ")
	}
	return Decision{Message: msg + "."}
}

// Reconcile schedules every unscheduled pod once.
func (c *Scheduler) Reconcile(ctx context.Context) error {
	nobjs, _, err := c.s.List(ctx, nodeKind, "")
	if err != nil {
		return err
	}
	pobjs, _, err := c.s.List(ctx, podKind, "")
	if err != nil {
		return err
	}
	nodes := make([]*corev1.Node, 0, len(nobjs))
	for _, o := range nobjs {
		nodes = append(nodes, o.(*corev1.Node))
	}
	count := map[string]int{}
	var pending []*corev1.Pod
	for _, o := range pobjs {
		p := o.(*corev1.Pod)
		switch {
		case p.Spec.NodeName != "":
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				count[p.Spec.NodeName]++
			}
		case p.DeletionTimestamp == nil:
			pending = append(pending, p)
		}
	}
	sort.Slice(pending, func(i, j int) bool {
		a, b := pending[i], pending[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
	})
	for _, p := range pending {
		d := Place(p, nodes, count)
		if err := c.apply(ctx, p, d); err != nil {
			c.log.Warn("schedule pod", "pod", p.Namespace+"/"+p.Name, "err", err)
			continue
		}
		if d.Node != "" {
			count[d.Node]++
		}
	}
	return nil
}

// apply binds p or records why it cannot be.
func (c *Scheduler) apply(ctx context.Context, p *corev1.Pod, d Decision) error {
	if d.Node == "" && scheduledCondition(p).Reason == ReasonUnschedulable && scheduledCondition(p).Message == d.Message {
		return nil
	}
	now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
	_, err := c.s.Mutate(ctx, podKind, p.Namespace, p.Name, func(o api.Object) error {
		cur := o.(*corev1.Pod)
		if cur.UID != p.UID || cur.Spec.NodeName != "" || cur.DeletionTimestamp != nil {
			return nil
		}
		if d.Node != "" {
			cur.Spec.NodeName = d.Node
			setPodCondition(cur, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, now)
			return nil
		}
		if cur.Status.Phase == "" {
			cur.Status.Phase = corev1.PodPending
		}
		setPodCondition(cur, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: ReasonUnschedulable, Message: d.Message}, now)
		return nil
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if d.Node != "" {
		c.log.Info("pod bound", "pod", p.Namespace+"/"+p.Name, "node", d.Node)
	} else {
		c.log.Info("pod unschedulable", "pod", p.Namespace+"/"+p.Name, "why", d.Message)
	}
	return nil
}

func scheduledCondition(p *corev1.Pod) corev1.PodCondition {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			return c
		}
	}
	return corev1.PodCondition{}
}

func setPodCondition(p *corev1.Pod, c corev1.PodCondition, now metav1.Time) {
	c.LastTransitionTime = now
	for i, old := range p.Status.Conditions {
		if old.Type == c.Type {
			if old.Status == c.Status {
				c.LastTransitionTime = old.LastTransitionTime
			}
			p.Status.Conditions[i] = c
			return
		}
	}
	p.Status.Conditions = append(p.Status.Conditions, c)
}
