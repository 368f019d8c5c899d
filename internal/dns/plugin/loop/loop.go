// Package loop is the loop plugin: it detects a forwarding loop (the
// server's queries coming back to it, say through a resolv.conf that
// names the node itself) by sending itself a query for a random name
// under the block's zone and counting how often that query comes back.
//
// Intended difference from CoreDNS: on a loop CoreDNS exits the process
// (log.Fatal), which in a Kubernetes pod means CrashLoopBackOff
// (coredns/coredns#2087). Here the loop is logged clearly, once, with what
// to do about it, and the block stops forwarding: every query that reaches
// loop (queries the plugins before it did not answer) gets SERVFAIL at
// once. Names served locally (hosts, file, kubernetes) keep working.
package loop

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
)

const name = "loop"

func init() { pdns.Register(name, setup) }

// probeFor bounds how long the probe is retried while it gets no answer.
var probeFor = 30 * time.Second

// Loop is the handler.
type Loop struct {
	next   pdns.Handler
	qname  string
	seen   atomic.Int32
	looped atomic.Bool
	log    interface{ Error(string, ...any) }

	stopOnce sync.Once
	stopped  chan struct{}
}

func setup(c *pdns.Controller) error {
	for c.Next() {
		if c.NextArg() {
			return c.ArgErr()
		}
		if c.NextBlock() {
			return c.ArgErr()
		}
	}
	cfg := c.Config()
	zone := "."
	if len(cfg.Zones) > 0 {
		zone = cfg.Zones[0]
	}
	l := &Loop{qname: probeName(zone), log: c.Log(), stopped: make(chan struct{})}
	c.AddPlugin(func(next pdns.Handler) pdns.Handler { l.next = next; return l })
	c.OnStartup(func() error {
		addrs := cfg.ListenAddrs()
		if len(addrs) == 0 {
			return nil
		}
		go l.probe(selfAddr(addrs[0]))
		return nil
	})
	stop := func() error { l.stopOnce.Do(func() { close(l.stopped) }); return nil }
	c.OnRestart(stop)
	c.OnShutdown(stop)
	return nil
}

// probeName is <random>.<random>.zone, lower case.
func probeName(zone string) string {
	n := fmt.Sprintf("%d.%d.", rand.Int64(), rand.Int64())
	if zone != "." {
		n += zone
	}
	return strings.ToLower(n)
}

// selfAddr turns a wildcard listening address into a loopback one.
func selfAddr(a string) string {
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		return a
	}
	ip := net.ParseIP(h)
	switch {
	case h == "" || ip != nil && ip.IsUnspecified() && ip.To4() != nil:
		h = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		h = "::1"
	}
	return net.JoinHostPort(h, p)
}

// Name implements pdns.Handler.
func (l *Loop) Name() string { return name }

// Looped reports whether a loop was detected.
func (l *Loop) Looped() bool { return l.looped.Load() }

// ServeDNS implements pdns.Handler.
func (l *Loop) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if l.looped.Load() {
		return dns.RcodeServerFailure, pdns.Errorf(name, "forwarding loop detected for this server block: not forwarding")
	}
	if r.Question[0].Qtype == dns.TypeHINFO && strings.EqualFold(r.Question[0].Name, l.qname) {
		if l.seen.Add(1) > 2 {
			if l.looped.CompareAndSwap(false, true) {
				l.log.Error("forwarding loop detected: this server's queries come back to it; not forwarding any more (CoreDNS would exit here). Point forward at a real upstream, not at this server (e.g. a resolv.conf naming 127.0.0.53 or this node)",
					"probe", l.qname, "seen", l.seen.Load())
			}
			return dns.RcodeServerFailure, nil
		}
	}
	return pdns.NextOrFailure(name, l.next, ctx, w, r)
}

// probe sends the HINFO query to addr until it is answered (no loop, or
// the loop was detected and answered SERVFAIL) or probeFor passes.
func (l *Loop) probe(addr string) {
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(l.qname, dns.TypeHINFO)
	deadline := time.Now().Add(probeFor)
	for time.Now().Before(deadline) {
		select {
		case <-l.stopped:
			return
		default:
		}
		if _, _, err := c.Exchange(m, addr); err == nil || l.looped.Load() {
			return
		}
		select {
		case <-l.stopped:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}
