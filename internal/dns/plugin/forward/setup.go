package forward

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

const (
	name         = "forward"
	maxUpstreams = 15
)

func init() { pdns.Register(name, setup) }

func setup(c *pdns.Controller) error {
	var fs []*Forward
	m := NewMetrics(pdns.Registry)
	for c.Next() {
		cfg, err := parseStanza(c)
		if err != nil {
			return err
		}
		f := New(cfg, m)
		fs = append(fs, f)
	}
	// Several forward lines in one block are chained: each passes on to
	// the next (see `next`), the last to the next plugin.
	for i := 0; i+1 < len(fs); i++ {
		fs[i].Next = fs[i+1]
	}
	for _, f := range fs {
		c.OnShutdown(func() error { f.Close(); return nil })
	}
	c.AddPlugin(func(next pdns.Handler) pdns.Handler {
		fs[len(fs)-1].Next = next
		return fs[0]
	})
	return nil
}

func parseStanza(c *pdns.Controller) (Config, error) {
	cfg := DefaultConfig()
	if !c.NextArg() {
		return cfg, c.ArgErr()
	}
	from := plugutil.HostZone(c.Val())
	if _, err := pdns.NormalizeZone(strings.TrimPrefix(c.Val(), "dns://")); err != nil || len(from) == 0 {
		return cfg, c.Errf("unable to normalize '%s'", c.Val())
	}
	cfg.From = from[0]
	to := c.RemainingArgs()
	if len(to) == 0 {
		return cfg, c.ArgErr()
	}
	line := c.Line()
	for c.NextBlock() {
		if err := parseBlock(c, &cfg); err != nil {
			return cfg, err
		}
	}
	for _, t := range to {
		addrs, err := upstreams(t)
		if err != nil {
			return cfg, pdns.Errorf(name, "%s:%d - Error during parsing: %v", c.File(), line, err)
		}
		cfg.To = append(cfg.To, addrs...)
	}
	if len(cfg.To) == 0 {
		return cfg, pdns.Errorf(name, "%s:%d - Error during parsing: no valid upstream addresses found", c.File(), line)
	}
	if len(cfg.To) > maxUpstreams {
		return cfg, pdns.Errorf(name, "%s:%d - Error during parsing: more than %d TOs configured: %d", c.File(), line, maxUpstreams, len(cfg.To))
	}
	return cfg, nil
}

// upstreams turns one TO into host:port addresses: IP, IP:port, [v6]:port,
// dns://..., or the path of a resolv.conf whose nameservers are taken
// (port 53).
func upstreams(to string) ([]string, error) {
	if i := strings.Index(to, "://"); i >= 0 {
		scheme := to[:i]
		if scheme != "dns" {
			return nil, fmt.Errorf("'%s' is not supported as a destination protocol in forward: %s", scheme, to)
		}
		to = to[i+3:]
	}
	if a, err := netip.ParseAddr(to); err == nil {
		return []string{net.JoinHostPort(a.String(), "53")}, nil
	}
	if ap, err := netip.ParseAddrPort(to); err == nil {
		return []string{ap.String()}, nil
	}
	if st, err := os.Stat(to); err == nil && !st.IsDir() {
		cc, err := dns.ClientConfigFromFile(to)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", to, err)
		}
		var out []string
		for _, s := range cc.Servers {
			a, err := netip.ParseAddr(strings.Split(s, "%")[0])
			if err != nil {
				continue
			}
			out = append(out, net.JoinHostPort(a.String(), cc.Port))
		}
		return out, nil
	}
	return nil, fmt.Errorf("not an IP address or file: %q (host names are not supported as upstreams)", to)
}

func parseBlock(c *pdns.Controller, cfg *Config) error {
	one := func() (string, error) {
		if !c.NextArg() {
			return "", c.ArgErr()
		}
		v := c.Val()
		if c.NextArg() {
			return "", c.ArgErr()
		}
		return v, nil
	}
	noArgs := func() error {
		if c.NextArg() {
			return c.ArgErr()
		}
		return nil
	}
	duration := func(opt string, allowZero bool) (time.Duration, error) {
		v, err := one()
		if err != nil {
			return 0, err
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, c.Errf("%s: invalid duration '%s'", opt, v)
		}
		if d < 0 || (!allowZero && d == 0) {
			return 0, c.Errf("%s can't be negative: %s", opt, d)
		}
		return d, nil
	}
	rcodes := func(opt string) ([]int, error) {
		args := c.RemainingArgs()
		if len(args) == 0 {
			return nil, c.ArgErr()
		}
		var out []int
		for _, a := range args {
			rc, ok := dns.StringToRcode[strings.ToUpper(a)]
			if !ok {
				return nil, c.Errf("%s is not a valid rcode", a)
			}
			if opt == "failover" && rc == dns.RcodeSuccess {
				return nil, c.Err("NoError cannot be used in failover")
			}
			out = append(out, rc)
		}
		return out, nil
	}
	var err error
	switch c.Val() {
	case "except":
		ignore := c.RemainingArgs()
		if len(ignore) == 0 {
			return c.ArgErr()
		}
		for _, i := range ignore {
			cfg.Except = append(cfg.Except, plugutil.HostZone(i)...)
		}
	case "max_fails":
		v, err := one()
		if err != nil {
			return err
		}
		n, perr := strconv.ParseUint(v, 10, 32)
		if perr != nil {
			return c.Errf("max_fails: invalid number '%s'", v)
		}
		cfg.MaxFails = uint32(n)
	case "health_check":
		if !c.NextArg() {
			return c.ArgErr()
		}
		d, perr := time.ParseDuration(c.Val())
		if perr != nil {
			return c.Errf("health_check: invalid duration '%s'", c.Val())
		}
		if d < 0 {
			return c.Errf("health_check can't be negative: %s", d)
		}
		cfg.HCInterval = d
		for c.NextArg() {
			switch c.Val() {
			case "no_rec":
				cfg.HCNoRec = true
			case "domain":
				if !c.NextArg() {
					return c.ArgErr()
				}
				if _, ok := dns.IsDomainName(c.Val()); !ok {
					return c.Errf("health_check: invalid domain name %s", c.Val())
				}
				cfg.HCDomain = plugutil.Normalize(c.Val())
			default:
				return c.Errf("health_check: unknown option %s", c.Val())
			}
		}
	case "force_tcp":
		if err := noArgs(); err != nil {
			return err
		}
		cfg.ForceTCP = true
	case "prefer_udp":
		if err := noArgs(); err != nil {
			return err
		}
		cfg.PreferUDP = true
	case "expire":
		if cfg.Expire, err = duration("expire", true); err != nil {
			return err
		}
	case "read_timeout":
		v, err := one()
		if err != nil {
			return err
		}
		d, perr := time.ParseDuration(v)
		if perr != nil || d <= 0 {
			return c.Errf("read_timeout must be positive: %s", v)
		}
		cfg.ReadTimeout = d
	case "policy":
		v, err := one()
		if err != nil {
			return err
		}
		switch v {
		case "random":
			cfg.Policy = Random
		case "round_robin":
			cfg.Policy = RoundRobin
		case "sequential":
			cfg.Policy = Sequential
		default:
			return c.Errf("unknown policy '%s'", v)
		}
	case "max_concurrent":
		v, err := one()
		if err != nil {
			return err
		}
		n, perr := strconv.Atoi(v)
		if perr != nil {
			return c.Errf("max_concurrent: invalid number '%s'", v)
		}
		if n < 0 {
			return c.Errf("max_concurrent can't be negative: %d", n)
		}
		cfg.MaxConcurrent = int64(n)
	case "next":
		if cfg.Next, err = rcodes("next"); err != nil {
			return err
		}
	case "failover":
		if cfg.Failover, err = rcodes("failover"); err != nil {
			return err
		}
	case "failfast_all_unhealthy_upstreams":
		if err := noArgs(); err != nil {
			return err
		}
		cfg.FailfastAllBad = true
	case "max_idle_conns", "max_connect_attempts", "max_age":
		// Accepted for compatibility; connection reuse is bounded by expire.
		if _, err := one(); err != nil {
			return err
		}
	case "tls", "tls_servername", "doh_method", "source_address", "resolver", "next_on_nodata":
		return c.Errf("'%s' is not supported by podnet dns", c.Val())
	default:
		return c.Errf("unknown property '%s'", c.Val())
	}
	return nil
}
