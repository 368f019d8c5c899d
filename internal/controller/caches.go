package controller

import (
	"context"
	"log/slog"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/informer"
	"github.com/podnet/podnet/internal/store"
)

// caches are the watch-fed informer caches a loop reconciles from, all
// waking it through one kick.
type caches struct {
	k      kick
	runs   []func(context.Context)
	synced []func() bool
}

// kick is the wake-up channel the caches poke on every change, for
// other sources (watchKeys) to share.
func (cs *caches) kick() kick {
	if cs.k == nil {
		cs.k = make(kick, 1)
	}
	return cs.k
}

// addCache adds an informer of every object of kind k to cs; it runs
// once cs.run starts it.
func addCache[T api.Object](cs *caches, s *store.Store, k *api.Kind, log *slog.Logger) *informer.Informer[T] {
	i := informer.New[T](s, k, "", log)
	addKick(i, cs.kick())
	cs.runs = append(cs.runs, i.Run)
	cs.synced = append(cs.synced, i.HasSynced)
	return i
}

func addKick[T api.Object](i *informer.Informer[T], k kick) {
	i.AddHandler(informer.Handler[T]{OnUpdate: func(T) { k.poke() }, OnDelete: func(T) { k.poke() }, Synced: k.poke})
}

// run starts the caches and, until ctx ends, runs pass whenever all of
// them have synced: at once on every change and every resync. A pass's
// error is logged with msg unless ctx has ended.
func (cs *caches) run(ctx context.Context, resync time.Duration, log *slog.Logger, msg string, pass func(context.Context) error) {
	k := cs.kick()
	for _, run := range cs.runs {
		go run(ctx)
	}
	t := time.NewTicker(resync)
	defer t.Stop()
	for {
		if cs.allSynced() {
			if err := pass(ctx); err != nil && ctx.Err() == nil {
				log.Warn(msg, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-k:
		}
	}
}

func (cs *caches) allSynced() bool {
	for _, synced := range cs.synced {
		if !synced() {
			return false
		}
	}
	return true
}
