package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// blackhole is a 127.0.0.1 port whose accept queue is full: connecting to
// it hangs (the SYN is dropped) until the dialer's timeout.
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(sa.(*syscall.SockaddrInet4).Port)
	// Fill the queue; these connections are never accepted.
	for i := 0; i < 4; i++ {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { c.Close() })
	}
	if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		c.Close()
		t.Skip("cannot make a connect that hangs on this kernel")
	}
	return addr
}

func TestConnectTimeout(t *testing.T) {
	e := newEnv(t)
	hole := blackhole(t)
	a := newBackend(t, "a", nil)
	w := &world{}
	w.service("hang", hole)
	w.service("mixed", hole, a.addr)
	w.ingress("hang", path("hang.com", "Prefix / hang"), ann("proxy-connect-timeout", "1"))
	w.ingress("mixed", path("mixed.com", "Prefix / mixed"), ann("proxy-connect-timeout", "1"))
	e.load(w)
	start := time.Now()
	if r := e.do("GET", "hang.com", "/"); r.code != 504 {
		t.Errorf("connect timeout: %d, want 504", r.code)
	}
	if d := time.Since(start); d < 900*time.Millisecond || d > 3*time.Second {
		t.Errorf("504 after %v, want about 1 s", d)
	}
	// The next endpoint is tried after a connect timeout.
	for i := 0; i < 4; i++ {
		if r := e.do("GET", "mixed.com", "/"); r.code != 200 {
			t.Errorf("request %d: %d", i, r.code)
		}
	}
}

func TestServeShutdown(t *testing.T) {
	slow := newBackend(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "finished")
	}))
	ws := wsBackend(t, "ws")
	p := New(Options{Logger: slog.New(slog.DiscardHandler)})
	w := &world{}
	w.service("slow", slow.addr)
	w.service("ws", ws.addr)
	w.ingress("slow", path("slow.com", "Prefix / slow"))
	w.ingress("ws", path("ws.com", "Prefix / ws"))
	tab, _ := buildTable(w)
	p.Swap(tab)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln, nil) }()
	wsc := dialWS(t, ln.Addr().String(), "ws.com")

	got := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/", nil)
		req.Host = "slow.com"
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		got <- string(b)
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	if s := <-got; s != "finished" {
		t.Errorf("in-flight request during shutdown: %q", s)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
		t.Errorf("still accepting after Serve returned")
	}
	wsc.c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := wsc.br.ReadByte(); err == nil {
		t.Errorf("upgraded connection still open after Serve returned")
	}
}

func TestDefaultCertOption(t *testing.T) {
	cp, kp := certPEM(t, "given default", "x")
	cert, err := tls.X509KeyPair(cp, kp)
	if err != nil {
		t.Fatal(err)
	}
	p := New(Options{DefaultCert: &cert})
	got, err := p.TLSConfig().GetCertificate(&tls.ClientHelloInfo{ServerName: "anything"})
	if err != nil || got != &cert {
		t.Errorf("default certificate not the given one")
	}
	p2 := New(Options{})
	got, _ = p2.TLSConfig().GetCertificate(&tls.ClientHelloInfo{})
	if got == nil || got.Leaf.Subject.CommonName != DefaultCertCN {
		t.Errorf("generated default certificate: %v", got)
	}
	if protos := p.TLSConfig().NextProtos; len(protos) != 2 || protos[0] != "h2" || protos[1] != "http/1.1" {
		t.Errorf("ALPN %v", protos)
	}
}
