package prometheus

import (
	"runtime"
	"runtime/debug"

	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Version is the CoreDNS release whose metrics these are, reported in
// coredns_build_info.
const Version = "1.15.0"

// TimeBuckets are the request duration buckets, 0.25 ms doubling.
var TimeBuckets = prometheus.ExponentialBuckets(0.00025, 2, 16)

// SizeBuckets are the message size buckets.
var SizeBuckets = []float64{0, 100, 200, 300, 400, 511, 1023, 2047, 4095, 8291, 16e3, 32e3, 48e3, 64e3}

// The metrics of every query, CoreDNS's names and labels.
var (
	RequestCount = pdns.RegisterOrExisting(prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: pdns.Namespace, Subsystem: "dns", Name: "requests_total",
		Help: "Counter of DNS requests made per zone, protocol and family.",
	}, []string{"server", "zone", "view", "proto", "family", "type"}))

	RequestDuration = pdns.RegisterOrExisting(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: pdns.Namespace, Subsystem: "dns", Name: "request_duration_seconds",
		Buckets: TimeBuckets,
		Help:    "Histogram of the time (in seconds) each request took per zone.",
	}, []string{"server", "zone", "view", "type"}))

	RequestSize = pdns.RegisterOrExisting(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: pdns.Namespace, Subsystem: "dns", Name: "request_size_bytes",
		Buckets: SizeBuckets,
		Help:    "Size of the EDNS0 UDP buffer in bytes (64K for TCP) per zone and protocol.",
	}, []string{"server", "zone", "view", "proto"}))

	RequestDo = pdns.RegisterOrExisting(prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: pdns.Namespace, Subsystem: "dns", Name: "do_requests_total",
		Help: "Counter of DNS requests with DO bit set per zone.",
	}, []string{"server", "view", "zone"}))

	ResponseSize = pdns.RegisterOrExisting(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: pdns.Namespace, Subsystem: "dns", Name: "response_size_bytes",
		Buckets: SizeBuckets,
		Help:    "Size of the returned response in bytes.",
	}, []string{"server", "zone", "view", "proto"}))

	ResponseRcode = pdns.RegisterOrExisting(prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: pdns.Namespace, Subsystem: "dns", Name: "responses_total",
		Help: "Counter of response status codes.",
	}, []string{"server", "zone", "view", "rcode", "plugin"}))

	PluginEnabled = pdns.RegisterOrExisting(prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: pdns.Namespace, Name: "plugin_enabled",
		Help: "A metric that indicates whether a plugin is enabled on per server and zone basis.",
	}, []string{"server", "zone", "view", "name"}))

	BuildInfo = pdns.RegisterOrExisting(prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: pdns.Namespace, Name: "build_info",
		Help: "A metric with a constant '1' value labeled by version, revision, and goversion from which CoreDNS was built.",
	}, []string{"version", "revision", "goversion"}))
)

func init() {
	rev := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 7 {
				rev = s.Value[:7]
			}
		}
	}
	BuildInfo.WithLabelValues(Version, rev, runtime.Version()).Set(1)
}

// monitoredTypes are the query types that get their own "type" label;
// the rest are "other", which bounds the label's cardinality.
var monitoredTypes = map[uint16]bool{}

func init() {
	for _, t := range []uint16{1, 2, 5, 6, 12, 15, 16, 28, 33, 43, 46, 47, 48, 50, 251, 252, 255, 64, 65} {
		monitoredTypes[t] = true
	}
}

func typeLabel(t uint16) string {
	if monitoredTypes[t] {
		return pdns.TypeString(t)
	}
	return "other"
}
