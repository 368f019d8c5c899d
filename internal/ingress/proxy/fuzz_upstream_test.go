package proxy

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzUpstreamResponse: whatever bytes an upstream answers with (a broken
// status line, bad framing, a lying Content-Length, a stray 1xx, garbage
// after the body), the proxy answers its client with a status, never
// panics and never hangs; the next request on the same pool still works.
func FuzzUpstreamResponse(f *testing.F) {
	var answer atomic.Value // []byte the raw upstream writes after the request head
	answer.Store([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				buf := make([]byte, 4096)
				c.SetReadDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Read(buf); err != nil {
					return
				}
				c.Write(answer.Load().([]byte))
			}(c)
		}
	}()
	w := &world{}
	w.service("raw", ln.Addr().String())
	w.ingress("raw", path("raw.com", "Prefix / raw"), ann("proxy-read-timeout", "1"))
	p := New(Options{Logger: slog.New(slog.DiscardHandler)})
	tab, _ := buildTable(w)
	p.Swap(tab)
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\nraw",
		"HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\nbody until close",
		"garbage\r\n\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		answer.Store(raw)
		req := httptest.NewRequest("GET", "http://raw.com/x", nil)
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer func() {
				// A body cut short after the head was sent: the handler
				// aborts the client's connection, as net/http's server
				// expects (it recovers exactly this value).
				if v := recover(); v != nil && v != http.ErrAbortHandler {
					panic(v)
				}
			}()
			p.ServeHTTP(rec, req)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("no answer within 10s for upstream bytes %q", raw)
		}
		if rec.Code < 100 || rec.Code > 999 {
			t.Fatalf("status %d for upstream bytes %q", rec.Code, raw)
		}
		// The pool is not poisoned: a good answer next is passed on.
		answer.Store([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
		rec = httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest("GET", "http://raw.com/y", nil))
		if body, _ := io.ReadAll(rec.Result().Body); rec.Code != http.StatusOK || string(body) != "ok" {
			t.Fatalf("after upstream bytes %q the next request got %d %q", raw, rec.Code, body)
		}
	})
}
