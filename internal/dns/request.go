package dns

import (
	"net"
	"strings"

	"github.com/miekg/dns"
)

// Request is a query with the writer it came on, with cached accessors
// in the manner of CoreDNS's request.Request.
type Request struct {
	W   dns.ResponseWriter
	Req *dns.Msg

	// Zone is the server block zone that matched, set by the server.
	Zone string

	name   string
	size   int
	do     bool
	edns   bool
	parsed bool
}

// NewRequest returns the Request of r on w.
func NewRequest(w dns.ResponseWriter, r *dns.Msg) *Request { return &Request{W: w, Req: r} }

func (r *Request) question() dns.Question {
	if r.Req == nil || len(r.Req.Question) == 0 {
		return dns.Question{}
	}
	return r.Req.Question[0]
}

// QName is the question's name as the client wrote it.
func (r *Request) QName() string { return r.question().Name }

// Name is the question's name lower-cased and fully qualified.
func (r *Request) Name() string {
	if r.name == "" {
		r.name = strings.ToLower(dns.Fqdn(r.QName()))
	}
	return r.name
}

// QType is the question's type.
func (r *Request) QType() uint16 { return r.question().Qtype }

// Type is the question's type as text ("A", "AAAA", ...).
func (r *Request) Type() string { return TypeString(r.QType()) }

// QClass is the question's class.
func (r *Request) QClass() uint16 { return r.question().Qclass }

// Class is the question's class as text.
func (r *Request) Class() string {
	if s, ok := dns.ClassToString[r.QClass()]; ok {
		return s
	}
	return dns.Class(r.QClass()).String()
}

// TypeString is t's mnemonic, or TYPEnnn.
func TypeString(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return dns.Type(t).String()
}

// IP is the client's address.
func (r *Request) IP() string {
	h, _, err := net.SplitHostPort(r.remote())
	if err != nil {
		return r.remote()
	}
	return h
}

// Port is the client's port.
func (r *Request) Port() string {
	_, p, err := net.SplitHostPort(r.remote())
	if err != nil {
		return "0"
	}
	return p
}

// LocalIP is the address the query arrived on.
func (r *Request) LocalIP() string {
	if r.W == nil || r.W.LocalAddr() == nil {
		return ""
	}
	h, _, err := net.SplitHostPort(r.W.LocalAddr().String())
	if err != nil {
		return r.W.LocalAddr().String()
	}
	return h
}

// LocalPort is the port the query arrived on.
func (r *Request) LocalPort() string {
	if r.W == nil || r.W.LocalAddr() == nil {
		return "0"
	}
	_, p, _ := net.SplitHostPort(r.W.LocalAddr().String())
	return p
}

func (r *Request) remote() string {
	if r.W == nil || r.W.RemoteAddr() == nil {
		return ""
	}
	return r.W.RemoteAddr().String()
}

// Proto is "udp" or "tcp".
func (r *Request) Proto() string { return Proto(r.W) }

// UDPWriter is implemented by the server's own UDP ResponseWriter, so
// Proto need not build its *net.UDPAddr (two allocations) to see the
// transport. Wrappers that embed a dns.ResponseWriter do not promote it.
type UDPWriter interface{ UDPWriter() bool }

// Proto is the transport of w, "udp" or "tcp".
func Proto(w dns.ResponseWriter) string {
	if u, ok := w.(UDPWriter); ok && u.UDPWriter() {
		return "udp"
	}
	if w == nil || w.RemoteAddr() == nil {
		return "udp"
	}
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		return "tcp"
	}
	return "udp"
}

// Family is 1 for IPv4 clients and 2 for IPv6 ones.
func (r *Request) Family() int {
	ip := net.ParseIP(r.IP())
	if ip == nil || ip.To4() != nil {
		return 1
	}
	return 2
}

func (r *Request) parseEDNS() {
	if r.parsed {
		return
	}
	r.parsed = true
	r.size = dns.MinMsgSize
	if r.Req == nil {
		return
	}
	if o := r.Req.IsEdns0(); o != nil {
		r.edns = true
		r.do = o.Do()
		if s := int(o.UDPSize()); s > dns.MinMsgSize {
			r.size = s
		}
	}
}

// Size is the largest reply the client accepts: 65535 over TCP, the EDNS0
// buffer size (at least 512) over UDP.
func (r *Request) Size() int {
	if r.Proto() == "tcp" {
		return dns.MaxMsgSize
	}
	r.parseEDNS()
	return r.size
}

// Do reports whether the DNSSEC OK bit is set.
func (r *Request) Do() bool { r.parseEDNS(); return r.do }

// EDNS reports whether the query carries an OPT record.
func (r *Request) EDNS() bool { r.parseEDNS(); return r.edns }

// Len is the query's size on the wire.
func (r *Request) Len() int {
	if r.Req == nil {
		return 0
	}
	return r.Req.Len()
}

// SizeAndDo gives reply m the OPT record the query asks for: the client's
// buffer size and DO bit. It reports whether the query had EDNS0.
func (r *Request) SizeAndDo(m *dns.Msg) bool {
	o := r.Req.IsEdns0()
	if o == nil {
		return false
	}
	if mo := m.IsEdns0(); mo != nil {
		mo.Hdr.Name = "."
		mo.Hdr.Rrtype = dns.TypeOPT
		mo.SetVersion(0)
		mo.SetUDPSize(o.UDPSize())
		mo.SetDo(o.Do())
		return true
	}
	no := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
	no.SetVersion(0)
	no.SetUDPSize(o.UDPSize())
	no.SetDo(o.Do())
	m.Extra = append(m.Extra, no)
	return true
}

// Scrub fits reply into what the client accepts: an OPT when the query
// had one, name compression, and truncation with TC set when it is too
// big for UDP.
func (r *Request) Scrub(reply *dns.Msg) *dns.Msg {
	if !r.SizeAndDo(reply) {
		// RFC 6891 6.1.1: no OPT in a reply to a query without one (a
		// cached or forwarded reply may carry one).
		for i := 0; i < len(reply.Extra); i++ {
			if reply.Extra[i].Header().Rrtype == dns.TypeOPT {
				reply.Extra = append(reply.Extra[:i], reply.Extra[i+1:]...)
				i--
			}
		}
	}
	size := r.Size()
	if r.Proto() == "tcp" {
		size = dns.MaxMsgSize
	}
	// The uncompressed length is cheap (no compression map); when it
	// fits, the compressed message fits too.
	reply.Compress = false
	fits := reply.Len() <= size
	reply.Compress = true
	if !fits && reply.Len() > size {
		reply.Truncate(size)
	}
	return reply
}
