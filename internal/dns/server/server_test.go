package server_test

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/dnstest"
	_ "github.com/podnet/podnet/internal/dns/plugin/all"
)

func TestRoutingAndRefused(t *testing.T) {
	s := dnstest.Start(t, `
example.org:0 {
    whoami
}
sub.example.org:0 {
    debug
}
`)
	// whoami answers example.org, keeping the question's case.
	r := dnstest.Query(t, s.Addr, "WwW.ExAmple.ORG.", dns.TypeA)
	if r.Rcode != dns.RcodeSuccess || len(r.Extra) != 2 || r.Extra[0].Header().Name != "WwW.ExAmple.ORG." {
		t.Fatalf("whoami reply: %v", r)
	}
	// The longest zone wins: sub.example.org has no plugins → REFUSED,
	// as CoreDNS answers.
	if r := dnstest.Query(t, s.Addr, "a.SUB.example.org.", dns.TypeA); r.Rcode != dns.RcodeRefused {
		t.Fatalf("sub.example.org: rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	// DS lives in the parent: a DS query for sub.example.org goes to the
	// example.org block (whoami answers).
	if r := dnstest.Query(t, s.Addr, "sub.example.org.", dns.TypeDS); r.Rcode != dns.RcodeSuccess || len(r.Extra) != 2 {
		t.Fatalf("DS sub.example.org: %v", r)
	}
	// Not class IN, and no chaos plugin: REFUSED, as CoreDNS.
	ch := new(dns.Msg)
	ch.SetQuestion("a.example.org.", dns.TypeTXT)
	ch.Question[0].Qclass = dns.ClassCHAOS
	if r := dnstest.Exchange(t, "udp", s.Addr, ch); r.Rcode != dns.RcodeRefused {
		t.Fatalf("CH class: rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	// No zone matches: REFUSED.
	if r := dnstest.Query(t, s.Addr, "example.com.", dns.TypeA); r.Rcode != dns.RcodeRefused {
		t.Fatalf("example.com: rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	// dig over TCP.
	out := dnstest.Dig(t, s.Addr, "+tcp", "Host.example.org", "A")
	if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "_tcp.Host.example.org.") {
		t.Fatalf("dig +tcp:\n%s", out)
	}
}

// bigHandler answers with n TXT records of 200 bytes.
type bigHandler struct{ n int }

func (bigHandler) Name() string { return "big" }
func (h bigHandler) ServeDNS(_ contextT, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	m := new(dns.Msg)
	m.SetReply(r)
	for i := 0; i < h.n; i++ {
		m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{strings.Repeat("x", 200) + string(rune('a'+i%26))}})
	}
	w.WriteMsg(m)
	return dns.RcodeSuccess, nil
}

func init() {
	pdns.Directives = append(pdns.Directives, "testbig")
	pdns.Register("testbig", func(c *pdns.Controller) error {
		c.Next()
		c.AddPlugin(func(pdns.Handler) pdns.Handler { return bigHandler{n: 20} })
		return nil
	})
}

func TestTruncationAndEDNS(t *testing.T) {
	s := dnstest.Start(t, ".:0 {\n testbig\n}\n")
	// Plain UDP: 512 bytes, TC set.
	r := dnstest.Query(t, s.Addr, "big.test.", dns.TypeTXT)
	if !r.Truncated || r.Len() > 512 {
		t.Fatalf("plain UDP: truncated=%v len=%d", r.Truncated, r.Len())
	}
	// EDNS0 with 1232: fits within, TC set, OPT echoes 1232.
	m := new(dns.Msg)
	m.SetQuestion("big.test.", dns.TypeTXT)
	m.SetEdns0(1232, false)
	r = dnstest.Exchange(t, "udp", s.Addr, m)
	if !r.Truncated || r.Len() > 1232 || r.IsEdns0() == nil || r.IsEdns0().UDPSize() != 1232 {
		t.Fatalf("EDNS 1232: truncated=%v len=%d opt=%v", r.Truncated, r.Len(), r.IsEdns0())
	}
	// EDNS0 with 8192: all 20 answers.
	m.SetEdns0(8192, false)
	r = dnstest.Exchange(t, "udp", s.Addr, m)
	if r.Truncated || len(r.Answer) != 20 {
		t.Fatalf("EDNS 8192: truncated=%v answers=%d", r.Truncated, len(r.Answer))
	}
	// TCP: everything.
	m2 := new(dns.Msg)
	m2.SetQuestion("big.test.", dns.TypeTXT)
	r = dnstest.Exchange(t, "tcp", s.Addr, m2)
	if r.Truncated || len(r.Answer) != 20 {
		t.Fatalf("TCP: truncated=%v answers=%d", r.Truncated, len(r.Answer))
	}
	// dig retries over TCP after TC.
	out := dnstest.Dig(t, s.Addr, "+noedns", "big.test", "TXT")
	if !strings.Contains(out, "ANSWER: 20") {
		t.Fatalf("dig did not get the full answer over TCP:\n%s", out)
	}
	// EDNS version 1: BADVERS.
	m3 := new(dns.Msg)
	m3.SetQuestion("big.test.", dns.TypeTXT)
	m3.SetEdns0(1232, false)
	m3.IsEdns0().SetVersion(1)
	r = dnstest.Exchange(t, "udp", s.Addr, m3)
	if r.Rcode != dns.RcodeBadVers {
		t.Fatalf("EDNS version 1: rcode %d, want BADVERS", r.Rcode)
	}
}

func TestReloadKeepsOldOnError(t *testing.T) {
	s := dnstest.Start(t, "example.org:0 {\n whoami\n}\n")
	err := s.Reload(pdns.Input{File: "Corefile", Contents: []byte("example.org:0 {\n whoami\n forwrd . 127.0.0.1\n}\n")})
	if err == nil || err.Error() != "Corefile:3 - Error during parsing: unknown directive 'forwrd'" {
		t.Fatalf("reload error = %v", err)
	}
	if r := dnstest.Query(t, s.Addr, "a.example.org.", dns.TypeA); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("after a failed reload: %v", r)
	}
	// A good reload on the same address swaps the chain in place.
	if err := s.Reload(pdns.Input{File: "Corefile", Contents: []byte("example.org:0 {\n debug\n}\n")}); err != nil {
		t.Fatal(err)
	}
	if r := dnstest.Query(t, s.Addr, "a.example.org.", dns.TypeA); r.Rcode != dns.RcodeRefused {
		t.Fatalf("after reload to an empty chain: %v", r)
	}
}

func TestMalformedPackets(t *testing.T) {
	s := dnstest.Start(t, ".:0 {\n whoami\n}\n")
	for _, b := range malformed {
		sendRaw(t, s.Addr, b)
	}
	if r := dnstest.Query(t, s.Addr, "still.alive.", dns.TypeA); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("after garbage: %v", r)
	}
}

// Queries sent without pause while the Corefile is reloaded again and
// again all get answers: the sockets stay, the tables are swapped.
func TestReloadDropsNothing(t *testing.T) {
	cf := "example.org:0 {\n whoami\n}\n"
	s := dnstest.Start(t, cf)
	stop := make(chan struct{})
	errs := make(chan error, 1)
	var n int
	go func() {
		defer close(errs)
		c := &dns.Client{Timeout: time.Second}
		for {
			select {
			case <-stop:
				return
			default:
			}
			m := new(dns.Msg)
			m.SetQuestion("x.example.org.", dns.TypeA)
			r, _, err := c.Exchange(m, s.Addr)
			if err != nil || r.Rcode != dns.RcodeSuccess {
				errs <- fmt.Errorf("query %d during reloads: %v %v", n, r, err)
				return
			}
			n++
		}
	}()
	for i := 0; i < 30; i++ {
		body := cf
		if i%2 == 1 {
			body = "example.org:0 {\n whoami\n}\nexample.net:0 {\n whoami\n}\n"
		}
		if err := s.Reload(pdns.Input{File: "Corefile", Contents: []byte(body)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if n < 30 {
		t.Fatalf("only %d queries during the reloads", n)
	}
}

// Garbage over TCP: the connection may be closed, the server goes on.
func TestMalformedTCP(t *testing.T) {
	s := dnstest.Start(t, ".:0 {\n whoami\n}\n")
	for _, b := range malformed {
		c, err := net.Dial("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		frame := append([]byte{byte(len(b) >> 8), byte(len(b))}, b...)
		c.Write(frame)
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 65535)
		n, _ := io.ReadAtLeast(c, buf, 2)
		if n >= 2 {
			l := int(buf[0])<<8 | int(buf[1])
			if n >= 2+l {
				var m dns.Msg
				if err := m.Unpack(buf[2 : 2+l]); err != nil {
					t.Errorf("reply to %x does not parse: %v", b, err)
				}
			}
		}
		c.Close()
	}
	m := new(dns.Msg)
	m.SetQuestion("still.alive.", dns.TypeA)
	if r := dnstest.Exchange(t, "tcp", s.Addr, m); r.Rcode != dns.RcodeSuccess {
		t.Fatalf("after TCP garbage: %v", r)
	}
}
