package cache

import (
	"math/rand/v2"
	"sync"
)

const shardCount = 256

// store is a fixed-size map split into shards; a full shard evicts a random
// entry to make room, as CoreDNS's cache does.
type store struct {
	shards   [shardCount]shard
	shardCap int
}

type shard struct {
	mu    sync.RWMutex
	items map[uint64]*item
}

// newStore makes a store for capacity entries, rounded down to a multiple of
// 256 and at least 1024.
func newStore(capacity int) *store {
	sc := capacity / shardCount
	if sc < 4 {
		sc = 4
	}
	s := &store{shardCap: sc}
	for i := range s.shards {
		s.shards[i].items = make(map[uint64]*item)
	}
	return s
}

func (s *store) shard(k uint64) *shard { return &s.shards[k&(shardCount-1)] }

// Add stores it under k and reports whether an entry was evicted for it.
func (s *store) Add(k uint64, it *item) (evicted bool) {
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.items[k]; !ok && len(sh.items) >= s.shardCap {
		// Random eviction: Go's map order is unspecified, so pick the n-th key.
		n := rand.IntN(len(sh.items))
		for old := range sh.items {
			if n == 0 {
				delete(sh.items, old)
				evicted = true
				break
			}
			n--
		}
	}
	sh.items[k] = it
	return evicted
}

func (s *store) Get(k uint64) (*item, bool) {
	sh := s.shard(k)
	sh.mu.RLock()
	it, ok := sh.items[k]
	sh.mu.RUnlock()
	return it, ok
}

func (s *store) Remove(k uint64) {
	sh := s.shard(k)
	sh.mu.Lock()
	delete(sh.items, k)
	sh.mu.Unlock()
}

func (s *store) Len() int {
	n := 0
	for i := range s.shards {
		s.shards[i].mu.RLock()
		n += len(s.shards[i].items)
		s.shards[i].mu.RUnlock()
	}
	return n
}
