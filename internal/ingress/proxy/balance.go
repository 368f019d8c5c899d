package proxy

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podnet/podnet/internal/ingress/route"
)

// endpoint is the proxy's live state of one upstream address. It outlives
// table swaps (Proxy.endpoints keeps it by address), so the load
// balancers' view of latency and in-flight requests survives a reload.
type endpoint struct {
	addr string
	// cookie is the affinity cookie value naming this endpoint: a hash of
	// its address, so every proxy instance agrees on it.
	cookie   string
	inflight atomic.Int64

	mu    sync.Mutex
	ewma  float64 // seconds
	stamp int64   // unix nanoseconds of the last sample
}

func newEndpoint(addr string) *endpoint {
	h := fnv.New64a()
	h.Write([]byte(addr))
	return &endpoint{addr: addr, cookie: strconv.FormatUint(h.Sum64(), 16)}
}

// ewmaDecay is the time constant of the latency average, as ingress-nginx's
// ewma balancer (10 s).
const ewmaDecay = 10 * time.Second

// sample folds one response time into the average.
func (e *endpoint) sample(d time.Duration, now time.Time) {
	e.mu.Lock()
	t := now.UnixNano()
	if e.stamp == 0 {
		e.ewma = d.Seconds()
	} else {
		w := math.Exp(-float64(t-e.stamp) / float64(ewmaDecay))
		e.ewma = e.ewma*w + d.Seconds()*(1-w)
	}
	e.stamp = t
	e.mu.Unlock()
}

// score is the expected cost of one more request: the decayed latency
// average times the requests already in flight plus this one. An endpoint
// with no sample yet scores as if it were fast, so it gets tried.
func (e *endpoint) score(now time.Time) float64 {
	e.mu.Lock()
	avg := e.ewma
	if e.stamp != 0 {
		avg *= math.Exp(-float64(now.UnixNano()-e.stamp) / float64(ewmaDecay))
	}
	e.mu.Unlock()
	return (avg + 1e-4) * float64(e.inflight.Load()+1)
}

// backendState is a Backend with its endpoints resolved to live state.
// ready holds the endpoints taking new requests; term the terminating
// ones, used only when no endpoint is ready (draining).
type backendState struct {
	b     *route.Backend
	ready []*endpoint
	term  []*endpoint
	rr    *atomic.Uint64 // shared by every table's state of the same Backend.Key
}

// candidates are the endpoints a new request may go to.
func (bs *backendState) candidates() []*endpoint {
	if bs == nil {
		return nil
	}
	if len(bs.ready) > 0 {
		return bs.ready
	}
	return bs.term
}

// pick chooses the first endpoint to try, as an index into cands: by the
// affinity cookie's value when it names one of them, else round robin, or
// with ewma the better of two random choices (as ingress-nginx's ewma
// balancer).
func (bs *backendState) pick(cands []*endpoint, ewma bool, cookie string) int {
	n := len(cands)
	if cookie != "" {
		for i, e := range cands {
			if e.cookie == cookie {
				return i
			}
		}
	}
	if n == 1 {
		return 0
	}
	if ewma {
		now := time.Now()
		a := rand.IntN(n)
		b := rand.IntN(n - 1)
		if b >= a {
			b++
		}
		if cands[b].score(now) < cands[a].score(now) {
			return b
		}
		return a
	}
	return int((bs.rr.Add(1) - 1) % uint64(n))
}
