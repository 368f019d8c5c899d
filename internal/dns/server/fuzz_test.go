package server_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/podnet/podnet/internal/dns/server"
)

type contextT = context.Context

var malformed = [][]byte{
	{},
	{0x12},
	{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},                               // qdcount 1, no question
	{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3f, 'a'},                    // label runs off the end
	{0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x0c, 0, 1, 0, 1},       // pointer loop
	{0x12, 0x34, 0x01, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1}, // two questions
	{0x12, 0x34, 0x81, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0, 0, 1, 0, 1},                // a response
}

func sendRaw(t *testing.T, addr string, b []byte) {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	// A reply, if any, must be a parseable message.
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return // dropped, as allowed
	}
	var m dns.Msg
	if err := m.Unpack(buf[:n]); err != nil {
		t.Fatalf("reply to %x does not parse: %v", b, err)
	}
}

// FuzzServePacket feeds random bytes through the decode and serve path
// of a server running whoami: it must never panic, and any reply must
// parse.
func FuzzServePacket(f *testing.F) {
	for _, b := range malformed {
		f.Add(b)
	}
	m := new(dns.Msg)
	m.SetQuestion("example.org.", dns.TypeA)
	m.SetEdns0(4096, true)
	good, _ := m.Pack()
	f.Add(good)
	h, err := server.NewPacketHandler(".:0 {\n errors\n log\n loadbalance\n whoami\n}\nexample.org:0 {\n debug\n}\n")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		out := h.ServePacket(b)
		if out == nil {
			return
		}
		var r dns.Msg
		if err := r.Unpack(out); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
	})
}

func BenchmarkServePacket(b *testing.B) {
	h, err := server.NewPacketHandler(".:0 {\n errors\n loadbalance\n whoami\n}\n")
	if err != nil {
		b.Fatal(err)
	}
	m := new(dns.Msg)
	m.SetQuestion("www.example.org.", dns.TypeA)
	m.SetEdns0(1232, false)
	q, _ := m.Pack()
	b.ReportAllocs()
	for b.Loop() {
		if h.ServePacket(q) == nil {
			b.Fatal("no reply")
		}
	}
}
