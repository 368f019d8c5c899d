// Package health is the health plugin: an HTTP endpoint, /health, that
// answers 200 OK while the process runs, and a lameduck period that
// keeps the server answering for a while after it was told to stop.
package health

import (
	"net"
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

var requestFailures = pdns.RegisterOrExisting(prometheus.NewCounter(prometheus.CounterOpts{
	Namespace: pdns.Namespace,
	Subsystem: "health",
	Name:      "request_failures_total",
	Help:      "The number of times the health check failed.",
}))

// checkEvery is the period of the self-check that feeds the metrics.
var checkEvery = time.Second

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
			w.Write([]byte("OK"))
		})
		stop, err := pdns.ServeHTTP(h.Addr, mux)
		if err != nil {
			return pdns.Errorf(name, "listen %s: %w", h.Addr, err)
		}
		done := make(chan struct{})
		go h.selfCheck(done)
		h.stop = func() error { close(done); return stop() }
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

// selfCheck asks /health every checkEvery, as CoreDNS does, and records
// the time it took or the failure.
func (h *Health) selfCheck(done chan struct{}) {
	host, port, _ := net.SplitHostPort(h.Addr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	url := "http://" + net.JoinHostPort(host, port) + "/health"
	c := &http.Client{Timeout: 3 * time.Second}
	t := time.NewTicker(checkEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		start := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			requestFailures.Inc()
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			requestFailures.Inc()
			continue
		}
		requestDuration.Observe(time.Since(start).Seconds())
	}
}
