// Package plugutil holds the small helpers the data plugins (hosts, file,
// forward, cache, rewrite, template) share: zone matching, fallthrough
// scopes, reverse-name parsing, chaining to the next handler, and a
// recording ResponseWriter for tests and for plugins that inspect what the
// rest of the chain wrote.
package plugutil

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	pdns "github.com/podnet/podnet/internal/dns"
)

// Handler is the server's plugin interface.
type Handler = pdns.Handler

// NextOrFailure calls next, or fails with SERVFAIL when the chain ends here.
func NextOrFailure(name string, next Handler, ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	return pdns.NextOrFailure(name, next, ctx, w, r)
}

// ClientWrite reports whether a handler returning rcode wrote the reply.
func ClientWrite(rcode int) bool { return pdns.ClientWrite(rcode) }

type resolveDepth struct{}

// ServerResolve sends name/qtype through the server that is serving ctx's
// query, as CoreDNS's upstream lookups do: the server block with the
// longest matching zone on the same port answers, and its reply is
// returned. r is the client's query (its EDNS0 and flags are kept). With
// no server in ctx (unit tests) it returns nil, nil.
func ServerResolve(ctx context.Context, r *dns.Msg, name string, qtype uint16) (*dns.Msg, error) {
	si := pdns.ServerInfoFrom(ctx)
	if si.Config == nil || si.Config.Instance() == nil {
		return nil, nil
	}
	depth, _ := ctx.Value(resolveDepth{}).(int)
	if depth > 8 {
		return nil, fmt.Errorf("resolving %s: more than 8 nested lookups", name)
	}
	ctx = context.WithValue(ctx, resolveDepth{}, depth+1)
	q := r.Copy()
	q.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: dns.ClassINET}}
	lname := strings.ToLower(name)
	var best *pdns.Config
	bestZone := ""
	for _, c := range si.Config.Instance().Configs {
		if c.Port != si.Config.Port {
			continue
		}
		for _, z := range c.Zones {
			if dns.IsSubDomain(z, lname) && (best == nil || len(z) > len(bestZone)) {
				best, bestZone = c, z
			}
		}
	}
	if best == nil || best.Chain() == nil {
		m := new(dns.Msg)
		m.SetRcode(q, dns.RcodeRefused)
		return m, nil
	}
	rec := NewRecorder(nil)
	ctx = pdns.WithServerInfo(ctx, pdns.ServerInfo{Server: si.Server, Zone: bestZone, Config: best})
	rc, err := best.Chain().ServeDNS(ctx, rec, q)
	if rec.Msg == nil {
		if !ClientWrite(rc) {
			m := new(dns.Msg)
			m.SetRcode(q, rc)
			return m, nil
		}
		return nil, err
	}
	return rec.Msg, nil
}

// Normalize lowercases a name and makes it fully qualified.
func Normalize(name string) string {
	return strings.ToLower(dns.Fqdn(name))
}

// HostZone turns a server-block key or zone argument ("example.org",
// "dns://example.org:1053", "10.0.0.0/24") into normalized zone names.
// A CIDR becomes the reverse zones it covers: a prefix on an octet (v4) or
// nibble (v6) boundary is one zone, another is expanded to the zones of
// the next boundary, as CoreDNS does (10.0.0.0/23 is 0.0.10.in-addr.arpa.
// and 1.0.10.in-addr.arpa.).
func HostZone(s string) []string {
	s = strings.TrimPrefix(s, "dns://")
	if h, _, err := net.SplitHostPort(s); err == nil {
		s = h
	} else if i := strings.LastIndex(s, ":"); i > 0 && !strings.Contains(s, "/") && strings.Count(s, ":") == 1 {
		s = s[:i]
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		return reverseZones(p.Masked())
	}
	return []string{Normalize(s)}
}

func reverseZones(p netip.Prefix) []string {
	step := 8
	if !p.Addr().Is4() {
		step = 4
	}
	bits := p.Bits()
	next := (bits + step - 1) / step * step
	n := 1 << (next - bits)
	if n > 256 {
		n = 256 // at most one octet of expansion; a wider prefix keeps its first zones
	}
	var out []string
	a := p.Addr()
	for i := 0; i < n; i++ {
		out = append(out, reverseZone(netip.PrefixFrom(a, next)))
		a = addAt(a, next, 1)
	}
	return out
}

// addAt adds v at the bit position just above prefix length bits.
func addAt(a netip.Addr, bits int, v int) netip.Addr {
	b := a.AsSlice()
	pos := bits - 1 // index of the last bit of the prefix
	carry := v
	for i := pos; i >= 0 && carry > 0; {
		byteIdx, bit := i/8, 7-i%8
		cur := int(b[byteIdx]>>bit) & 1
		sum := cur + carry
		if sum&1 == 1 {
			b[byteIdx] |= 1 << bit
		} else {
			b[byteIdx] &^= 1 << bit
		}
		carry = sum >> 1
		i--
	}
	r, _ := netip.AddrFromSlice(b)
	return r
}

// Origins returns the zones named in args, or when there are none, the
// server block's keys.
func Origins(args, serverBlockKeys []string) []string {
	src := args
	if len(src) == 0 {
		src = serverBlockKeys
	}
	var out []string
	for _, s := range src {
		out = append(out, HostZone(s)...)
	}
	return out
}

// Zones is a list of normalized zone names.
type Zones []string

// Matches returns the longest zone qname is in or below, or "".
func (z Zones) Matches(qname string) string {
	best := ""
	for _, zone := range z {
		if dns.IsSubDomain(zone, qname) && len(zone) > len(best) {
			best = zone
		}
	}
	return best
}

// Contains reports whether qname is in or below one of the zones.
func (z Zones) Contains(qname string) bool {
	for _, zone := range z {
		if dns.IsSubDomain(zone, qname) {
			return true
		}
	}
	return false
}

// Fall is a fallthrough scope: nil/empty means no fallthrough; a list of
// zones means fall through for names in them ("." for all).
type Fall struct{ Zones Zones }

// SetZonesFromArgs sets the scope from a `fallthrough [ZONES...]` line.
func (f *Fall) SetZonesFromArgs(args []string) {
	if len(args) == 0 {
		f.Zones = Zones{"."}
		return
	}
	f.Zones = nil
	for _, a := range args {
		f.Zones = append(f.Zones, HostZone(a)...)
	}
}

// Through reports whether qname falls through.
func (f Fall) Through(qname string) bool { return f.Zones.Contains(qname) }

// ReverseAddr returns the address named by an in-addr.arpa or ip6.arpa
// name, or an invalid Addr when the name is not a complete reverse name.
func ReverseAddr(name string) netip.Addr {
	name = strings.ToLower(dns.Fqdn(name))
	switch {
	case strings.HasSuffix(name, ".in-addr.arpa."):
		labels := strings.Split(strings.TrimSuffix(name, ".in-addr.arpa."), ".")
		if len(labels) != 4 {
			return netip.Addr{}
		}
		for i, j := 0, len(labels)-1; i < j; i, j = i+1, j-1 {
			labels[i], labels[j] = labels[j], labels[i]
		}
		a, err := netip.ParseAddr(strings.Join(labels, "."))
		if err != nil || !a.Is4() {
			return netip.Addr{}
		}
		return a
	case strings.HasSuffix(name, ".ip6.arpa."):
		labels := strings.Split(strings.TrimSuffix(name, ".ip6.arpa."), ".")
		if len(labels) != 32 {
			return netip.Addr{}
		}
		var b [16]byte
		for i, l := range labels {
			if len(l) != 1 {
				return netip.Addr{}
			}
			var v byte
			switch c := l[0]; {
			case c >= '0' && c <= '9':
				v = c - '0'
			case c >= 'a' && c <= 'f':
				v = c - 'a' + 10
			default:
				return netip.Addr{}
			}
			pos := 31 - i
			if pos%2 == 0 {
				b[pos/2] |= v << 4
			} else {
				b[pos/2] |= v
			}
		}
		return netip.AddrFrom16(b)
	}
	return netip.Addr{}
}

// Recorder is a ResponseWriter that keeps the message written to it and can
// pass it on to an inner writer. With a nil inner writer it only records.
type Recorder struct {
	dns.ResponseWriter
	Msg   *dns.Msg
	Rcode int
}

// NewRecorder wraps w (which may be nil).
func NewRecorder(w dns.ResponseWriter) *Recorder { return &Recorder{ResponseWriter: w} }

// WriteMsg records m and forwards it when there is an inner writer.
func (r *Recorder) WriteMsg(m *dns.Msg) error {
	r.Msg = m
	r.Rcode = m.Rcode
	if r.ResponseWriter == nil {
		return nil
	}
	return r.ResponseWriter.WriteMsg(m)
}

// Write records the packed message and forwards it.
func (r *Recorder) Write(b []byte) (int, error) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err == nil {
		r.Msg = m
		r.Rcode = m.Rcode
	}
	if r.ResponseWriter == nil {
		return len(b), nil
	}
	return r.ResponseWriter.Write(b)
}

// LocalAddr and RemoteAddr work without an inner writer (tests, prefetch).
func (r *Recorder) LocalAddr() net.Addr {
	if r.ResponseWriter == nil {
		return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}
	}
	return r.ResponseWriter.LocalAddr()
}

// RemoteAddr is the client's address, 127.0.0.1:40212 without an inner writer.
func (r *Recorder) RemoteAddr() net.Addr {
	if r.ResponseWriter == nil {
		return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40212}
	}
	return r.ResponseWriter.RemoteAddr()
}

// Close, TsigStatus, TsigTimersOnly and Hijack are no-ops without an inner writer.
func (r *Recorder) Close() error {
	if r.ResponseWriter == nil {
		return nil
	}
	return r.ResponseWriter.Close()
}

// TsigStatus implements dns.ResponseWriter.
func (r *Recorder) TsigStatus() error {
	if r.ResponseWriter == nil {
		return nil
	}
	return r.ResponseWriter.TsigStatus()
}

// TsigTimersOnly implements dns.ResponseWriter.
func (r *Recorder) TsigTimersOnly(b bool) {
	if r.ResponseWriter != nil {
		r.ResponseWriter.TsigTimersOnly(b)
	}
}

// Hijack implements dns.ResponseWriter.
func (r *Recorder) Hijack() {
	if r.ResponseWriter != nil {
		r.ResponseWriter.Hijack()
	}
}

// IsTCP reports whether the client reached us over TCP.
func IsTCP(w dns.ResponseWriter) bool {
	_, ok := w.RemoteAddr().(*net.TCPAddr)
	return ok
}

// UDPSize is the client's advertised EDNS0 buffer size (at least 512).
func UDPSize(r *dns.Msg) int {
	if o := r.IsEdns0(); o != nil && o.UDPSize() > 512 {
		return int(o.UDPSize())
	}
	return 512
}

// DO reports whether the query set the DNSSEC OK bit.
func DO(r *dns.Msg) bool {
	if o := r.IsEdns0(); o != nil {
		return o.Do()
	}
	return false
}

// reverseZone is the in-addr.arpa/ip6.arpa zone of a prefix on an octet
// (v4) or nibble (v6) boundary.
func reverseZone(p netip.Prefix) string {
	a := p.Addr()
	var sb strings.Builder
	if a.Is4() {
		b := a.As4()
		for i := p.Bits()/8 - 1; i >= 0; i-- {
			fmt.Fprintf(&sb, "%d.", b[i])
		}
		return sb.String() + "in-addr.arpa."
	}
	b := a.As16()
	for i := p.Bits()/4 - 1; i >= 0; i-- {
		n := b[i/2]
		if i%2 == 0 {
			n >>= 4
		}
		fmt.Fprintf(&sb, "%x.", n&0xf)
	}
	return sb.String() + "ip6.arpa."
}
