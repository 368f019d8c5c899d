package server

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// echoHandler answers with the question, the client's address and an OPT
// record copied from the query, so replies show what the writer saw.
type echoHandler struct{}

func (echoHandler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: "who.", Rrtype: dns.TypeTXT, Class: dns.ClassINET},
		Txt: []string{w.RemoteAddr().Network(), w.RemoteAddr().(*net.UDPAddr).IP.String(), w.LocalAddr().String()}})
	if o := r.IsEdns0(); o != nil {
		m.SetEdns0(o.UDPSize(), o.Do())
	}
	w.WriteMsg(m)
}

// exchangeRaw sends b to addr from a fresh socket and returns the reply,
// or nil after 300ms.
func exchangeRaw(t *testing.T, addr string, b []byte) []byte {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// TestUDPServerMatchesMiekg: the UDP loop replies byte for byte as
// miekg/dns's Server does, for good, malformed, rejected and ignored
// packets, on a socket bound to 127.0.0.1 and on a wildcard one.
func TestUDPServerMatchesMiekg(t *testing.T) {
	q := new(dns.Msg)
	q.SetQuestion("Example.ORG.", dns.TypeA)
	good, _ := q.Pack()
	q.SetEdns0(1232, true)
	q.CheckingDisabled = true
	edns, _ := q.Pack()
	notify := new(dns.Msg)
	notify.SetNotify("example.org.")
	notifyB, _ := notify.Pack()
	upd := new(dns.Msg)
	upd.SetUpdate("example.org.")
	updB, _ := upd.Pack()
	packets := [][]byte{
		good, edns, notifyB, updB,
		{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
		{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3f, 'a'},
		{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x0c, 0, 1, 0, 1},
		{0x12, 0x34, 0x01, 0x10, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1},
		{0x12, 0x34, 0x81, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0, 0, 1, 0, 1},
		{0x12, 0x34, 0x29, 0x30, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0, 0, 1, 0, 1}, // opcode 5, flags
		{0x12, 0x34, 0x31, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0, 0, 1, 0, 1}, // opcode 6
		{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0, 0, 1, 0, 1}, // arcount 2, no records
		{0x12, 0x34, 0x01},
	}
	for _, host := range []string{"127.0.0.1", ""} {
		ref, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		refSrv := &dns.Server{PacketConn: ref, Handler: echoHandler{}, UDPSize: dns.MaxMsgSize}
		go refSrv.ActivateAndServe()
		t.Cleanup(func() { refSrv.Shutdown() })

		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		u, err := newUDPServer(pc.(*net.UDPConn), echoHandler{})
		if err != nil {
			t.Fatal(err)
		}
		go u.serve()
		t.Cleanup(func() { u.shutdown(context.Background()) })

		port := func(pc net.PacketConn) string { return net.JoinHostPort("127.0.0.1", _port(pc)) }
		for i, b := range packets {
			want := exchangeRaw(t, port(ref), b)
			got := exchangeRaw(t, port(pc), b)
			// The echoed local address differs by port only.
			want = bytes.ReplaceAll(want, []byte(_port(ref)), []byte(_port(pc)))
			if i < 2 && got == nil {
				t.Fatalf("bind %q: no reply to query %d", host, i)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("bind %q, packet %d (%x):\n got %x\nwant %x", host, i, b, got, want)
			}
		}
	}
}

func _port(pc net.PacketConn) string {
	_, p, _ := net.SplitHostPort(pc.LocalAddr().String())
	return p
}

// TestUDPServerShutdown: shutdown waits for a query in flight, and
// idle workers exit.
func TestUDPServerShutdown(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	served := make(chan struct{})
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if r.Question[0].Name == "slow." {
			close(served)
			<-release
		}
		m := new(dns.Msg)
		m.SetReply(r)
		w.WriteMsg(m)
	})
	u, err := newUDPServer(pc.(*net.UDPConn), h)
	if err != nil {
		t.Fatal(err)
	}
	go u.serve()
	q := new(dns.Msg)
	q.SetQuestion("fast.", dns.TypeA)
	b, _ := q.Pack()
	if exchangeRaw(t, pc.LocalAddr().String(), b) == nil {
		t.Fatal("no reply")
	}
	q.SetQuestion("slow.", dns.TypeA)
	b, _ = q.Pack()
	c, _ := net.Dial("udp", pc.LocalAddr().String())
	defer c.Close()
	c.Write(b)
	<-served
	done := make(chan error, 1)
	go func() { done <- u.shutdown(context.Background()) }()
	select {
	case <-done:
		t.Fatal("shutdown returned with a query in flight")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("shutdown did not return")
	}
	if u.shutdown(context.Background()) == nil {
		t.Fatal("second shutdown: no error")
	}
}

// burst sends every packet of pkts from one socket to addr and returns
// the replies that arrive until 300ms pass without one, sorted.
func burst(t *testing.T, c *net.UDPConn, addr string, pkts [][]byte) [][]byte {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range pkts {
		if _, err := c.WriteToUDP(b, ua); err != nil {
			t.Fatal(err)
		}
	}
	return collect(c)
}

func collect(c *net.UDPConn) [][]byte {
	var got [][]byte
	buf := make([]byte, 65535)
	for {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Read(buf)
		if err != nil {
			break
		}
		got = append(got, bytes.Clone(buf[:n]))
	}
	slices.SortFunc(got, bytes.Compare)
	return got
}

// TestUDPServerBatchMatchesMiekg: datagrams queued before the server
// reads (so recvmmsg returns many, split over several workers) get the
// replies miekg/dns's Server gives them one by one, malformed, rejected
// and ignored ones included.
func TestUDPServerBatchMatchesMiekg(t *testing.T) {
	var pkts [][]byte
	for i := range 100 {
		q := new(dns.Msg)
		q.SetQuestion(fmt.Sprintf("q%d.Example.ORG.", i), dns.TypeA)
		q.Id = uint16(i)
		if i%3 == 0 {
			q.SetEdns0(uint16(512+i), i%2 == 0)
		}
		b, _ := q.Pack()
		switch i % 10 {
		case 4:
			b = b[:13] // truncated question: FORMERR
		case 5:
			b[2] |= 0x80 // a response: ignored
		case 6:
			b = b[:5] // shorter than a header: dropped
		case 7:
			b[2] = 0x31 // opcode 6: NOTIMP
		}
		pkts = append(pkts, b)
	}

	ref, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refSrv := &dns.Server{PacketConn: ref, Handler: echoHandler{}, UDPSize: dns.MaxMsgSize}
	go refSrv.ActivateAndServe()
	t.Cleanup(func() { refSrv.Shutdown() })

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u, err := newUDPServer(pc.(*net.UDPConn), echoHandler{})
	if err != nil {
		t.Fatal(err)
	}
	if mmsgSupported && u.mc == nil {
		t.Fatal("socket bound to 127.0.0.1 does not use batched I/O")
	}
	t.Cleanup(func() { u.shutdown(context.Background()) })

	client := func() *net.UDPConn {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// The echoed server address differs by port: compare with it replaced.
	cref, cgot := client(), client()
	want := burst(t, cref, ref.LocalAddr().String(), pkts)
	// Queue the burst before the server reads.
	for _, b := range pkts {
		if _, err := cgot.WriteTo(b, pc.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	go u.serve()
	got := collect(cgot)

	norm := func(rs [][]byte, srv net.PacketConn) [][]byte {
		for i, r := range rs {
			rs[i] = bytes.ReplaceAll(r, []byte(":"+_port(srv)), []byte(":PORT"))
		}
		slices.SortFunc(rs, bytes.Compare)
		return rs
	}
	want, got = norm(want, ref), norm(got, pc)
	if len(want) != 80 { // 10 of 100 dropped, 10 ignored
		t.Fatalf("miekg/dns answered %d of 100", len(want))
	}
	if len(got) != len(want) {
		t.Fatalf("%d replies, miekg/dns %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("reply %d:\n got %x\nwant %x", i, got[i], want[i])
		}
	}
}

// TestUDPServerBatchWrites: in a batch, a handler that writes twice, one
// that writes after its ServeDNS returned, and a reply larger than
// udpBatchedMax all reach the client.
func TestUDPServerBatchWrites(t *testing.T) {
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		switch r.Question[0].Name {
		case "twice.":
			w.WriteMsg(m)
			m.Id++
			w.WriteMsg(m)
		case "later.":
			go func() {
				time.Sleep(20 * time.Millisecond)
				w.WriteMsg(m)
			}()
		case "big.":
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: "big.", Rrtype: dns.TypeTXT, Class: dns.ClassINET},
				Txt: []string{strings.Repeat("x", 255), strings.Repeat("y", 255)}})
			for len(m.Answer) < 40 {
				m.Answer = append(m.Answer, m.Answer[0])
			}
			w.WriteMsg(m)
		default:
			w.WriteMsg(m)
		}
	})
	for _, ip := range []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback} {
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
		if err != nil {
			if ip.To4() == nil {
				t.Logf("no IPv6 loopback: %v", err)
				continue
			}
			t.Fatal(err)
		}
		batchWrites(t, h, pc)
	}
}

func batchWrites(t *testing.T, h dns.Handler, pc *net.UDPConn) {
	u, err := newUDPServer(pc, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.shutdown(context.Background()) })
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: pc.LocalAddr().(*net.UDPAddr).IP})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	names := []string{"a.", "twice.", "b.", "later.", "big.", "c."}
	for i, n := range names {
		q := new(dns.Msg)
		q.SetQuestion(n, dns.TypeA)
		q.Id = uint16(100 * i)
		b, _ := q.Pack()
		c.WriteTo(b, pc.LocalAddr())
	}
	go u.serve()
	seen := map[string]int{}
	for _, b := range collect(c) {
		m := new(dns.Msg)
		if err := m.Unpack(b); err != nil {
			t.Fatal(err)
		}
		seen[m.Question[0].Name]++
		if m.Question[0].Name == "big." && len(b) <= udpBatchedMax {
			t.Errorf("big reply is %d bytes", len(b))
		}
	}
	want := map[string]int{"a.": 1, "twice.": 2, "b.": 1, "later.": 1, "big.": 1, "c.": 1}
	if !maps.Equal(seen, want) {
		t.Errorf("%v: replies %v, want %v", pc.LocalAddr(), seen, want)
	}
}
