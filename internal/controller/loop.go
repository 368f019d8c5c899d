package controller

import (
	"context"
	"log/slog"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// reconcileFunc is one pass of a loop. It returns when it wants to run
// again at the latest (zero: at the next resync), for work that becomes
// due with time alone (minReadySeconds, progress deadlines, eviction).
type reconcileFunc func(ctx context.Context) (time.Time, error)

// runLoop runs pass at once, then every resync, at once after any change
// under one of prefixes (an etcd watch, so a change is seen within
// milliseconds), and at the time the last pass asked for.
func runLoop(ctx context.Context, cli *clientv3.Client, log *slog.Logger, resync time.Duration, pass reconcileFunc, prefixes ...string) {
	k := make(kick, 1)
	for _, p := range prefixes {
		go watchKeys(ctx, cli, p, k)
	}
	t := time.NewTicker(resync)
	defer t.Stop()
	due := time.NewTimer(time.Hour)
	defer due.Stop()
	for {
		next, err := pass(ctx)
		if err != nil && ctx.Err() == nil {
			log.Warn("reconcile", "err", err)
		}
		due.Stop()
		if !next.IsZero() {
			due.Reset(max(time.Until(next), time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-k:
		case <-due.C:
		}
	}
}

// soonest returns the earlier of two wake-up times, zero meaning none.
func soonest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero() || a.Before(b):
		return a
	}
	return b
}

// listKinds lists every object of each kind, in the order of kinds.
func listKinds(ctx context.Context, s *store.Store, kinds ...*api.Kind) ([][]api.Object, error) {
	lists := make([][]api.Object, len(kinds))
	for i, k := range kinds {
		objs, _, err := s.List(ctx, k, "")
		if err != nil {
			return nil, err
		}
		lists[i] = objs
	}
	return lists, nil
}

// reconcileEach runs one on every object of objs (all of type T) that is
// not marked for deletion, and returns the soonest time one asked to run
// again and the first error. Each error is logged with msg and the
// object's namespace/name under key; the other objects still run.
func reconcileEach[T api.Object](objs []api.Object, log *slog.Logger, msg, key string, one func(T) (time.Time, error)) (time.Time, error) {
	var next time.Time
	var firstErr error
	for _, o := range objs {
		obj := o.(T)
		if obj.GetDeletionTimestamp() != nil {
			continue
		}
		due, err := one(obj)
		next = soonest(next, due)
		if err != nil {
			log.Warn(msg, key, obj.GetNamespace()+"/"+obj.GetName(), "err", err)
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	return next, firstErr
}
