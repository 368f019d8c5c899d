// Package prometheus is the prometheus plugin: the metrics of every query
// under CoreDNS's names (coredns_dns_requests_total and friends), and an
// HTTP endpoint, /metrics, serving them with every other plugin's.
package prometheus

import (
	"net"
	"net/http"
	"strings"

	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

const name = "prometheus"

// DefaultAddr is where /metrics listens when no address is given.
const DefaultAddr = "localhost:9153"

func init() { pdns.Register(name, setup) }

func setup(c *pdns.Controller) error {
	addr := DefaultAddr
	n := 0
	for c.Next() {
		if n++; n > 1 {
			return c.Err("prometheus: only one prometheus directive per server block")
		}
		args := c.RemainingArgs()
		switch len(args) {
		case 0:
		case 1:
			a := args[0]
			if !strings.Contains(a, ":") {
				a = a + ":9153"
			}
			if err := pdns.CheckHostPort(a); err != nil {
				return c.Errf("invalid address '%s': %v", args[0], err)
			}
			addr = a
		default:
			return c.ArgErr()
		}
		if c.NextBlock() {
			return c.ArgErr()
		}
	}
	cfg := c.Config()
	m := &Metrics{}
	c.AddPlugin(func(next pdns.Handler) pdns.Handler { m.next = next; return m })
	c.Config().Set(name, addr)
	c.OnStartup(func() error {
		hosts := cfg.ListenHosts
		if len(hosts) == 0 {
			hosts = []string{""}
		}
		for _, k := range cfg.Keys {
			for _, h := range hosts {
				for _, p := range cfg.Handlers() {
					PluginEnabled.WithLabelValues("dns://"+net.JoinHostPort(h, k.Port), k.Zone, "", p.Name()).Set(1)
				}
			}
		}
		return nil
	})
	// One /metrics per address and Corefile, however many blocks ask.
	key := name + "@" + addr
	if _, dup := c.Instance().Get(key); dup {
		return nil
	}
	c.Instance().Set(key, true)
	var stop func() error
	c.OnStartup(func() error {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(pdns.Registry, promhttp.HandlerOpts{}))
		s, err := pdns.ServeHTTP(addr, mux)
		if err != nil {
			return pdns.Errorf(name, "listen %s: %w", addr, err)
		}
		stop = s
		return nil
	})
	c.OnShutdown(func() error {
		if stop != nil {
			return stop()
		}
		return nil
	})
	return nil
}
