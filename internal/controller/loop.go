package controller

import (
	"context"
	"log/slog"
	"time"

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
