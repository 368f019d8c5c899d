// Package whoami is the whoami plugin: it answers every query with the
// client's address and port in the additional section (A or AAAA for
// the address, SRV _udp/_tcp for the port), as CoreDNS's whoami does.
package whoami

import (
	"context"
	"net"
	"strconv"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
)

const name = "whoami"

func init() { pdns.Register(name, setup) }

func setup(c *pdns.Controller) error {
	c.Next()
	if c.NextArg() {
		return c.ArgErr()
	}
	c.AddPlugin(func(pdns.Handler) pdns.Handler { return Whoami{} })
	return nil
}

// Whoami is the handler; it ends the chain.
type Whoami struct{}

// Name implements pdns.Handler.
func (Whoami) Name() string { return name }

// ServeDNS implements pdns.Handler.
func (Whoami) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	st := pdns.NewRequest(w, r)
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	hdr := dns.RR_Header{Name: st.QName(), Class: st.QClass()}
	ip := net.ParseIP(st.IP())
	var addr dns.RR
	if st.Family() == 1 {
		hdr.Rrtype = dns.TypeA
		addr = &dns.A{Hdr: hdr, A: ip.To4()}
	} else {
		hdr.Rrtype = dns.TypeAAAA
		addr = &dns.AAAA{Hdr: hdr, AAAA: ip}
	}
	port, _ := strconv.Atoi(st.Port())
	srvName := "_" + st.Proto() + "." + st.QName()
	if st.QName() == "." {
		srvName = "_" + st.Proto() + "."
	}
	srv := &dns.SRV{Hdr: dns.RR_Header{Name: srvName, Rrtype: dns.TypeSRV, Class: st.QClass()}, Port: uint16(port), Target: "."}
	m.Extra = []dns.RR{addr, srv}
	if err := w.WriteMsg(m); err != nil {
		return dns.RcodeServerFailure, pdns.Error(name, err)
	}
	return dns.RcodeSuccess, nil
}
