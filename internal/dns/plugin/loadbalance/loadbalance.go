// Package loadbalance is the loadbalance plugin: it shuffles the A, AAAA
// and MX records of every reply (round robin in effect), so clients that
// take the first address spread over all of them. CNAMEs stay first, in
// their order, so a chain still reads top down.
package loadbalance

import (
	"context"
	"math/rand/v2"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
)

const name = "loadbalance"

func init() { pdns.Register(name, setup) }

func setup(c *pdns.Controller) error {
	for c.Next() {
		args := c.RemainingArgs()
		switch {
		case len(args) == 0:
		case len(args) == 1 && args[0] == "round_robin":
		case len(args) >= 1 && args[0] != "round_robin":
			return c.Errf("unknown policy '%s': only round_robin is supported", args[0])
		default:
			return c.ArgErr()
		}
		if c.NextBlock() {
			return c.Errf("round_robin takes no options, got '%s'", c.Val())
		}
	}
	c.AddPlugin(func(next pdns.Handler) pdns.Handler { return RoundRobin{Next: next} })
	return nil
}

// RoundRobin is the handler.
type RoundRobin struct{ Next pdns.Handler }

// Name implements pdns.Handler.
func (RoundRobin) Name() string { return name }

// ServeDNS implements pdns.Handler.
func (rr RoundRobin) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	return pdns.NextOrFailure(name, rr.Next, ctx, &writer{ResponseWriter: w}, r)
}

type writer struct{ dns.ResponseWriter }

func (w *writer) WriteMsg(m *dns.Msg) error {
	if len(m.Question) == 0 || m.Question[0].Qtype == dns.TypeAXFR || m.Question[0].Qtype == dns.TypeIXFR {
		return w.ResponseWriter.WriteMsg(m)
	}
	m.Answer = Shuffle(m.Answer)
	m.Ns = Shuffle(m.Ns)
	m.Extra = Shuffle(m.Extra)
	return w.ResponseWriter.WriteMsg(m)
}

// Shuffle returns rrs with CNAMEs first (in order), then the records that
// are neither addresses nor MX (in order), then the A and AAAA records
// shuffled, then the MX records shuffled.
func Shuffle(rrs []dns.RR) []dns.RR {
	if len(rrs) < 2 {
		return rrs
	}
	var cname, other, addr, mx []dns.RR
	for _, rr := range rrs {
		switch rr.Header().Rrtype {
		case dns.TypeCNAME:
			cname = append(cname, rr)
		case dns.TypeA, dns.TypeAAAA:
			addr = append(addr, rr)
		case dns.TypeMX:
			mx = append(mx, rr)
		default:
			other = append(other, rr)
		}
	}
	rand.Shuffle(len(addr), func(i, j int) { addr[i], addr[j] = addr[j], addr[i] })
	rand.Shuffle(len(mx), func(i, j int) { mx[i], mx[j] = mx[j], mx[i] })
	out := make([]dns.RR, 0, len(rrs))
	out = append(out, cname...)
	out = append(out, other...)
	out = append(out, addr...)
	return append(out, mx...)
}
