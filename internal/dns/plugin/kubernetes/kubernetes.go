// Package kubernetes is the kubernetes plugin of `podnet dns`: it serves
// the Kubernetes DNS-Based Service Discovery specification (schema 1.1.0)
// from podnet's store, as CoreDNS's kubernetes plugin serves it from the
// API server. Services, EndpointSlices, Namespaces (and Pods, with `pods
// verified`) are watched through internal/informer, so a change reaches
// the answers as soon as the store's watch delivers it.
package kubernetes

import (
	"context"
	"math"
	"net/netip"
	"strings"
	"sync"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

const name = "kubernetes"

// DNSSchemaVersion is the version of the specification served, the
// answer to dns-version.<zone> TXT.
const DNSSchemaVersion = "1.1.0"

type podMode int

const (
	podsDisabled podMode = iota
	podsInsecure
	podsVerified
)

// Kubernetes is the handler.
type Kubernetes struct {
	Next  pdns.Handler
	Zones pdns.Zones

	ttl              uint32
	podMode          podMode
	namespaces       map[string]bool
	endpointPodNames bool
	noEndpoints      bool
	ignoreEmpty      bool
	fall             pdns.Fallthrough

	cache *cache

	cancel context.CancelFunc
	wg     sync.WaitGroup
	closer func()
}

// Name implements pdns.Handler.
func (k *Kubernetes) Name() string { return name }

// Ready reports whether every watched kind has been listed (the ready
// plugin waits for it).
func (k *Kubernetes) Ready() bool { return k.cache.HasSynced() }

// primaryZone is the first forward zone, the one PTR targets are in.
func (k *Kubernetes) primaryZone() string {
	for _, z := range k.Zones {
		if !isReverse(z) {
			return z
		}
	}
	return "cluster.local."
}

func (k *Kubernetes) soa(zone string) dns.RR {
	ttl := min(k.ttl, 300)
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      dnsJoin("ns.dns.", zone),
		Mbox:    dnsJoin("hostmaster.", zone),
		Serial:  uint32(k.cache.modified.Load()),
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  k.ttl,
	}
}

func dnsJoin(label, zone string) string {
	if zone == "." {
		return label
	}
	return label + zone
}

type depthKey struct{}

// ServeDNS implements pdns.Handler.
func (k *Kubernetes) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	st := pdns.NewRequest(w, r)
	qname := st.Name()
	zone := k.Zones.Matches(qname)
	if zone == "" {
		return pdns.NextOrFailure(name, k.Next, ctx, w, r)
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true

	k.cache.mu.RLock()
	answer, extra, err := k.lookup(ctx, st, zone, st.QType())
	k.cache.mu.RUnlock()

	switch {
	case err == errNoItems || err == errInvalid:
		if k.fall.Through(qname) {
			return pdns.NextOrFailure(name, k.Next, ctx, w, r)
		}
		if !k.cache.HasSynced() {
			return dns.RcodeServerFailure, nil
		}
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{k.soa(zone)}
	case err != nil:
		return dns.RcodeServerFailure, pdns.Error(name, err)
	case len(answer) == 0:
		m.Ns = []dns.RR{k.soa(zone)}
	default:
		m.Answer = answer
		m.Extra = extra
	}
	if err := w.WriteMsg(m); err != nil {
		return dns.RcodeServerFailure, pdns.Error(name, err)
	}
	return m.Rcode, nil
}

// lookup returns the records of st's name of type qtype. The caller holds
// the cache's read lock.
func (k *Kubernetes) lookup(ctx context.Context, st *pdns.Request, zone string, qtype uint16) (answer, extra []dns.RR, err error) {
	qname := st.Name()
	owner := st.QName()
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: owner, Rrtype: t, Class: dns.ClassINET, Ttl: k.ttl}
	}
	if isReverse(zone) {
		ip := reverseIP(qname)
		if ip == "" {
			return nil, nil, errNoItems
		}
		names := k.reverse(ip)
		if len(names) == 0 {
			return nil, nil, errNoItems
		}
		if qtype != dns.TypePTR {
			return nil, nil, nil
		}
		for _, n := range names {
			answer = append(answer, &dns.PTR{Hdr: hdr(dns.TypePTR), Ptr: n})
		}
		return answer, nil, nil
	}
	if qname == zone {
		switch qtype {
		case dns.TypeSOA:
			return []dns.RR{k.soa(zone)}, nil, nil
		case dns.TypeNS:
			ns := dnsJoin("ns.dns.", zone)
			answer = []dns.RR{&dns.NS{Hdr: hdr(dns.TypeNS), Ns: ns}}
			for _, ip := range k.dnsIPs() {
				extra = append(extra, addrRR(ns, ip, k.ttl))
			}
			return answer, extra, nil
		}
		return nil, nil, nil
	}
	if qname == dnsJoin("dns-version.", zone) {
		if qtype == dns.TypeTXT {
			return []dns.RR{&dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: []string{DNSSchemaVersion}}}, nil, nil
		}
		return nil, nil, nil
	}
	if qname == dnsJoin("ns.dns.", zone) {
		for _, ip := range k.dnsIPs() {
			if rr := addrRR(owner, ip, k.ttl); rr.Header().Rrtype == qtype {
				answer = append(answer, rr)
			}
		}
		return answer, nil, nil
	}
	req, err := parseRequest(qname, zone)
	if err != nil {
		return nil, nil, err
	}
	if req.podOrSvc == "" {
		return nil, nil, nil
	}
	var recs []record
	if req.podOrSvc == podLabel {
		recs, err = k.findPods(req, zone)
	} else {
		recs, err = k.findServices(req, zone)
	}
	if err != nil || len(recs) == 0 {
		return nil, nil, err
	}
	switch qtype {
	case dns.TypeA, dns.TypeAAAA:
		seen := map[string]bool{}
		cname := ""
		for _, rec := range recs {
			if !rec.isIP() {
				if cname == "" {
					cname = rec.host
				}
				continue
			}
			a, _ := netip.ParseAddr(rec.host)
			if (qtype == dns.TypeA) != a.Is4() || seen[rec.host] {
				continue
			}
			seen[rec.host] = true
			answer = append(answer, addrRR(owner, rec.host, k.ttl))
		}
		if cname != "" && len(seen) == 0 {
			// ExternalName: the CNAME, then the target's addresses.
			answer = append(answer, &dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: cname})
			answer = append(answer, k.resolveTarget(ctx, st, cname, qtype)...)
		}
	case dns.TypeCNAME:
		for _, rec := range recs {
			if !rec.isIP() {
				return []dns.RR{&dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: rec.host}}, nil, nil
			}
		}
	case dns.TypeSRV:
		type srvKey struct {
			target string
			port   int
		}
		seen := map[srvKey]bool{}
		var srvs []record
		for _, rec := range recs {
			if rec.port < 0 || seen[srvKey{rec.target, rec.port}] {
				continue
			}
			seen[srvKey{rec.target, rec.port}] = true
			srvs = append(srvs, rec)
		}
		weight := uint16(0)
		if len(srvs) > 0 {
			weight = uint16(math.Floor(100.0 / float64(len(srvs))))
		}
		extraSeen := map[string]bool{}
		for _, rec := range srvs {
			answer = append(answer, &dns.SRV{Hdr: hdr(dns.TypeSRV), Priority: 0, Weight: weight, Port: uint16(rec.port), Target: rec.target})
		}
		for _, rec := range recs {
			if rec.isIP() && rec.port >= 0 && !extraSeen[rec.target+rec.host] {
				extraSeen[rec.target+rec.host] = true
				extra = append(extra, addrRR(rec.target, rec.host, k.ttl))
			}
		}
	}
	return answer, extra, nil
}

func addrRR(owner, ip string, ttl uint32) dns.RR {
	a, _ := netip.ParseAddr(ip)
	if a.Is4() {
		return &dns.A{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: a.AsSlice()}
	}
	return &dns.AAAA{Hdr: dns.RR_Header{Name: owner, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: a.AsSlice()}
}

// dnsIPs are the cluster IPs of kube-system/kube-dns, the name server
// of the zone.
func (k *Kubernetes) dnsIPs() []string {
	if s := k.cache.svcs[key("kube-system", "kube-dns")]; s != nil {
		return serviceIPs(s)
	}
	return nil
}

// resolveTarget finds the addresses of an ExternalName's target: inside
// the plugin's zones directly, elsewhere through the server (the block
// for the target's zone: forward, hosts...), as CoreDNS's upstream does. The
// cache's read lock is held; a chain lookup does not need it.
func (k *Kubernetes) resolveTarget(ctx context.Context, st *pdns.Request, target string, qtype uint16) []dns.RR {
	depth, _ := ctx.Value(depthKey{}).(int)
	if depth >= 8 {
		return nil
	}
	ctx = context.WithValue(ctx, depthKey{}, depth+1)
	q := new(dns.Msg)
	q.SetQuestion(target, qtype)
	sub := pdns.NewRequest(st.W, q)
	if z := k.Zones.Matches(strings.ToLower(target)); z != "" {
		ans, _, err := k.lookup(ctx, sub, z, qtype)
		if err != nil {
			return nil
		}
		return ans
	}
	k.cache.mu.RUnlock()
	defer k.cache.mu.RLock()
	m, err := plugutil.ServerResolve(ctx, st.Req, target, qtype)
	if err != nil || m == nil || m.Rcode != dns.RcodeSuccess {
		return nil
	}
	return m.Answer
}

// AutoPath is the search path of the pod that sent st, for `autopath
// @kubernetes`: <ns>.svc.ZONE, svc.ZONE, ZONE and "" (the bare name). It
// is nil when the name is outside the plugin's zones, when pods are not
// verified (no pod index), or when no pod has the client's address.
func (k *Kubernetes) AutoPath(st *pdns.Request) []string {
	zone := k.Zones.Matches(st.Name())
	if zone == "" || isReverse(zone) || k.podMode != podsVerified {
		return nil
	}
	k.cache.mu.RLock()
	var ns string
	for _, p := range sortedPods(k.cache.podsByIP[canonIP(st.IP())]) {
		ns = p.Namespace
		break
	}
	k.cache.mu.RUnlock()
	if ns == "" {
		return nil
	}
	if zone == "." {
		return []string{ns + ".svc.", "svc.", ".", ""}
	}
	return []string{ns + ".svc." + zone, "svc." + zone, zone, ""}
}
