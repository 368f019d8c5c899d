package cache

import (
	"strings"
	"time"

	"github.com/miekg/dns"
)

// kind is how the cache files a reply.
type kind int

const (
	kindNoError kind = iota
	kindNameError
	kindNoData
	kindDelegation
	kindServerError
	kindOtherError
	kindMeta
	kindUpdate
)

func hasSOA(m *dns.Msg) bool {
	for _, rr := range m.Ns {
		if rr.Header().Rrtype == dns.TypeSOA {
			return true
		}
	}
	return false
}

// classify sorts a reply the way CoreDNS's response typing does, with a
// NOERROR whose CNAME chain does not reach the asked type counted as NODATA
// when it has an SOA.
func classify(m *dns.Msg) kind {
	switch {
	case m.Opcode == dns.OpcodeUpdate:
		return kindUpdate
	case m.Opcode == dns.OpcodeNotify:
		return kindMeta
	case len(m.Question) > 0 && (m.Question[0].Qtype == dns.TypeAXFR || m.Question[0].Qtype == dns.TypeIXFR):
		return kindMeta
	}
	if len(m.Answer) > 0 {
		switch m.Rcode {
		case dns.RcodeSuccess:
			if hasSOA(m) && !answersQuestion(m) {
				return kindNoData
			}
			return kindNoError
		case dns.RcodeNameError:
			return kindOtherError
		}
	}
	soa, ns := false, 0
	for _, rr := range m.Ns {
		switch rr.Header().Rrtype {
		case dns.TypeSOA:
			soa = true
		case dns.TypeNS:
			ns++
		}
	}
	switch {
	case soa && m.Rcode == dns.RcodeSuccess:
		return kindNoData
	case m.Rcode == dns.RcodeNameError:
		return kindNameError
	case m.Rcode == dns.RcodeServerFailure || m.Rcode == dns.RcodeNotImplemented:
		return kindServerError
	case ns > 0 && m.Rcode == dns.RcodeSuccess:
		return kindDelegation
	case m.Rcode == dns.RcodeSuccess:
		return kindNoError
	}
	return kindOtherError
}

// answersQuestion follows the CNAME chain from the question name and says
// whether the asked type is at its end (ANY: anything at the name; CNAME:
// one CNAME at the name). A loop or an owner with two targets is no answer.
func answersQuestion(m *dns.Msg) bool {
	if m.Rcode != dns.RcodeSuccess || len(m.Question) == 0 || len(m.Answer) == 0 {
		return false
	}
	q := m.Question[0]
	classOK := func(c uint16) bool { return q.Qclass == dns.ClassANY || c == q.Qclass }
	target := func(owner string) (string, bool) {
		t := ""
		for _, rr := range m.Answer {
			c, ok := rr.(*dns.CNAME)
			if !ok || !classOK(c.Hdr.Class) || !strings.EqualFold(c.Hdr.Name, owner) {
				continue
			}
			if t != "" && !strings.EqualFold(t, c.Target) {
				return "", false
			}
			t = c.Target
		}
		return t, true
	}
	switch q.Qtype {
	case dns.TypeANY:
		for _, rr := range m.Answer {
			if classOK(rr.Header().Class) && strings.EqualFold(rr.Header().Name, q.Name) {
				return true
			}
		}
		return false
	case dns.TypeCNAME:
		t, ok := target(q.Name)
		return ok && t != ""
	}
	name := q.Name
	seen := map[string]bool{}
	for {
		l := strings.ToLower(name)
		if seen[l] {
			return false
		}
		seen[l] = true
		t, ok := target(name)
		if !ok {
			return false
		}
		if t == "" {
			break
		}
		name = t
	}
	for _, rr := range m.Answer {
		h := rr.Header()
		if h.Rrtype == q.Qtype && classOK(h.Class) && strings.EqualFold(h.Name, name) {
			return true
		}
	}
	return false
}

// minimalTTL is the smallest TTL in the reply (OPT aside), capped at max;
// 5 s for replies with nothing in them or of another kind.
func minimalTTL(m *dns.Msg, k kind, maxTTL time.Duration) time.Duration {
	if k != kindNoError && k != kindNameError && k != kindNoData {
		return minDefaultTTL
	}
	if len(m.Answer)+len(m.Ns) == 0 && (len(m.Extra) == 0 || (len(m.Extra) == 1 && m.Extra[0].Header().Rrtype == dns.TypeOPT)) {
		return minDefaultTTL
	}
	least := maxTTL
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if rr.Header().Rrtype == dns.TypeOPT {
				continue
			}
			if d := time.Duration(rr.Header().Ttl) * time.Second; d < least {
				least = d
			}
		}
	}
	return least
}

// matchesQuery is whether a reply is for this query's question.
func matchesQuery(req, res *dns.Msg) bool {
	if !res.Response || len(req.Question) == 0 || len(res.Question) == 0 {
		return false
	}
	a, b := req.Question[0], res.Question[0]
	return a.Qtype == b.Qtype && a.Qclass == b.Qclass && strings.EqualFold(a.Name, b.Name)
}
