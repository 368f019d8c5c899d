package hosts

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

const name = "hosts"

func init() { pdns.Register(name, setup) }

var (
	entriesGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: pdns.Namespace, Subsystem: "hosts", Name: "entries",
		Help: "The combined number of entries in hosts and Corefile."}, []string{"hostsfile"})
	reloadTime = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: pdns.Namespace, Subsystem: "hosts", Name: "reload_timestamp_seconds",
		Help: "The timestamp of the last reload of hosts file."})
)

func setup(c *pdns.Controller) error {
	opts, err := parse(c)
	if err != nil {
		return err
	}
	h := New(opts, c.Log())
	entries := pdns.RegisterOrExisting(entriesGauge)
	reloaded := pdns.RegisterOrExisting(reloadTime)
	h.OnReload = func(path string, n int) {
		entries.WithLabelValues(path).Set(float64(n))
		reloaded.Set(float64(time.Now().UnixNano()) / 1e9)
	}
	entries.WithLabelValues(opts.Path).Set(float64(h.Entries()))
	c.OnStartup(func() error { h.Start(); return nil })
	c.OnShutdown(func() error { h.Stop(); return nil })
	c.AddPlugin(func(next pdns.Handler) pdns.Handler { h.Next = next; return h })
	return nil
}

// parse reads `hosts [FILE [ZONES...]] { INLINE... ttl reload no_reverse fallthrough fallthrough_unsupported }`.
func parse(c *pdns.Controller) (Options, error) {
	o := DefaultOptions()
	seen := false
	for c.Next() {
		if seen {
			return o, c.Err("this plugin can only be used once per Server Block")
		}
		seen = true
		args := c.RemainingArgs()
		if len(args) >= 1 {
			o.Path = args[0]
			args = args[1:]
			if root, ok := c.Config().Get("root"); ok && !filepath.IsAbs(o.Path) {
				if r, ok := root.(string); ok && r != "" {
					o.Path = filepath.Join(r, o.Path)
				}
			}
			st, err := os.Stat(o.Path)
			switch {
			case err != nil && !os.IsNotExist(err):
				return o, c.Errf("unable to access hosts file '%s': %v", o.Path, err)
			case err != nil:
				c.Log().Warn("hosts file does not exist", "path", o.Path)
			case st.IsDir():
				c.Log().Warn("hosts file is a directory", "path", o.Path)
			}
		}
		origins, err := pdns.OriginsFromArgsOrServerBlock(args, c.Zones())
		if err != nil {
			return o, c.Errf("%v", err)
		}
		o.Origins = origins
		fallSet := false
		for c.NextBlock() {
			switch c.Val() {
			case "fallthrough":
				zones := c.RemainingArgs()
				for _, z := range zones {
					if _, err := pdns.NormalizeZone(z); err != nil {
						return o, c.Errf("fallthrough: %v", err)
					}
				}
				o.Fall.SetZonesFromArgs(zones)
				fallSet = true
			case "fallthrough_unsupported":
				if len(c.RemainingArgs()) != 0 {
					return o, c.ArgErr()
				}
				o.FallUnsupported = true
			case "no_reverse":
				o.Reverse = false
			case "ttl":
				rest := c.RemainingArgs()
				if len(rest) < 1 {
					return o, c.Err("ttl needs a time in second")
				}
				ttl, err := strconv.Atoi(rest[0])
				if err != nil {
					return o, c.Err("ttl needs a number of second")
				}
				if ttl <= 0 || ttl > 65535 {
					return o, c.Err("ttl provided is invalid")
				}
				o.TTL = uint32(ttl)
			case "reload":
				rest := c.RemainingArgs()
				if len(rest) != 1 {
					return o, c.Err("reload needs a duration (zero seconds to disable)")
				}
				d, err := time.ParseDuration(rest[0])
				if err != nil {
					return o, c.Errf("invalid duration for reload '%s'", rest[0])
				}
				if d < 0 {
					return o, c.Errf("invalid negative duration for reload '%s'", rest[0])
				}
				o.Reload = d
			default:
				if !fallSet {
					// A hosts line inlined in the Corefile.
					o.Inline = append(o.Inline, strings.Join(append([]string{c.Val()}, c.RemainingArgs()...), " "))
					continue
				}
				return o, c.Errf("unknown property '%s'", c.Val())
			}
		}
	}
	if o.FallUnsupported && len(o.Fall.Zones) == 0 {
		return o, c.Err("fallthrough_unsupported requires fallthrough")
	}
	return o, nil
}

var _ plugutil.Handler = (*Hosts)(nil)
