package file

import (
	"fmt"
	"io"
	"strings"

	"github.com/miekg/dns"
)

// Zone is one loaded zone: the apex SOA and NS kept aside (as CoreDNS
// does, so the apex NS set never looks like a delegation), every other
// record by lowercased owner and type, and the set of names that have
// names below them (empty non-terminals count as existing).
type Zone struct {
	Origin     string
	SOA        *dns.SOA
	NS         []dns.RR
	names      map[string]map[uint16][]dns.RR
	parent     map[string]bool // names with at least one stored name strictly below
	origLabels int
}

// Parse loads a zone file for origin. The SOA's owner must be the origin;
// there must be an SOA; NSEC3 records are refused.
func Parse(r io.Reader, origin, fileName string) (*Zone, error) {
	origin = strings.ToLower(dns.Fqdn(origin))
	zp := dns.NewZoneParser(r, origin, fileName)
	zp.SetIncludeAllowed(true)
	z := &Zone{Origin: origin, names: map[string]map[uint16][]dns.RR{}, parent: map[string]bool{}, origLabels: dns.CountLabel(origin)}
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if err := z.insert(rr); err != nil {
			return nil, fmt.Errorf("file %q: %w", fileName, err)
		}
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("failed to parse file %q for origin %s: %w", fileName, origin, err)
	}
	if z.SOA == nil {
		return nil, fmt.Errorf("file %q has no SOA record for origin %s", fileName, origin)
	}
	return z, nil
}

func (z *Zone) insert(rr dns.RR) error {
	h := rr.Header()
	h.Name = strings.ToLower(h.Name)
	switch x := rr.(type) {
	case *dns.SOA:
		if h.Name != z.Origin {
			return fmt.Errorf("SOA owner %s does not match origin %s", h.Name, z.Origin)
		}
		x.Ns, x.Mbox = strings.ToLower(x.Ns), strings.ToLower(x.Mbox)
		if z.SOA == nil {
			z.SOA = x
		}
		return nil
	case *dns.NS:
		x.Ns = strings.ToLower(x.Ns)
		if h.Name == z.Origin {
			z.NS = append(z.NS, rr)
			return nil
		}
	case *dns.NSEC3, *dns.NSEC3PARAM:
		return fmt.Errorf("NSEC3 zones are not supported (%s)", h.Name)
	case *dns.CNAME:
		x.Target = strings.ToLower(x.Target)
	case *dns.MX:
		x.Mx = strings.ToLower(x.Mx)
	}
	if !dns.IsSubDomain(z.Origin, h.Name) {
		return nil // out of zone: never reachable, not kept
	}
	m := z.names[h.Name]
	if m == nil {
		m = map[uint16][]dns.RR{}
		z.names[h.Name] = m
		for n := h.Name; n != z.Origin; {
			i, end := dns.NextLabel(n, 0)
			if end {
				break
			}
			n = n[i:]
			z.parent[n] = true
		}
	}
	m[h.Rrtype] = append(m[h.Rrtype], rr)
	return nil
}

// Serial is the SOA serial.
func (z *Zone) Serial() uint32 { return z.SOA.Serial }

// Result is the kind of answer a lookup produced.
type Result int

// Results of Lookup.
const (
	Success Result = iota
	NameError
	Delegation
	NoData
	ServerFailure
)

// Resolver answers for names the zone does not hold (CNAME targets), by
// sending them through the whole server again.
type Resolver func(name string, qtype uint16) (*dns.Msg, error)

func (z *Zone) soa() []dns.RR { return []dns.RR{z.SOA} }

// glue returns in-zone A then AAAA records of NS targets below their owners.
func (z *Zone) glue(ns []dns.RR) []dns.RR {
	var out []dns.RR
	for _, rr := range ns {
		n, ok := rr.(*dns.NS)
		if !ok || !dns.IsSubDomain(n.Hdr.Name, n.Ns) {
			continue
		}
		if m := z.names[n.Ns]; m != nil {
			out = append(out, m[dns.TypeA]...)
			out = append(out, m[dns.TypeAAAA]...)
		}
	}
	return out
}

// nameFromRight returns qname cut to the origin plus i more labels; shot
// when i labels go past qname.
func (z *Zone) nameFromRight(qname string, i int) (string, bool) {
	if i <= 0 {
		return z.Origin, false
	}
	labels := dns.SplitDomainName(qname)
	want := z.origLabels + i
	if want > len(labels) {
		return qname, true
	}
	idx := dns.Split(qname)
	return qname[idx[len(labels)-want]:], false
}

func wildcardOf(name string) string {
	i, end := dns.NextLabel(name, 0)
	if end {
		return ""
	}
	return "*." + name[i:]
}

// delegation returns the NS set at owner (not the apex) and its glue.
func (z *Zone) delegation(owner, qname string, qtype uint16) ([]dns.RR, []dns.RR, bool) {
	ns := z.names[owner][dns.TypeNS]
	if ns == nil || (qtype == dns.TypeDS && owner == qname) {
		return nil, nil, false
	}
	return ns, z.glue(ns), true
}

// Lookup answers qname/qtype from the zone (qname lowercased, in the zone).
// It returns the answer, authority and additional sections and the result.
func (z *Zone) Lookup(qname string, qtype uint16, resolve Resolver) (answer, ns, extra []dns.RR, res Result) {
	return z.lookup(qname, qtype, resolve, 0)
}

func (z *Zone) lookup(qname string, qtype uint16, resolve Resolver, depth int) (answer, ns, extra []dns.RR, res Result) {
	if z.SOA == nil || depth > 8 {
		return nil, nil, nil, ServerFailure
	}
	if qname == z.Origin {
		switch qtype {
		case dns.TypeSOA:
			return z.soa(), z.NS, nil, Success
		case dns.TypeNS:
			return z.NS, nil, z.glue(z.NS), Success
		}
	}
	var (
		elem     map[uint16][]dns.RR
		found    bool
		wildName string
		wildElem map[uint16][]dns.RR
	)
	for i := 0; ; i++ {
		parts, shot := z.nameFromRight(qname, i)
		if shot {
			break
		}
		elem, found = z.names[parts]
		if !found {
			if w := wildcardOf(parts); w != "" {
				if we, ok := z.names[w]; ok {
					wildElem, wildName = we, w
				} else if z.parent[w] {
					wildElem, wildName = nil, w
				}
			}
			continue
		}
		if nsrrs, glue, ok := z.delegation(parts, qname, qtype); ok {
			return nil, nsrrs, glue, Delegation
		}
	}
	if found {
		if cn := elem[dns.TypeCNAME]; len(cn) > 0 && qtype != dns.TypeCNAME {
			return z.follow(qtype, cn, resolve, depth)
		}
		rrs := elem[qtype]
		if len(rrs) == 0 {
			return nil, z.soa(), nil, NoData
		}
		return rrs, z.NS, z.additional(rrs), Success
	}
	if wildName != "" && !z.closerENTExists(qname, wildName) {
		if wildElem == nil {
			return nil, z.soa(), nil, NoData
		}
		if cn := synth(wildElem[dns.TypeCNAME], qname); len(cn) > 0 && qtype != dns.TypeCNAME {
			return z.follow(qtype, cn, resolve, depth)
		}
		rrs := synth(wildElem[qtype], qname)
		if len(rrs) == 0 {
			return nil, z.soa(), nil, NoData
		}
		return rrs, z.NS, z.additional(rrs), Success
	}
	if z.parent[qname] {
		return nil, z.soa(), nil, Success // empty non-terminal: NOERROR, no data
	}
	return nil, z.soa(), nil, NameError
}

// synth copies wildcard records with qname as owner.
func synth(rrs []dns.RR, qname string) []dns.RR {
	if rrs == nil {
		return nil
	}
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
		out[i].Header().Name = qname
	}
	return out
}

// closerENTExists: a name between qname and the wildcard's parent exists
// (as an empty non-terminal), so the wildcard does not apply.
func (z *Zone) closerENTExists(qname, wild string) bool {
	parent := wild[2:]
	name := qname
	for {
		i, end := dns.NextLabel(name, 0)
		if end {
			return false
		}
		name = name[i:]
		if name == parent || !dns.IsSubDomain(parent, name) {
			return false
		}
		if z.parent[name] {
			return true
		}
	}
}

// follow walks a CNAME chain inside the zone; a target the zone does not
// hold is resolved through resolve.
func (z *Zone) follow(qtype uint16, rrs []dns.RR, resolve Resolver, depth int) ([]dns.RR, []dns.RR, []dns.RR, Result) {
	rrs = append([]dns.RR(nil), rrs...)
	target := rrs[0].(*dns.CNAME).Target
	for i := 0; ; i++ {
		elem := z.names[target]
		if ns, extra, ok := z.findDelegation(target, qtype, elem); ok {
			return rrs, ns, extra, Delegation
		}
		if elem == nil || qtype == dns.TypeNS || (qtype == dns.TypeSOA && target == z.Origin) {
			got, res := z.external(target, qtype, resolve, depth)
			rrs = append(rrs, got...)
			auth := z.NS
			if res == NameError || res == NoData {
				auth = z.soa()
			}
			return rrs, auth, z.additional(rrs), res
		}
		cn := elem[dns.TypeCNAME]
		if len(cn) == 0 {
			rrs = append(rrs, elem[qtype]...)
			return rrs, z.NS, z.additional(rrs), Success
		}
		next := cn[0].(*dns.CNAME)
		if next.Hdr.Name == next.Target {
			return nil, nil, nil, ServerFailure
		}
		rrs = append(rrs, cn...)
		target = next.Target
		if i >= 8 {
			return rrs, z.NS, z.additional(rrs), Success
		}
	}
}

func (z *Zone) findDelegation(name string, qtype uint16, exact map[uint16][]dns.RR) ([]dns.RR, []dns.RR, bool) {
	if !dns.IsSubDomain(z.Origin, name) {
		return nil, nil, false
	}
	for i := 1; ; i++ {
		n, shot := z.nameFromRight(name, i)
		if shot {
			return nil, nil, false
		}
		if n == name {
			if exact == nil {
				return nil, nil, false
			}
			return z.delegation(n, name, qtype)
		}
		if _, ok := z.names[n]; !ok {
			continue
		}
		if ns, extra, ok := z.delegation(n, name, qtype); ok {
			return ns, extra, true
		}
	}
}

// external resolves a CNAME target the zone does not hold.
func (z *Zone) external(target string, qtype uint16, resolve Resolver, depth int) ([]dns.RR, Result) {
	var m *dns.Msg
	if dns.IsSubDomain(z.Origin, target) {
		// In this zone: answer directly (the server would route it back here).
		a, _, _, res := z.lookup(target, qtype, resolve, depth+1)
		m = &dns.Msg{Answer: a}
		switch res {
		case NameError:
			m.Rcode = dns.RcodeNameError
		case ServerFailure:
			m.Rcode = dns.RcodeServerFailure
		}
	} else {
		if resolve == nil {
			return nil, ServerFailure
		}
		var err error
		if m, err = resolve(target, qtype); err != nil {
			return nil, ServerFailure
		}
		if m == nil {
			return nil, Success
		}
	}
	switch {
	case m.Rcode == dns.RcodeNameError:
		return m.Answer, NameError
	case m.Rcode == dns.RcodeServerFailure:
		return m.Answer, ServerFailure
	case m.Rcode == dns.RcodeSuccess && len(m.Answer) == 0:
		return m.Answer, NoData
	}
	return m.Answer, Success
}

// additional adds in-zone A/AAAA records for MX, SRV, SVCB and HTTPS targets.
func (z *Zone) additional(answer []dns.RR) []dns.RR {
	var extra []dns.RR
	seen := map[string]bool{}
	for _, rr := range answer {
		name := ""
		switch x := rr.(type) {
		case *dns.SRV:
			name = x.Target
		case *dns.MX:
			name = x.Mx
		case *dns.SVCB:
			name = x.Target
		case *dns.HTTPS:
			name = x.Target
		}
		if name == "" || !dns.IsSubDomain(z.Origin, name) {
			continue
		}
		name = strings.ToLower(name)
		if seen[name] {
			continue
		}
		seen[name] = true
		if m := z.names[name]; m != nil {
			extra = append(extra, m[dns.TypeA]...)
			extra = append(extra, m[dns.TypeAAAA]...)
		}
	}
	return extra
}
