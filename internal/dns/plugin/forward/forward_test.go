package forward

import (
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/podnet/podnet/internal/dns/plugin/plugutil"
)

// upstream is a DNS server on 127.0.0.1 (UDP and TCP on the same port).
type upstream struct {
	addr    string
	udp     atomic.Int32
	tcp     atomic.Int32
	handler func(w dns.ResponseWriter, r *dns.Msg)
	mu      sync.Mutex
}

func startUpstream(t *testing.T, h func(w dns.ResponseWriter, r *dns.Msg)) *upstream {
	t.Helper()
	u := &upstream{handler: h}
	var pc net.PacketConn
	var l net.Listener
	for try := 0; ; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if try == 20 {
			t.Fatal(err)
		}
	}
	u.addr = pc.LocalAddr().String()
	mux := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
			u.tcp.Add(1)
		} else {
			u.udp.Add(1)
		}
		u.mu.Lock()
		f := u.handler
		u.mu.Unlock()
		f(w, r)
	})
	su := &dns.Server{PacketConn: pc, Handler: mux}
	st := &dns.Server{Listener: l, Handler: mux}
	go su.ActivateAndServe()
	go st.ActivateAndServe()
	t.Cleanup(func() { su.Shutdown(); st.Shutdown() })
	return u
}

func (u *upstream) set(h func(w dns.ResponseWriter, r *dns.Msg)) {
	u.mu.Lock()
	u.handler = h
	u.mu.Unlock()
}

func answerA(ip string) func(w dns.ResponseWriter, r *dns.Msg) {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		rr, _ := dns.NewRR(r.Question[0].Name + " 120 IN A " + ip)
		m.Answer = []dns.RR{rr}
		w.WriteMsg(m)
	}
}

// bigAnswer answers with 40 A records: TC over UDP when the buffer is 512.
func bigAnswer(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	for i := range 40 {
		rr, _ := dns.NewRR(r.Question[0].Name + " 120 IN A 10.1.0." + strconv.Itoa(i+1))
		m.Answer = append(m.Answer, rr)
	}
	if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
		m.Truncate(plugutil.UDPSize(r))
	}
	w.WriteMsg(m)
}

// tcpWriter is a recorder whose client came over TCP.
type tcpWriter struct{ *plugutil.Recorder }

func (tcpWriter) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000} }

func ask(t *testing.T, f *Forward, name string, tcp bool) (*dns.Msg, int, error) {
	t.Helper()
	r := new(dns.Msg)
	r.SetQuestion(name, dns.TypeA)
	r.Id = 777
	rec := plugutil.NewRecorder(nil)
	var w dns.ResponseWriter = rec
	if tcp {
		w = tcpWriter{rec}
	}
	rc, err := f.ServeDNS(context.Background(), w, r)
	if rec.Msg != nil && rec.Msg.Id != 777 {
		t.Fatalf("id %d, want the client's", rec.Msg.Id)
	}
	return rec.Msg, rc, err
}

func newForward(t *testing.T, mod func(*Config), to ...string) *Forward {
	cfg := DefaultConfig()
	cfg.From = "."
	cfg.To = to
	if mod != nil {
		mod(&cfg)
	}
	f := New(cfg, NewMetrics(nil))
	t.Cleanup(f.Close)
	return f
}

func TestForwardAsIs(t *testing.T) {
	u := startUpstream(t, answerA("10.0.0.1"))
	f := newForward(t, nil, u.addr)
	m, rc, err := ask(t, f, "Www.Example.org.", false)
	if err != nil || rc != 0 {
		t.Fatal(rc, err)
	}
	if !m.RecursionAvailable || m.Question[0].Name != "Www.Example.org." || m.Answer[0].String() != "Www.Example.org.\t120\tIN\tA\t10.0.0.1" {
		t.Fatalf("reply changed: %v", m)
	}
	if u.udp.Load() != 1 {
		t.Fatalf("udp queries %d", u.udp.Load())
	}
	ask(t, f, "a.", true)
	if u.tcp.Load() != 1 {
		t.Fatalf("client over TCP must go over TCP: %d", u.tcp.Load())
	}
}

func TestTruncation(t *testing.T) {
	u := startUpstream(t, bigAnswer)
	f := newForward(t, nil, u.addr)
	m, _, _ := ask(t, f, "big.example.org.", false)
	if !m.Truncated {
		t.Fatalf("TC not passed through: %d answers", len(m.Answer))
	}
	f2 := newForward(t, func(c *Config) { c.PreferUDP = true }, u.addr)
	m, _, _ = ask(t, f2, "big.example.org.", true)
	if m.Truncated || len(m.Answer) != 40 || u.tcp.Load() != 1 {
		t.Fatalf("prefer_udp: tc=%v answers=%d tcp=%d", m.Truncated, len(m.Answer), u.tcp.Load())
	}
	f3 := newForward(t, func(c *Config) { c.ForceTCP = true }, u.addr)
	udpBefore := u.udp.Load()
	m, _, _ = ask(t, f3, "big.example.org.", false)
	if m.Truncated || len(m.Answer) != 40 || u.udp.Load() != udpBefore {
		t.Fatalf("force_tcp: tc=%v answers=%d", m.Truncated, len(m.Answer))
	}
}

func TestFailoverAndHealth(t *testing.T) {
	good := startUpstream(t, answerA("10.0.0.2"))
	// A dead upstream: a UDP port nobody reads (bound, then closed).
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	dead := pc.LocalAddr().String()
	pc.Close()
	f := newForward(t, func(c *Config) {
		c.Policy = Sequential
		c.ReadTimeout = 200 * time.Millisecond
		c.HCInterval = 20 * time.Millisecond
		c.MaxFails = 1
	}, dead, good.addr)
	m, rc, err := ask(t, f, "x.", false)
	if err != nil || rc != 0 || m.Answer[0].(*dns.A).A.String() != "10.0.0.2" {
		t.Fatalf("no failover: %v %d %v", m, rc, err)
	}
	// The probe marks the dead one down after more than max_fails failures.
	deadline := time.Now().Add(5 * time.Second)
	for !f.proxies[0].Down(1) {
		if time.Now().After(deadline) {
			t.Fatalf("dead upstream never down, fails=%d", f.proxies[0].fails.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := good.udp.Load()
	start := time.Now()
	ask(t, f, "y.", false)
	if time.Since(start) > 150*time.Millisecond || good.udp.Load() != before+1 {
		t.Fatalf("down upstream still tried first (%v)", time.Since(start))
	}
}

func TestAllDeadServfail(t *testing.T) {
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	dead := pc.LocalAddr().String()
	pc.Close()
	f := newForward(t, func(c *Config) { c.ReadTimeout = 50 * time.Millisecond }, dead)
	_, rc, err := ask(t, f, "x.", false)
	if rc != dns.RcodeServerFailure || err == nil {
		t.Fatalf("rc %d err %v", rc, err)
	}
}

func TestPoliciesExceptAndLimits(t *testing.T) {
	a := startUpstream(t, answerA("10.0.0.1"))
	b := startUpstream(t, answerA("10.0.0.2"))
	f := newForward(t, func(c *Config) { c.Policy = RoundRobin }, a.addr, b.addr)
	for range 4 {
		ask(t, f, "rr.", false)
	}
	if a.udp.Load() != 2 || b.udp.Load() != 2 {
		t.Fatalf("round_robin: %d %d", a.udp.Load(), b.udp.Load())
	}
	f = newForward(t, func(c *Config) {
		c.From = "example.org."
		c.Except = []string{"private.example.org."}
	}, a.addr)
	if _, rc, err := ask(t, f, "x.private.example.org.", false); rc != dns.RcodeServerFailure || err == nil {
		t.Fatalf("except must pass on (to nothing): %d %v", rc, err)
	}
	if _, rc, err := ask(t, f, "other.", false); rc != dns.RcodeServerFailure || err == nil {
		t.Fatalf("outside FROM must pass on: %d %v", rc, err)
	}
	if _, rc, _ := ask(t, f, "www.example.org.", false); rc != 0 {
		t.Fatalf("in FROM: %d", rc)
	}

	release := make(chan struct{})
	slow := startUpstream(t, func(w dns.ResponseWriter, r *dns.Msg) { <-release; answerA("10.0.0.3")(w, r) })
	f = newForward(t, func(c *Config) { c.MaxConcurrent = 1 }, slow.addr)
	done := make(chan struct{})
	go func() { ask(t, f, "slow.", false); close(done) }()
	for f.concurrent.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	if _, rc, err := ask(t, f, "slow.", false); rc != dns.RcodeRefused || err != ErrLimitExceeded {
		t.Fatalf("max_concurrent: %d %v", rc, err)
	}
	close(release)
	<-done
}
