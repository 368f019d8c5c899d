package proxy

import (
	"github.com/podnet/podnet/internal/promutil"
	"strconv"
	"sync"
	"time"

	"github.com/podnet/podnet/internal/ingress/route"
	"github.com/prometheus/client_golang/prometheus"
)

// The request series carry ingress-nginx's names and labels, so its
// dashboards work: controller_class, controller_namespace and
// controller_pod are constant; host, ingress, namespace, path, service and
// canary come from the route (the rule's host and path, never the
// request's, so a client cannot grow the label space); method is folded
// to the standard methods or "OTHER"; status is the status code sent.
var requestLabels = []string{"host", "ingress", "method", "namespace", "path", "service", "status", "canary"}

type metrics struct {
	requests  *prometheus.CounterVec
	reqDur    *prometheus.HistogramVec
	respDur   *prometheus.HistogramVec
	reqSize   *prometheus.HistogramVec
	respSize  *prometheus.HistogramVec
	bytesSent *prometheus.HistogramVec

	// sets caches each label combination's series, so a request does one
	// map lookup instead of six label hashes.
	sets sync.Map // seriesKey -> *series
}

// labelBase is the route part of a series' labels. One exists per route
// identity (not per table), so caches outlive a Swap.
type labelBase struct {
	host, ingress, namespace, path, service string
}

type seriesKey struct {
	base   *labelBase
	method string
	status int
	canary string
}

type series struct {
	values    []string
	requests  prometheus.Counter
	reqDur    prometheus.Observer
	respDur   prometheus.Observer
	reqSize   prometheus.Observer
	respSize  prometheus.Observer
	bytesSent prometheus.Observer
}

func newMetrics(reg prometheus.Registerer, namespace, pod string) *metrics {
	cl := prometheus.Labels{
		"controller_class":     route.ControllerName,
		"controller_namespace": namespace,
		"controller_pod":       pod,
	}
	hist := func(name, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "nginx", Subsystem: "ingress_controller", Name: name, Help: help,
			ConstLabels: cl, Buckets: buckets,
		}, requestLabels)
	}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "nginx", Subsystem: "ingress_controller", Name: "requests",
			Help: "The total number of client requests", ConstLabels: cl,
		}, requestLabels),
		reqDur:    hist("request_duration_seconds", "The request processing time in seconds (from the first byte read from the client to the last byte sent)", prometheus.DefBuckets),
		respDur:   hist("response_duration_seconds", "The time spent receiving the response from the upstream server in seconds", prometheus.DefBuckets),
		reqSize:   hist("request_size", "The request length (including request line, header, and request body)", prometheus.LinearBuckets(20, 20, 20)),
		respSize:  hist("response_size", "The response length (including request line, header, and request body)", prometheus.LinearBuckets(100, 100, 20)),
		bytesSent: hist("bytes_sent", "The number of bytes sent to a client", prometheus.ExponentialBuckets(10, 10, 7)),
	}
	if reg != nil {
		m.requests = promutil.RegisterOr(reg, m.requests)
		m.reqDur = promutil.RegisterOr(reg, m.reqDur)
		m.respDur = promutil.RegisterOr(reg, m.respDur)
		m.reqSize = promutil.RegisterOr(reg, m.reqSize)
		m.respSize = promutil.RegisterOr(reg, m.respSize)
		m.bytesSent = promutil.RegisterOr(reg, m.bytesSent)
	}
	return m
}

var knownMethods = map[string]string{
	"GET": "GET", "HEAD": "HEAD", "POST": "POST", "PUT": "PUT", "DELETE": "DELETE",
	"PATCH": "PATCH", "OPTIONS": "OPTIONS", "CONNECT": "CONNECT", "TRACE": "TRACE",
}

func (m *metrics) series(base *labelBase, method string, status int, canary string) *series {
	mt, ok := knownMethods[method]
	if !ok {
		mt = "OTHER"
	}
	k := seriesKey{base, mt, status, canary}
	if s, ok := m.sets.Load(k); ok {
		return s.(*series)
	}
	vals := []string{base.host, base.ingress, mt, base.namespace, base.path, base.service, strconv.Itoa(status), canary}
	s := &series{
		values:    vals,
		requests:  m.requests.WithLabelValues(vals...),
		reqDur:    m.reqDur.WithLabelValues(vals...),
		respDur:   m.respDur.WithLabelValues(vals...),
		reqSize:   m.reqSize.WithLabelValues(vals...),
		respSize:  m.respSize.WithLabelValues(vals...),
		bytesSent: m.bytesSent.WithLabelValues(vals...),
	}
	got, _ := m.sets.LoadOrStore(k, s)
	return got.(*series)
}

// observe records one finished request.
func (m *metrics) observe(base *labelBase, method string, status int, canary string, total, upstream time.Duration, reqBytes, respBytes, bodyBytes int64) {
	s := m.series(base, method, status, canary)
	s.requests.Inc()
	s.reqDur.Observe(total.Seconds())
	if upstream >= 0 {
		s.respDur.Observe(upstream.Seconds())
	}
	s.reqSize.Observe(float64(reqBytes))
	s.respSize.Observe(float64(respBytes))
	s.bytesSent.Observe(float64(bodyBytes))
}

// forget deletes the series of route identities that are gone from the
// table, so removed Ingresses do not linger in /metrics.
func (m *metrics) forget(live map[labelBase]*labelBase) {
	m.sets.Range(func(k, v any) bool {
		sk := k.(seriesKey)
		if live[*sk.base] == sk.base {
			return true
		}
		s := v.(*series)
		m.requests.DeleteLabelValues(s.values...)
		m.reqDur.DeleteLabelValues(s.values...)
		m.respDur.DeleteLabelValues(s.values...)
		m.reqSize.DeleteLabelValues(s.values...)
		m.respSize.DeleteLabelValues(s.values...)
		m.bytesSent.DeleteLabelValues(s.values...)
		m.sets.Delete(k)
		return true
	})
}
