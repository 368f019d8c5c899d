package forward

import (
	"bytes"
	"context"
	"net"
	"testing"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

// TestQueryWireIsClients: the upstream gets the client's query as the
// client packed it, but for the ID, with and without EDNS, and the
// request is left as it was.
func TestQueryWireIsClients(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			b := append([]byte(nil), buf[:n]...)
			got <- b
			var q dns.Msg
			q.Unpack(b)
			m := new(dns.Msg)
			m.SetReply(&q)
			out, _ := m.Pack()
			pc.WriteTo(out, from)
		}
	}()
	f := newForward(t, nil, pc.LocalAddr().String())
	for _, edns := range []bool{false, true} {
		r := new(dns.Msg)
		r.SetQuestion("Www.Example.org.", dns.TypeAAAA)
		r.Id = 4242
		r.CheckingDisabled = true
		if edns {
			r.SetEdns0(1232, true)
		}
		before, _ := r.Pack()
		rec := plugutil.NewRecorder(nil)
		if _, err := f.ServeDNS(context.Background(), rec, r); err != nil {
			t.Fatal(err)
		}
		wire := <-got
		if len(wire) != len(before) || !bytes.Equal(wire[2:], before[2:]) {
			t.Errorf("edns %v: upstream got %x, want %x but the ID", edns, wire, before)
		}
		after, _ := r.Pack()
		if r.Id != 4242 || !bytes.Equal(after, before) {
			t.Errorf("edns %v: the request changed", edns)
		}
		if rec.Msg == nil || rec.Msg.Id != 4242 {
			t.Errorf("edns %v: reply %v", edns, rec.Msg)
		}
	}
}

func BenchmarkForwardUDP(b *testing.B) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		rr, _ := dns.NewRR(r.Question[0].Name + " 120 IN A 10.0.0.1")
		m.Answer = []dns.RR{rr}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	defer srv.Shutdown()
	cfg := DefaultConfig()
	cfg.From = "."
	cfg.To = []string{pc.LocalAddr().String()}
	f := New(cfg, NewMetrics(nil))
	defer f.Close()
	r := new(dns.Msg)
	r.SetQuestion("www.example.org.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		rec := plugutil.NewRecorder(nil)
		if _, err := f.ServeDNS(context.Background(), rec, r); err != nil {
			b.Fatal(err)
		}
	}
}
