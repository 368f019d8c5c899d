package file

import (
	"context"
	"path/filepath"
	"time"

	"github.com/miekg/dns"

	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

const name = "file"

func init() { pdns.Register(name, setup) }

func setup(c *pdns.Controller) error {
	f, err := parse(c)
	if err != nil {
		return err
	}
	f.Resolve = func(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
		r := new(dns.Msg)
		r.SetQuestion(name, qtype)
		return plugutil.ServerResolve(ctx, r, name, qtype)
	}
	c.OnStartup(func() error { f.Start(); return nil })
	c.OnShutdown(func() error { f.Stop(); return nil })
	c.AddPlugin(func(next pdns.Handler) pdns.Handler { f.Next = next; return f })
	return nil
}

// parse reads `file DBFILE [ZONES...] { reload DURATION; reload_by_mtime; fallthrough [ZONES...] }`,
// possibly several times.
func parse(c *pdns.Controller) (*File, error) {
	f := New(c.Log())
	for c.Next() {
		if !c.NextArg() {
			return nil, c.ArgErr()
		}
		path := c.Val()
		if root, ok := c.Config().Get("root"); ok && !filepath.IsAbs(path) {
			if r, ok := root.(string); ok && r != "" {
				path = filepath.Join(r, path)
			}
		}
		origins, err := pdns.OriginsFromArgsOrServerBlock(c.RemainingArgs(), c.Zones())
		if err != nil {
			return nil, c.Errf("%v", err)
		}
		if err := f.Add(filepath.Clean(path), origins); err != nil {
			return nil, c.Errf("%v", err)
		}
		for c.NextBlock() {
			switch c.Val() {
			case "fallthrough":
				f.Fall.SetZonesFromArgs(c.RemainingArgs())
			case "reload":
				args := c.RemainingArgs()
				if len(args) != 1 {
					return nil, c.Err("reload duration value is expected")
				}
				d, err := time.ParseDuration(args[0])
				if err != nil || d < 0 {
					return nil, c.Errf("invalid duration for reload '%s'", args[0])
				}
				f.Reload = d
			case "reload_by_mtime":
				if len(c.RemainingArgs()) != 0 {
					return nil, c.ArgErr()
				}
				f.ReloadByMtime = true
			case "upstream":
				c.RemainingArgs() // accepted and ignored, as in CoreDNS
			default:
				return nil, c.Errf("unknown property '%s'", c.Val())
			}
		}
	}
	return f, nil
}

var _ plugutil.Handler = (*File)(nil)
