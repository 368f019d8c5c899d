package dns

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace is the prefix of every metric, CoreDNS's, so dashboards built
// for CoreDNS work.
const Namespace = "coredns"

// Registry holds the metrics of the process; the prometheus plugin serves
// it. Metrics live as long as the process, across reloads, as CoreDNS's do.
var Registry = prometheus.NewRegistry()

// PanicsTotal counts panics recovered while serving a query.
var PanicsTotal = prometheus.NewCounter(prometheus.CounterOpts{
	Namespace: Namespace,
	Name:      "panics_total",
	Help:      "A metrics that counts the number of panics.",
})

func init() {
	Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), PanicsTotal)
}

// MustRegister registers collectors with Registry; one already registered
// (a plugin set up again by a reload) is fine and returns the existing one
// for a single collector.
func MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := Registry.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			panic(err)
		}
	}
}

// RegisterOrExisting registers c, or returns the collector already
// registered with the same description (a reload sets plugins up again).
func RegisterOrExisting[C prometheus.Collector](c C) C {
	if err := Registry.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if ex, ok := are.ExistingCollector.(C); ok {
				return ex
			}
		}
		panic(err)
	}
	return c
}
