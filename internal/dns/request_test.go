package dns

import (
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

type addrWriter struct {
	dns.ResponseWriter
	remote net.Addr
}

func (w addrWriter) RemoteAddr() net.Addr { return w.remote }
func (w addrWriter) LocalAddr() net.Addr  { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }

func TestRequest(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("WwW.Example.ORG.", dns.TypeAAAA)
	q.SetEdns0(4096, true)
	r := NewRequest(addrWriter{remote: &net.UDPAddr{IP: net.ParseIP("fd00::7"), Port: 4242}}, q)
	if r.Name() != "www.example.org." || r.QName() != "WwW.Example.ORG." || r.Type() != "AAAA" || r.Class() != "IN" {
		t.Errorf("question: %s %s %s %s", r.Name(), r.QName(), r.Type(), r.Class())
	}
	if r.IP() != "fd00::7" || r.Port() != "4242" || r.Family() != 2 || r.Proto() != "udp" || r.Size() != 4096 || !r.Do() {
		t.Errorf("client: %s %s %d %s %d %v", r.IP(), r.Port(), r.Family(), r.Proto(), r.Size(), r.Do())
	}
	tcp := NewRequest(addrWriter{remote: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}}, q)
	if tcp.Proto() != "tcp" || tcp.Size() != dns.MaxMsgSize || tcp.Family() != 1 {
		t.Errorf("tcp: %s %d %d", tcp.Proto(), tcp.Size(), tcp.Family())
	}
}

func TestScrub(t *testing.T) {
	w := addrWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}}
	q := new(dns.Msg)
	q.SetQuestion("example.org.", dns.TypeTXT)
	reply := func() *dns.Msg {
		m := new(dns.Msg)
		m.SetReply(q)
		for i := 0; i < 30; i++ {
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: "example.org.", Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: []string{strings.Repeat("y", 60)}})
		}
		m.SetEdns0(8192, false) // an upstream's OPT
		return m
	}
	// No EDNS in the query: 512 bytes, TC, no OPT.
	m := NewRequest(w, q).Scrub(reply())
	if !m.Truncated || m.Len() > 512 || m.IsEdns0() != nil || !m.Compress {
		t.Errorf("no EDNS: tc=%v len=%d opt=%v compress=%v", m.Truncated, m.Len(), m.IsEdns0(), m.Compress)
	}
	// EDNS 1232: OPT with the client's size, fits under it.
	q.SetEdns0(1232, true)
	m = NewRequest(w, q).Scrub(reply())
	if !m.Truncated || m.Len() > 1232 || m.IsEdns0() == nil || m.IsEdns0().UDPSize() != 1232 || !m.IsEdns0().Do() {
		t.Errorf("EDNS 1232: tc=%v len=%d opt=%v", m.Truncated, m.Len(), m.IsEdns0())
	}
	// Small reply: untouched but for the OPT.
	small := new(dns.Msg)
	small.SetReply(q)
	m = NewRequest(w, q).Scrub(small)
	if m.Truncated || m.IsEdns0() == nil {
		t.Errorf("small: %v", m)
	}
}

func TestZonesAndFallthrough(t *testing.T) {
	z := Zones{"example.org.", "sub.example.org.", "."}
	for name, want := range map[string]string{"a.sub.example.org.": "sub.example.org.", "example.org.": "example.org.", "other.": ".", "sub.example.org.": "sub.example.org."} {
		if got := z.Matches(name); got != want {
			t.Errorf("Matches(%s) = %s, want %s", name, got, want)
		}
	}
	if (Zones{"example.org."}).Matches("example.com.") != "" {
		t.Error("example.com matched example.org")
	}
	var none *Fallthrough
	if none.Through("x.") {
		t.Error("nil fallthrough falls through")
	}
	f := &Fallthrough{}
	if f.Through("x.") {
		t.Error("unset fallthrough falls through")
	}
	f.SetZonesFromArgs(nil)
	if !f.Through("anything.") {
		t.Error("fallthrough without zones does not fall through")
	}
	f.SetZonesFromArgs([]string{"in-addr.arpa", "Example.org"})
	if !f.Through("1.0.0.10.in-addr.arpa.") || !f.Through("A.EXAMPLE.org.") || f.Through("example.net.") {
		t.Error("fallthrough zones")
	}
	if err := f.SetZonesFromArgs([]string{"a..b"}); err == nil {
		t.Error("bad zone accepted")
	}
	got, _ := OriginsFromArgsOrServerBlock(nil, []string{"example.org."})
	if len(got) != 1 || got[0] != "example.org." {
		t.Errorf("origins from block: %v", got)
	}
	got, _ = OriginsFromArgsOrServerBlock([]string{"Example.NET", "10.0.0.0/24"}, []string{"example.org."})
	if strings.Join(got, " ") != "example.net. 0.0.10.in-addr.arpa." {
		t.Errorf("origins from args: %v", got)
	}
}

func TestNewTestControllerKeys(t *testing.T) {
	c := NewTestControllerKeys("whoami", "Example.org:1053", "10.0.0.0/8")
	if strings.Join(c.Zones(), " ") != "example.org. 10.in-addr.arpa." || c.Config().Port != "1053" {
		t.Fatalf("zones %v port %s", c.Zones(), c.Config().Port)
	}
	if got := strings.Join(c.ServerBlockKeys(), " "); got != "dns://example.org.:1053 dns://10.in-addr.arpa.:53" {
		t.Fatalf("keys %s", got)
	}
}
