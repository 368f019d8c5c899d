package forward

import (
	"github.com/podnet/podnet/internal/promutil"
	"strconv"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are forward's series under CoreDNS 1.15's names (the proxy_*
// series with proxy_name="forward"). A nil *Metrics records nothing.
type Metrics struct {
	Duration       *prometheus.HistogramVec
	HCFailures     *prometheus.CounterVec
	HCBroken       prometheus.Counter
	MaxConcRejects prometheus.Counter

	// observers caches Duration's series per (to, rcode), so an exchange
	// does not hash its label values.
	observers sync.Map // obsKey -> prometheus.Observer
}

type obsKey struct {
	to    string
	rcode int
}

// NewMetrics makes and registers the series (reusing ones already registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "coredns", Subsystem: "proxy", Name: "request_duration_seconds",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 16), Help: "Histogram of the time each request took."}, []string{"proxy_name", "to", "rcode"}),
		HCFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "coredns", Subsystem: "proxy", Name: "healthcheck_failures_total",
			Help: "Counter of the number of failed healthchecks."}, []string{"proxy_name", "to"}),
		HCBroken: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "coredns", Subsystem: "forward", Name: "healthcheck_broken_total",
			Help: "Counter of the number of complete failures of the healthchecks."}),
		MaxConcRejects: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "coredns", Subsystem: "forward", Name: "max_concurrent_rejects_total",
			Help: "Counter of the number of queries rejected because the concurrent queries were at maximum."}),
	}
	if reg == nil {
		return m
	}
	m.Duration = promutil.RegisterOr(reg, m.Duration)
	m.HCFailures = promutil.RegisterOr(reg, m.HCFailures)
	m.HCBroken = promutil.RegisterOr(reg, m.HCBroken)
	m.MaxConcRejects = promutil.RegisterOr(reg, m.MaxConcRejects)
	return m
}

func (m *Metrics) observe(to string, rcode int, d time.Duration) {
	if m == nil {
		return
	}
	k := obsKey{to, rcode}
	if o, ok := m.observers.Load(k); ok {
		o.(prometheus.Observer).Observe(d.Seconds())
		return
	}
	rc, ok := dns.RcodeToString[rcode]
	if !ok {
		rc = strconv.Itoa(rcode)
	}
	o := m.Duration.WithLabelValues("forward", to, rc)
	m.observers.Store(k, o)
	o.Observe(d.Seconds())
}

func (m *Metrics) hcFailure(to string) {
	if m != nil {
		m.HCFailures.WithLabelValues("forward", to).Inc()
	}
}

func (m *Metrics) broken() {
	if m != nil {
		m.HCBroken.Inc()
	}
}

func (m *Metrics) reject() {
	if m != nil {
		m.MaxConcRejects.Inc()
	}
}
