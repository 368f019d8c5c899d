package cache

import (
	"context"
	"strconv"
	"strings"
	"time"

	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

const name = "cache"

func init() { pdns.Register(name, setup) }

func setup(c *pdns.Controller) error {
	cfg, err := parse(c)
	if err != nil {
		return err
	}
	ca := New(cfg)
	ca.Metrics = metricsOnce()
	ca.ServerName = func(ctx context.Context) string { return pdns.ServerInfoFrom(ctx).Server }
	c.AddPlugin(func(next pdns.Handler) pdns.Handler { ca.Next = next; return ca })
	return nil
}

var shared *Metrics

// metricsOnce makes the series on first use, registered with the server's registry.
func metricsOnce() *Metrics {
	if shared == nil {
		shared = NewMetrics(pdns.Registry)
	}
	return shared
}

// parse reads `cache [TTL] [ZONES...] { success|denial CAPACITY [TTL [MINTTL]]; prefetch AMOUNT [DURATION [PERCENTAGE%]];
// serve_stale [DURATION [immediate|verify ...]]; servfail DURATION; disable success|denial [ZONES...]; keepttl }`.
func parse(c *pdns.Controller) (Config, error) {
	cfg := DefaultConfig()
	seen := false
	for c.Next() {
		if seen {
			return cfg, c.Err("this plugin can only be used once per Server Block")
		}
		seen = true
		args := c.RemainingArgs()
		if len(args) > 0 {
			if ttl, err := strconv.Atoi(args[0]); err == nil {
				if ttl <= 0 {
					return cfg, c.Errf("cache TTL can not be zero or negative: %d", ttl)
				}
				cfg.SuccessTTL = time.Duration(ttl) * time.Second
				cfg.DenialTTL = cfg.SuccessTTL
				args = args[1:]
			}
		}
		zones, err := pdns.OriginsFromArgsOrServerBlock(args, c.Zones())
		if err != nil {
			return cfg, c.Errf("%v", err)
		}
		cfg.Zones = zones
		for c.NextBlock() {
			opt := c.Val()
			args := c.RemainingArgs()
			switch opt {
			case "success", "denial":
				if len(args) == 0 || len(args) > 3 {
					return cfg, c.ArgErr()
				}
				capacity, err := strconv.Atoi(args[0])
				if err != nil || capacity < 0 {
					return cfg, c.Errf("%s: invalid capacity '%s'", opt, args[0])
				}
				ttl, minTTL := cfg.SuccessTTL, cfg.SuccessMinTTL
				if opt == "denial" {
					ttl, minTTL = cfg.DenialTTL, cfg.DenialMinTTL
				}
				if len(args) > 1 {
					n, err := strconv.Atoi(args[1])
					if err != nil {
						return cfg, c.Errf("%s: invalid TTL '%s'", opt, args[1])
					}
					if n <= 0 {
						return cfg, c.Errf("cache TTL can not be zero or negative: %d", n)
					}
					ttl = time.Duration(n) * time.Second
				}
				if len(args) > 2 {
					n, err := strconv.Atoi(args[2])
					if err != nil {
						return cfg, c.Errf("%s: invalid min TTL '%s'", opt, args[2])
					}
					if n < 0 {
						return cfg, c.Errf("cache min TTL can not be negative: %d", n)
					}
					minTTL = time.Duration(n) * time.Second
				}
				if opt == "success" {
					cfg.SuccessCap, cfg.SuccessTTL, cfg.SuccessMinTTL = capacity, ttl, minTTL
				} else {
					cfg.DenialCap, cfg.DenialTTL, cfg.DenialMinTTL = capacity, ttl, minTTL
				}
			case "prefetch":
				if len(args) == 0 || len(args) > 3 {
					return cfg, c.ArgErr()
				}
				n, err := strconv.Atoi(args[0])
				if err != nil {
					return cfg, c.Errf("prefetch: invalid amount '%s'", args[0])
				}
				if n < 0 {
					return cfg, c.Errf("prefetch amount should be positive: %d", n)
				}
				cfg.Prefetch = n
				if len(args) > 1 {
					d, err := time.ParseDuration(args[1])
					if err != nil {
						return cfg, c.Errf("prefetch: invalid duration '%s'", args[1])
					}
					cfg.PrefetchDuration = d
				}
				if len(args) > 2 {
					pct, ok := strings.CutSuffix(args[2], "%")
					if !ok {
						return cfg, c.Errf("last character of percentage should be `%%`, but is: %q", args[2][len(args[2])-1])
					}
					p, err := strconv.Atoi(pct)
					if err != nil {
						return cfg, c.Errf("prefetch: invalid percentage '%s'", args[2])
					}
					if p < 10 || p > 90 {
						return cfg, c.Errf("percentage should fall in range [10, 90]: %d", p)
					}
					cfg.PrefetchPercentage = p
				}
			case "serve_stale":
				if err := parseServeStale(c, &cfg, args); err != nil {
					return cfg, err
				}
			case "servfail":
				if len(args) != 1 {
					return cfg, c.ArgErr()
				}
				d, err := time.ParseDuration(args[0])
				if err != nil {
					return cfg, c.Errf("servfail: invalid duration '%s'", args[0])
				}
				if d < 0 {
					return cfg, c.Err("invalid negative ttl for servfail")
				}
				if d > 5*time.Minute {
					return cfg, c.Err("caching SERVFAIL responses over 5 minutes is not permitted")
				}
				cfg.ServfailTTL = d
			case "disable":
				if len(args) < 1 {
					return cfg, c.ArgErr()
				}
				zones := []string{"."}
				if len(args) > 1 {
					zones = nil
					for _, z := range args[1:] {
						nz, err := pdns.NormalizeZone(z)
						if err != nil {
							return cfg, c.Errf("invalid disabled zone: %s", z)
						}
						zones = append(zones, nz)
					}
				}
				switch args[0] {
				case "success":
					cfg.DisableSuccess = zones
				case "denial":
					cfg.DisableDeny = zones
				default:
					return cfg, c.Errf("cache type for disable must be %q or %q", "success", "denial")
				}
			case "keepttl":
				if len(args) != 0 {
					return cfg, c.ArgErr()
				}
				cfg.KeepTTL = true
			case "serve_stale_policy":
				return cfg, c.Err("serve_stale_policy is not supported by podnet dns")
			default:
				return cfg, c.Errf("unknown property '%s'", opt)
			}
		}
	}
	return cfg, nil
}

func parseServeStale(c *pdns.Controller, cfg *Config, args []string) error {
	if len(args) > 5 {
		return c.ArgErr()
	}
	cfg.StaleUpTo, cfg.StaleTTL, cfg.StaleRecheck, cfg.VerifyStale, cfg.VerifyTimeout = time.Hour, 0, 0, false, 0
	if len(args) > 0 {
		d, err := time.ParseDuration(args[0])
		if err != nil {
			return c.Errf("serve_stale: invalid duration '%s'", args[0])
		}
		if d < 0 {
			return c.Err("invalid negative duration for serve_stale")
		}
		cfg.StaleUpTo = d
	}
	if len(args) > 1 {
		switch mode := strings.ToLower(args[1]); mode {
		case "immediate":
		case "verify":
			cfg.VerifyStale = true
		default:
			return c.Errf("invalid value for serve_stale refresh mode: %s", mode)
		}
	}
	rest := args[min(2, len(args)):]
	if cfg.VerifyStale && len(rest) > 0 {
		t, err := time.ParseDuration(rest[0])
		if err != nil {
			return c.Errf("invalid serve_stale verify timeout: %s", rest[0])
		}
		if t < 0 {
			return c.Err("invalid negative timeout for serve_stale verify")
		}
		cfg.VerifyTimeout = t
		rest = rest[1:]
	} else if !cfg.VerifyStale && len(rest) > 2 {
		return c.ArgErr()
	}
	if len(rest) > 0 {
		d, err := time.ParseDuration(rest[0])
		switch {
		case err != nil:
			return c.Errf("invalid serve_stale response TTL: %s", rest[0])
		case d < 0:
			return c.Err("invalid negative response TTL for serve_stale")
		case d%time.Second != 0:
			return c.Err("serve_stale response TTL must be a whole number of seconds")
		}
		cfg.StaleTTL = d
	}
	if len(rest) > 1 {
		d, err := time.ParseDuration(rest[1])
		switch {
		case err != nil:
			return c.Errf("invalid serve_stale failure recheck: %s", rest[1])
		case d < 0:
			return c.Err("invalid negative failure recheck for serve_stale")
		case d > 5*time.Minute:
			return c.Err("serve_stale failure recheck cannot exceed 5 minutes")
		}
		cfg.StaleRecheck = d
	}
	return nil
}

var _ plugutil.Handler = (*Cache)(nil)
