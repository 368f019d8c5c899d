package server

import (
	"bytes"
	"context"
	"net"
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
