// Package autopath is the autopath plugin: when a query's name ends in
// the client's first search domain, it walks the rest of the search path
// on the server side and answers the first name that exists, with a CNAME
// from the name asked, so a pod's ndots:5 walk costs one round trip, as
// CoreDNS's autopath does.
package autopath

import (
	"context"
	"strings"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
)

const name = "autopath"

// AutoPather is a plugin that knows a client's search path (the
// kubernetes plugin: the pod's namespace from its source address).
type AutoPather interface {
	AutoPath(st *pdns.Request) []string
}

// AutoPath is the handler.
type AutoPath struct {
	Next  pdns.Handler
	Zones pdns.Zones

	// search is the fixed search path (from a resolv.conf), ending in "".
	search []string
	// source, when set, gives the search path per query (@plugin).
	source AutoPather
}

// Name implements pdns.Handler.
func (a *AutoPath) Name() string { return name }

// ServeDNS implements pdns.Handler.
func (a *AutoPath) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	st := pdns.NewRequest(w, r)
	if a.Zones.Matches(st.Name()) == "" || len(r.Question) != 1 {
		return pdns.NextOrFailure(name, a.Next, ctx, w, r)
	}
	search := a.search
	if a.source != nil {
		search = a.source.AutoPath(st)
	}
	if len(search) == 0 || search[0] == "" || !dns.IsSubDomain(search[0], st.Name()) || st.Name() == search[0] {
		return pdns.NextOrFailure(name, a.Next, ctx, w, r)
	}
	orig := st.QName()
	// The base is what the client asked before its resolver appended the
	// first search domain.
	base := orig[:len(orig)-len(search[0])]
	base = strings.TrimSuffix(base, ".")
	var first *dns.Msg
	firstRcode := 0
	ar := r.Copy()
	for i, s := range search {
		q := base + "." + s
		if s == "" {
			q = dns.Fqdn(base)
		} else if s == "." {
			q = base + "."
		}
		ar.Question[0].Name = q
		nw := pdns.NewNonWriter(w)
		rc, err := pdns.NextOrFailure(name, a.Next, ctx, nw, ar)
		if err != nil {
			return rc, err
		}
		if i == 0 {
			first, firstRcode = nw.Msg, rc
		}
		if !pdns.ClientWrite(rc) || nw.Msg == nil || nw.Msg.Rcode == dns.RcodeNameError {
			continue
		}
		m := nw.Msg
		cname(m, orig)
		m.Id = r.Id
		if err := w.WriteMsg(m); err != nil {
			return dns.RcodeServerFailure, pdns.Error(name, err)
		}
		return rc, nil
	}
	// Nothing exists: the first answer, as without autopath; the client
	// walks its search path itself.
	if pdns.ClientWrite(firstRcode) && first != nil {
		first.Question[0].Name = orig
		if err := w.WriteMsg(first); err != nil {
			return dns.RcodeServerFailure, pdns.Error(name, err)
		}
	}
	return firstRcode, nil
}

// cname makes m an answer to orig: a CNAME from orig to the name found
// goes first, and the question is the client's again.
func cname(m *dns.Msg, orig string) {
	for _, rr := range m.Answer {
		if strings.EqualFold(orig, rr.Header().Name) {
			break
		}
		c := &dns.CNAME{Hdr: dns.RR_Header{Name: orig, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: rr.Header().Ttl}, Target: rr.Header().Name}
		m.Answer = append([]dns.RR{c}, m.Answer...)
		break
	}
	m.Question[0].Name = orig
}
