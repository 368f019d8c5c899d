// Package health is the health plugin: an HTTP endpoint, /health, that
// answers 200 OK while the process runs, and a lameduck period that
// keeps the server answering for a while after it was told to stop.
package health

import (
	"net/http"
	"time"

	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/prometheus/client_golang/prometheus"
)

const name = "health"

// DefaultAddr is where /health listens when no address is given.
const DefaultAddr = ":8080"

func init() { pdns.Register(name, setup) }

var requestDuration = pdns.RegisterOrExisting(prometheus.NewHistogram(prometheus.HistogramOpts{
	Namespace: pdns.Namespace,
	Subsystem: "health",
	Name:      "request_duration_seconds",
	Buckets:   prometheus.ExponentialBuckets(0.00025, 10, 7),
	Help:      "Histogram of the time (in seconds) each request took.",
}))

// Health is the parsed directive.
type Health struct {
	Addr     string
	Lameduck time.Duration
	stop     func() error
}

func setup(c *pdns.Controller) error {
	h := &Health{Addr: DefaultAddr}
	n := 0
	for c.Next() {
		if n++; n > 1 {
			return c.Err("health: only one health directive per server block")
		}
		args := c.RemainingArgs()
		switch len(args) {
		case 0:
		case 1:
			if err := pdns.CheckHostPort(args[0]); err != nil {
				return c.Errf("invalid address '%s': %v", args[0], err)
			}
			h.Addr = args[0]
		default:
			return c.ArgErr()
		}
		for c.NextBlock() {
			switch c.Val() {
			case "lameduck":
				a := c.RemainingArgs()
				if len(a) != 1 {
					return c.ArgErr()
				}
				d, err := time.ParseDuration(a[0])
				if err != nil || d < 0 {
					return c.Errf("lameduck: invalid duration '%s'", a[0])
				}
				h.Lameduck = d
			default:
				return c.PropertyErr()
			}
		}
	}
	log := c.Log()
	c.OnStartup(func() error {
		mux := http.NewServeMux()
		mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			w.Write([]byte("OK"))
			requestDuration.Observe(time.Since(start).Seconds())
		})
		stop, err := pdns.ServeHTTP(h.Addr, mux)
		if err != nil {
			return pdns.Errorf(name, "listen %s: %w", h.Addr, err)
		}
		h.stop = stop
		return nil
	})
	c.OnShutdown(func() error {
		if h.stop != nil {
			return h.stop()
		}
		return nil
	})
	c.OnFinalShutdown(func() error {
		if h.Lameduck > 0 {
			log.Info("going into lameduck mode", "duration", h.Lameduck.String())
			time.Sleep(h.Lameduck)
		}
		return nil
	})
	c.Config().Set(name, h)
	return nil
}
