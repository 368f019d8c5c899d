package cache

import (
	"github.com/podnet/podnet/internal/promutil"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the cache's Prometheus series, named as CoreDNS names them.
// A nil *Metrics records nothing.
type Metrics struct {
	Entries     *prometheus.GaugeVec
	Hits        *prometheus.CounterVec
	Misses      *prometheus.CounterVec
	Requests    *prometheus.CounterVec
	Prefetches  *prometheus.CounterVec
	Drops       *prometheus.CounterVec
	ServedStale *prometheus.CounterVec
	Evictions   *prometheus.CounterVec

	// hot caches the per-query series of each (server, zones), so a query
	// does not hash its label values (WithLabelValues) three times.
	hot sync.Map // hotKey -> *hotSeries
}

type hotKey struct{ server, zones string }

type hotSeries struct {
	requests, misses, hitSuccess, hitDenial prometheus.Counter
}

func (m *Metrics) series(server, zones string) *hotSeries {
	k := hotKey{server, zones}
	if v, ok := m.hot.Load(k); ok {
		return v.(*hotSeries)
	}
	hs := &hotSeries{
		requests:   m.Requests.WithLabelValues(server, zones, ""),
		misses:     m.Misses.WithLabelValues(server, zones, ""),
		hitSuccess: m.Hits.WithLabelValues(server, "success", zones, ""),
		hitDenial:  m.Hits.WithLabelValues(server, "denial", zones, ""),
	}
	v, _ := m.hot.LoadOrStore(k, hs)
	return v.(*hotSeries)
}

// NewMetrics makes the series and registers them with reg (when not nil);
// series already registered by an earlier instance are reused.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	typed := []string{"server", "type", "zones", "view"}
	plain := []string{"server", "zones", "view"}
	m := &Metrics{
		Entries:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "coredns", Subsystem: "cache", Name: "entries", Help: "The number of elements in the cache."}, typed),
		Hits:        prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "coredns", Subsystem: "cache", Name: "hits_total", Help: "The count of cache hits."}, typed),
		Misses:      prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "coredns", Subsystem: "cache", Name: "misses_total", Help: "The count of cache misses. Deprecated, derive misses from cache hits/requests counters."}, plain),
		Requests:    prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "coredns", Subsystem: "cache", Name: "requests_total", Help: "The count of cache requests."}, plain),
		Prefetches:  prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "coredns", Subsystem: "cache", Name: "prefetch_total", Help: "The number of times the cache has prefetched a cached item."}, plain),
		Drops:       prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "coredns", Subsystem: "cache", Name: "drops_total", Help: "The number responses that are not cached, because the reply is malformed."}, plain),
		ServedStale: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "coredns", Subsystem: "cache", Name: "served_stale_total", Help: "The number of requests served from stale cache entries."}, plain),
		Evictions:   prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "coredns", Subsystem: "cache", Name: "evictions_total", Help: "The count of cache evictions."}, typed),
	}
	if reg == nil {
		return m
	}
	m.Entries = promutil.RegisterOr(reg, m.Entries)
	m.Hits = promutil.RegisterOr(reg, m.Hits)
	m.Misses = promutil.RegisterOr(reg, m.Misses)
	m.Requests = promutil.RegisterOr(reg, m.Requests)
	m.Prefetches = promutil.RegisterOr(reg, m.Prefetches)
	m.Drops = promutil.RegisterOr(reg, m.Drops)
	m.ServedStale = promutil.RegisterOr(reg, m.ServedStale)
	m.Evictions = promutil.RegisterOr(reg, m.Evictions)
	return m
}

func (m *Metrics) request(server, zones string) {
	if m != nil {
		m.series(server, zones).requests.Inc()
	}
}

func (m *Metrics) hit(server, typ, zones string) {
	if m == nil {
		return
	}
	switch typ {
	case "success":
		m.series(server, zones).hitSuccess.Inc()
	case "denial":
		m.series(server, zones).hitDenial.Inc()
	default:
		m.Hits.WithLabelValues(server, typ, zones, "").Inc()
	}
}

func (m *Metrics) miss(server, zones string) {
	if m != nil {
		m.series(server, zones).misses.Inc()
	}
}

func (m *Metrics) prefetchInc(server, zones string) {
	if m != nil {
		m.Prefetches.WithLabelValues(server, zones, "").Inc()
	}
}

func (m *Metrics) drop(server, zones string) {
	if m != nil {
		m.Drops.WithLabelValues(server, zones, "").Inc()
	}
}

func (m *Metrics) servedStale(server, zones string) {
	if m != nil {
		m.ServedStale.WithLabelValues(server, zones, "").Inc()
	}
}

func (m *Metrics) evict(server, typ, zones string) {
	if m != nil {
		m.Evictions.WithLabelValues(server, typ, zones, "").Inc()
	}
}

func (m *Metrics) size(server, zones string, pos, neg int) {
	if m != nil {
		m.Entries.WithLabelValues(server, "success", zones, "").Set(float64(pos))
		m.Entries.WithLabelValues(server, "denial", zones, "").Set(float64(neg))
	}
}
