package controller

import (
	"context"
	"log/slog"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

var nsKind, _ = api.KindOf(&corev1.Namespace{})

// Namespaces finishes namespace deletion, as Kubernetes' namespace
// controller does: store.Delete turns a namespace Terminating (the store
// then refuses new content in it); this loop deletes everything in it
// (pods gracefully, through their nodes) and removes the namespace once
// it is empty.
type Namespaces struct {
	s      *store.Store
	log    *slog.Logger
	resync time.Duration
}

// NewNamespaces returns the namespace controller.
func NewNamespaces(s *store.Store, log *slog.Logger, resync time.Duration) *Namespaces {
	return &Namespaces{s: s, log: log.With("controller", "namespace"), resync: resync}
}

func (c *Namespaces) Name() string { return "namespace" }

// Run reconciles every resync and whenever a namespace changes.
func (c *Namespaces) Run(ctx context.Context) error {
	k := make(kick, 1)
	go watchKeys(ctx, c.s.Client(), store.ListKey(nsKind, ""), k)
	t := time.NewTicker(c.resync)
	defer t.Stop()
	for {
		if err := c.Reconcile(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("reconcile namespaces", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-k:
		}
	}
}

// Reconcile empties and removes every terminating namespace.
func (c *Namespaces) Reconcile(ctx context.Context) error {
	objs, _, err := c.s.List(ctx, nsKind, "")
	if err != nil {
		return err
	}
	for _, o := range objs {
		if o.GetDeletionTimestamp() == nil {
			continue
		}
		if err := c.finish(ctx, o.GetName()); err != nil {
			c.log.Warn("delete namespace content", "namespace", o.GetName(), "err", err)
		}
	}
	return nil
}

func (c *Namespaces) finish(ctx context.Context, ns string) error {
	left := 0
	for _, k := range api.Kinds() {
		if !k.Namespaced {
			continue
		}
		objs, _, err := c.s.List(ctx, k, ns)
		if err != nil {
			return err
		}
		for _, o := range objs {
			left++
			if o.GetDeletionTimestamp() != nil {
				continue // a pod its node is stopping
			}
			if _, err := c.s.Delete(ctx, k, ns, o.GetName(), store.DeleteOptions{UID: o.GetUID()}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return err
			}
		}
	}
	err := c.s.RemoveNamespace(ctx, ns)
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // not empty yet (pods stopping), or gone already
	}
	if err == nil {
		c.log.Info("namespace deleted", "namespace", ns, "objects", left)
	}
	return err
}

var svcKind, _ = api.KindOf(&corev1.Service{})
