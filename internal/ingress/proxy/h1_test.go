package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// A backend closing idle keep-alive connections sooner than the proxy:
// the proxy must not lose requests on connections closed under it.
func TestUpstreamClosesIdle(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewUnstartedServer(echoHandler("short"))
	srv.Config.IdleTimeout = 100 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	w := &world{}
	w.service("s", srv.Listener.Addr().String())
	w.ingress("s", path("foo.com", "Prefix / s"))
	e.load(w)
	for i, pause := range []time.Duration{0, 150, 50, 300, 120, 0, 400} {
		time.Sleep(pause * time.Millisecond)
		if r := e.do("GET", "foo.com", "/"); r.code != 200 {
			t.Fatalf("GET %d after %v: %d", i, pause, r.code)
		}
		if r := e.doWith(e.client, e.httpURL, "POST", "foo.com", "/", strings.NewReader("payload")); r.code != 200 || r.seen(t).Body != "payload" {
			t.Fatalf("POST %d after %v: %d", i, pause, r.code)
		}
	}
}

// rawBackend answers each connection with canned bytes after reading the
// request head (and a body of Content-Length).
func rawBackend(t *testing.T, answer func(req *http.Request) string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					a := answer(req)
					io.WriteString(c, a)
					if strings.Contains(a, "Connection: close") || strings.HasPrefix(a, "HTTP/1.0") {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestUpstreamFraming(t *testing.T) {
	e := newEnv(t)
	addr := rawBackend(t, func(req *http.Request) string {
		switch req.URL.Path {
		case "/close-delimited":
			return "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
		case "/chunked":
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n"
		case "/close":
			return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
		case "/204":
			return "HTTP/1.1 204 No Content\r\n\r\n"
		case "/continue":
			return "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"
		}
		return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.Method), req.Method)
	})
	w := &world{}
	w.service("raw", addr)
	w.ingress("raw", path("raw.com", "Prefix / raw"))
	e.load(w)
	for i := 0; i < 2; i++ { // twice: the pooled connections must still be sane
		if r := e.do("GET", "raw.com", "/close-delimited"); r.code != 200 || r.body != "until the end" {
			t.Errorf("close-delimited: %d %q", r.code, r.body)
		}
		req, _ := http.NewRequest("GET", e.httpURL+"/chunked", nil)
		req.Host = "raw.com"
		res, err := e.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if string(b) != "hello world" || res.Trailer.Get("X-Sum") != "42" {
			t.Errorf("chunked: %q trailer %v", b, res.Trailer)
		}
		if r := e.do("GET", "raw.com", "/close"); r.body != "ok" {
			t.Errorf("close: %q", r.body)
		}
		if r := e.do("GET", "raw.com", "/204"); r.code != 204 {
			t.Errorf("204: %d", r.code)
		}
		if r := e.do("HEAD", "raw.com", "/x"); r.code != 200 || r.header.Get("Content-Length") != "4" {
			t.Errorf("HEAD: %d %v", r.code, r.header)
		}
		if r := e.doWith(e.client, e.httpURL, "POST", "raw.com", "/continue", strings.NewReader("data"), "Expect", "100-continue"); r.body != "final" {
			t.Errorf("100-continue: %d %q", r.code, r.body)
		}
		if r := e.do("DELETE", "raw.com", "/x"); r.body != "DELETE" {
			t.Errorf("DELETE: %q", r.body)
		}
	}
}

// A chunked request body (unknown length) reaches the backend whole, with
// its trailers.
func TestChunkedRequest(t *testing.T) {
	e := newEnv(t)
	a := newBackend(t, "a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%d %v %s %s", r.ContentLength, r.TransferEncoding, b, r.Trailer.Get("X-Check"))
	}))
	w := &world{}
	w.service("a", a.addr)
	w.ingress("a", path("foo.com", "Prefix / a"))
	e.load(w)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", e.httpURL+"/", pr)
	req.Host = "foo.com"
	req.Trailer = http.Header{"X-Check": nil}
	go func() {
		io.WriteString(pw, "part one, ")
		time.Sleep(10 * time.Millisecond)
		io.WriteString(pw, "part two")
		req.Trailer.Set("X-Check", "ok")
		pw.Close()
	}()
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if got := string(b); got != "-1 [chunked] part one, part two ok" {
		t.Errorf("backend got %q", got)
	}
}

// A client that goes away while the upstream thinks: the upstream
// connection is closed at once (the backend sees its request end), and
// the slot is not reused.
func TestClientGoneAbortsUpstream(t *testing.T) {
	e := newEnv(t)
	ended := make(chan time.Duration, 1)
	a := newBackend(t, "a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/poll" {
			return
		}
		start := time.Now()
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		ended <- time.Since(start)
	}))
	w := &world{}
	w.service("a", a.addr)
	w.ingress("a", path("foo.com", "Prefix / a"))
	e.load(w)
	c := &http.Client{Timeout: 200 * time.Millisecond}
	req, _ := http.NewRequest("GET", e.httpURL+"/poll", nil)
	req.Host = "foo.com"
	if _, err := c.Do(req); err == nil {
		t.Fatal("long poll answered")
	}
	if d := <-ended; d > 2*time.Second {
		t.Errorf("upstream request lived %v after the client left", d)
	}
	if r := e.do("GET", "foo.com", "/"); r.code != 200 {
		t.Errorf("next request: %d", r.code)
	}
	// The line is written when the handler returns, which may be after
	// the upstream saw its connection closed and the next request went.
	for deadline := time.Now().Add(2 * time.Second); !strings.Contains(e.logs.String(), `"status":499`); {
		if time.Now().After(deadline) {
			t.Errorf("no 499 in the access log: %s", e.logs.String())
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A client pausing in its body longer than the client body timeout: 408.
func TestClientBodyTimeout(t *testing.T) {
	e := newEnv(t)
	e.p.clientBodyTimeout = 300 * time.Millisecond
	a := newBackend(t, "a", nil)
	w := &world{}
	w.service("a", a.addr)
	w.ingress("a", path("foo.com", "Prefix / a"), ann("proxy-send-timeout", "10"))
	e.load(w)
	c, err := net.Dial("tcp", e.httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST / HTTP/1.1\r\nHost: foo.com\r\nContent-Length: 10\r\n\r\nabc")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 408 {
		t.Errorf("status %d, want 408", res.StatusCode)
	}
}

// sendWait: the request's last write with the wait for the answer, and
// its fallbacks to the connection's own Write.
func TestSendWait(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	peers := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			peers <- c
		}
	}()
	cl := newH1Client(time.Second, nil)
	dial := func() (*h1Conn, net.Conn) {
		c, err := cl.dial(ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.close)
		if !c.plain {
			t.Fatal("plain TCP connection not marked plain")
		}
		return c, <-peers
	}

	// All written at once; it returns when the answer is there.
	c, peer := dial()
	go func() {
		b := make([]byte, 5)
		io.ReadFull(peer, b)
		time.Sleep(50 * time.Millisecond)
		peer.Write([]byte("ok:" + string(b)))
	}()
	start := time.Now()
	if n, err := c.sendWait([]byte("hello")); n != 5 || err != nil || !c.waited {
		t.Fatalf("sendWait = %d, %v (waited %v)", n, err, c.waited)
	}
	if d := time.Since(start); d < 40*time.Millisecond {
		t.Errorf("returned after %v, before the answer", d)
	}
	b := make([]byte, 8)
	if n, err := io.ReadFull(c.c, b); err != nil || string(b[:n]) != "ok:hello" {
		t.Errorf("answer %q, %v", b[:n], err)
	}

	// More than the socket takes at once: the rest through Write, and no
	// wait.
	c, peer = dial()
	c.c.(*net.TCPConn).SetWriteBuffer(4 << 10)
	big := make([]byte, 1<<20)
	got := make(chan int64)
	go func() {
		time.Sleep(50 * time.Millisecond)
		n, _ := io.CopyN(io.Discard, peer, int64(len(big)))
		got <- n
	}()
	c.waited = false
	if n, err := c.sendWait(big); n != len(big) || err != nil || c.waited {
		t.Fatalf("big sendWait = %d, %v (waited %v)", n, err, c.waited)
	}
	if n := <-got; n != int64(len(big)) {
		t.Errorf("peer got %d bytes", n)
	}

	// A deadline in the past: the connection's own timeout error.
	c, _ = dial()
	c.c.SetDeadline(aLongTimeAgo)
	c.waited = false
	if n, err := c.sendWait([]byte("x")); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) || c.waited {
		t.Errorf("after the deadline: %d, %v (waited %v)", n, err, c.waited)
	}

	// The peer gone: a write error as net.Conn reports it.
	c, peer = dial()
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close()
	time.Sleep(50 * time.Millisecond)
	c.waited = false
	_, err = c.sendWait([]byte("x"))
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" || c.waited {
		t.Errorf("peer reset: %v (waited %v)", err, c.waited)
	}
}
