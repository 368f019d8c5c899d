// Package bind is the bind plugin: the addresses a server block listens
// on, given as IP addresses or interface names, minus `except` ones.
package bind

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	pdns "github.com/podnet/podnet/internal/dns"
)

const name = "bind"

func init() { pdns.Register(name, setup) }

// interfaceAddrs returns an interface's addresses; a variable for tests.
var interfaceAddrs = func(ifname string) ([]string, error) {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, err
	}
	as, err := ifc.Addrs()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range as {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ad := p.Addr()
		if ad.Is6() && ad.IsLinkLocalUnicast() {
			// Binding a link-local address needs a zone; skip as CoreDNS does not serve them either.
			continue
		}
		out = append(out, ad.String())
	}
	return out, nil
}

func resolve(c *pdns.Controller, arg string) ([]string, error) {
	if a, err := netip.ParseAddr(arg); err == nil {
		return []string{a.String()}, nil
	}
	as, err := interfaceAddrs(arg)
	if err != nil {
		return nil, c.Errf("not a valid IP address or interface name: '%s'", arg)
	}
	return as, nil
}

func setup(c *pdns.Controller) error {
	var all, except []string
	for c.Next() {
		args := c.RemainingArgs()
		if len(args) == 0 {
			return c.ArgErr()
		}
		for _, a := range args {
			as, err := resolve(c, a)
			if err != nil {
				return err
			}
			all = append(all, as...)
		}
		for c.NextBlock() {
			switch c.Val() {
			case "except":
				ex := c.RemainingArgs()
				if len(ex) == 0 {
					return c.ArgErr()
				}
				for _, a := range ex {
					as, err := resolve(c, a)
					if err != nil {
						return err
					}
					except = append(except, as...)
				}
			default:
				return c.PropertyErr()
			}
		}
	}
	cfg := c.Config()
	for _, a := range all {
		if slices.Contains(except, a) || slices.Contains(cfg.ListenHosts, a) {
			continue
		}
		cfg.ListenHosts = append(cfg.ListenHosts, a)
	}
	if len(cfg.ListenHosts) == 0 {
		return fmt.Errorf("no address to bind to: every address is excluded by except")
	}
	return nil
}
