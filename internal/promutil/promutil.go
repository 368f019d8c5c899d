// Package promutil holds the small Prometheus helper every component that
// registers its own metrics needs: registration that tolerates a collector
// registered before (a DNS plugin set up again by a reload, a second proxy
// in one process) by handing back the one already there.
package promutil

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterOr registers c with reg and returns it, or returns the
// collector of the same description already registered; on any other
// registration error c is returned unregistered.
func RegisterOr[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(T); ok {
				return existing
			}
		}
	}
	return c
}
