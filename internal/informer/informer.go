// Package informer is the small list/watch source the agent's service,
// DNS and ingress code read objects through: a cache of one kind kept by
// list + watch (re-listing after a failed watch), with handlers called on
// every change. podnet's store implements Source today; a client-go
// informer can implement it later. Nothing here talks to etcd directly.
package informer

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
)

// Source lists and watches objects of a kind (all namespaces when
// namespace is ""). *store.Store implements it.
type Source interface {
	List(ctx context.Context, k *api.Kind, namespace string) ([]api.Object, int64, error)
	Watch(ctx context.Context, k *api.Kind, namespace string, rev int64) <-chan store.Event
}

var _ Source = (*store.Store)(nil)

// Handler is told about changes, from the informer's goroutine, in order.
// obj is the new state (the last state for a delete). Synced is called
// after every complete list has been delivered.
type Handler[T api.Object] struct {
	OnUpdate func(obj T)
	OnDelete func(obj T)
	Synced   func()
}

// Informer caches objects of one kind.
type Informer[T api.Object] struct {
	src       Source
	kind      *api.Kind
	namespace string
	log       *slog.Logger

	mu       sync.RWMutex
	items    map[string]T
	synced   bool
	handlers []Handler[T]
}

// New returns an informer of kind k; call Run.
func New[T api.Object](src Source, k *api.Kind, namespace string, log *slog.Logger) *Informer[T] {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Informer[T]{src: src, kind: k, namespace: namespace, log: log.With("kind", k.GVK.Kind), items: map[string]T{}}
}

// AddHandler adds h; call before Run.
func (i *Informer[T]) AddHandler(h Handler[T]) { i.handlers = append(i.handlers, h) }

func objKey(o api.Object) string { return o.GetNamespace() + "/" + o.GetName() }

// List returns the cached objects.
func (i *Informer[T]) List() []T {
	i.mu.RLock()
	defer i.mu.RUnlock()
	out := make([]T, 0, len(i.items))
	for _, o := range i.items {
		out = append(out, o)
	}
	return out
}

// Get returns a cached object.
func (i *Informer[T]) Get(namespace, name string) (T, bool) {
	i.mu.RLock()
	defer i.mu.RUnlock()
	o, ok := i.items[namespace+"/"+name]
	return o, ok
}

// HasSynced reports whether a complete list has been delivered.
func (i *Informer[T]) HasSynced() bool {
	i.mu.RLock()
	defer i.mu.RUnlock()
	return i.synced
}

func rv(o api.Object) int64 {
	v, _ := strconv.ParseInt(o.GetResourceVersion(), 10, 64)
	return v
}

// Run lists and watches until ctx ends. After a failed list it retries
// with backoff; after a failed watch it re-lists, and delivers the
// difference (deletes included) to the handlers.
func (i *Informer[T]) Run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		objs, rev, err := i.src.List(lctx, i.kind, i.namespace)
		cancel()
		if err != nil {
			i.log.Warn("list failed; keeping the cache", "err", err)
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		i.replace(objs)
		for ev := range i.src.Watch(ctx, i.kind, i.namespace, rev) {
			if ev.Err != nil {
				i.log.Warn("watch ended; re-listing", "err", ev.Err)
				break
			}
			o, ok := ev.Object.(T)
			if !ok {
				continue
			}
			if ev.Type == store.Deleted {
				i.remove(o)
			} else {
				i.update(o)
			}
		}
	}
}

func (i *Informer[T]) replace(objs []api.Object) {
	fresh := map[string]T{}
	for _, obj := range objs {
		if o, ok := obj.(T); ok {
			fresh[objKey(o)] = o
		}
	}
	i.mu.Lock()
	old := i.items
	i.items = fresh
	i.synced = true
	i.mu.Unlock()
	for k, o := range old {
		if _, ok := fresh[k]; !ok {
			for _, h := range i.handlers {
				if h.OnDelete != nil {
					h.OnDelete(o)
				}
			}
		}
	}
	for k, o := range fresh {
		if prev, ok := old[k]; ok && prev.GetResourceVersion() == o.GetResourceVersion() {
			continue
		}
		i.notify(o)
	}
	for _, h := range i.handlers {
		if h.Synced != nil {
			h.Synced()
		}
	}
}

func (i *Informer[T]) update(o T) {
	k := objKey(o)
	i.mu.Lock()
	if prev, ok := i.items[k]; ok && rv(prev) > rv(o) {
		i.mu.Unlock()
		return
	}
	i.items[k] = o
	i.mu.Unlock()
	i.notify(o)
}

func (i *Informer[T]) notify(o T) {
	for _, h := range i.handlers {
		if h.OnUpdate != nil {
			h.OnUpdate(o)
		}
	}
}

func (i *Informer[T]) remove(o T) {
	i.mu.Lock()
	delete(i.items, objKey(o))
	i.mu.Unlock()
	for _, h := range i.handlers {
		if h.OnDelete != nil {
			h.OnDelete(o)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
