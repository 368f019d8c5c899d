package autopath

import (
	"fmt"
	"strings"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
)

func init() { pdns.Register(name, setup) }

func setup(c *pdns.Controller) error {
	a, mw, err := parse(c)
	if err != nil {
		return err
	}
	cfg := c.Config()
	if mw != "" {
		// The plugin named with @ is found once the chain exists.
		c.OnStartup(func() error {
			h := cfg.Handler(mw)
			if h == nil {
				return pdns.Errorf(name, "plugin %q (autopath @%s) is not in this server block", mw, mw)
			}
			ap, ok := h.(AutoPather)
			if !ok {
				return pdns.Errorf(name, "%s is not an autopath plugin", mw)
			}
			a.source = ap
			return nil
		})
	}
	c.AddPlugin(func(next pdns.Handler) pdns.Handler { a.Next = next; return a })
	return nil
}

func parse(c *pdns.Controller) (*AutoPath, string, error) {
	a := &AutoPath{}
	mw := ""
	for c.Next() {
		args := c.RemainingArgs()
		if len(args) < 1 {
			return nil, "", c.ArgErr()
		}
		resolv := args[len(args)-1]
		if strings.HasPrefix(resolv, "@") {
			mw = resolv[1:]
			if _, ok := pdns.Lookup(mw); !ok {
				return nil, "", c.Errf("unknown plugin %q in %s", mw, resolv)
			}
		} else {
			rc, err := dns.ClientConfigFromFile(resolv)
			if err != nil {
				return nil, "", c.Errf("failed to parse %q: %v", resolv, err)
			}
			a.search = append([]string{}, rc.Search...)
			pdns.Zones(a.search).Normalize()
			a.search = append(a.search, "")
		}
		zones, err := pdns.OriginsFromArgsOrServerBlock(args[:len(args)-1], c.Config().Zones)
		if err != nil {
			return nil, "", c.Err(err.Error())
		}
		a.Zones = zones
		if c.NextBlock() {
			return nil, "", c.PropertyErr()
		}
	}
	if a.Zones == nil {
		return nil, "", fmt.Errorf("no zones")
	}
	return a, mw, nil
}
