package controller

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
)

// GarbageCollector deletes objects whose owners are all gone, as
// Kubernetes' garbage collector does with background cascading deletion:
// deleting a Deployment deletes its ReplicaSets on the next pass, and
// those their pods (gracefully: their agents drain and stop them) on the
// one after. An owner is identified by its UID, so a dependent of a
// deleted object is collected even if an object of the same name was
// created since. Owner references to kinds podnet does not store are
// treated as present (nothing is deleted for them). Objects with an owner
// left keep their references.
type GarbageCollector struct {
	s      *store.Store
	log    *slog.Logger
	resync time.Duration
}

// GCResync is the garbage collector's period in the manager: deletions
// of owners trigger it at once, and a pass lists every namespaced object,
// so the period only catches dependents created after their owner went.
const GCResync = 30 * time.Second

// NewGarbageCollector returns the owner-reference garbage collector.
func NewGarbageCollector(s *store.Store, log *slog.Logger, resync time.Duration) *GarbageCollector {
	return &GarbageCollector{s: s, log: log.With("controller", "garbage-collector"), resync: resync}
}

func (c *GarbageCollector) Name() string { return "garbage-collector" }

// Run collects every resync and at once when an object that owns others
// (Deployment, ReplicaSet, Service) is deleted.
func (c *GarbageCollector) Run(ctx context.Context) error {
	k := make(kick, 1)
	for _, kind := range []*api.Kind{deployKind, rsKind, serviceKind} {
		go watchDeletes(ctx, c.s.Client(), store.ListKey(kind, ""), k)
	}
	t := time.NewTicker(c.resync)
	defer t.Stop()
	for {
		if err := c.Reconcile(ctx); err != nil && ctx.Err() == nil {
			c.log.Warn("collect garbage", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-k:
		}
	}
}

// watchDeletes pokes k when a key under prefix is deleted.
func watchDeletes(ctx context.Context, cli *clientv3.Client, prefix string, k kick) {
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		for resp := range cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly(), clientv3.WithFilterPut()) {
			if resp.Err() != nil {
				break
			}
			k.poke()
		}
		cancel()
		sleep(ctx, time.Second)
	}
}

// Reconcile runs one pass over every namespaced kind.
func (c *GarbageCollector) Reconcile(ctx context.Context) error {
	// Dependents before owners: an owner missing from the later list is
	// gone, never one created after its dependent was listed.
	var dependents []api.Object
	ownerKinds := map[*api.Kind]bool{}
	for _, k := range api.Kinds() {
		if !k.Namespaced {
			continue
		}
		objs, _, err := c.s.List(ctx, k, "")
		if err != nil {
			return err
		}
		for _, o := range objs {
			if len(o.GetOwnerReferences()) == 0 || o.GetDeletionTimestamp() != nil {
				continue
			}
			dependents = append(dependents, o)
			for _, r := range o.GetOwnerReferences() {
				if ok, err := api.KindFor(r.APIVersion, r.Kind); err == nil && ok.Namespaced {
					ownerKinds[ok] = true
				}
			}
		}
	}
	if len(dependents) == 0 {
		return nil
	}
	exists := map[types.UID]bool{}
	for k := range ownerKinds {
		objs, _, err := c.s.List(ctx, k, "")
		if err != nil {
			return err
		}
		for _, o := range objs {
			exists[o.GetUID()] = true
		}
	}
	var firstErr error
	for _, o := range dependents {
		orphaned := true
		for _, r := range o.GetOwnerReferences() {
			k, err := api.KindFor(r.APIVersion, r.Kind)
			if err != nil || !k.Namespaced || exists[r.UID] {
				orphaned = false
				break
			}
		}
		if !orphaned {
			continue
		}
		k, _ := api.KindOf(o)
		_, err := c.s.Delete(ctx, k, o.GetNamespace(), o.GetName(), store.DeleteOptions{UID: o.GetUID()})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			if firstErr == nil {
				firstErr = fmt.Errorf("delete %s %s/%s: %w", k.Resource, o.GetNamespace(), o.GetName(), err)
			}
			continue
		}
		owner := o.GetOwnerReferences()[0]
		c.log.Info("owner gone: dependent deleted", "kind", k.GVK.Kind, "object", o.GetNamespace()+"/"+o.GetName(), "owner", owner.Kind+"/"+owner.Name)
	}
	return firstErr
}
