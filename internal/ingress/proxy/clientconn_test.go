package proxy

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// clientConn: marked gone on the read and write errors that end a
// request's context in net/http, not on the server's own abort of its
// background read; the watched exchange is aborted then, or at once
// when the client is gone already.
func TestClientConn(t *testing.T) {
	pair := func() (*clientConn, net.Conn) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		peer, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { peer.Close() })
		c, err := clientListener{ln}.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*clientConn), peer
	}
	upstream := func() *h1Conn {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return &h1Conn{c: a}
	}
	// blocked: a read on u's connection waits (it was not aborted).
	blocked := func(u *h1Conn) bool {
		t := time.AfterFunc(200*time.Millisecond, func() { u.c.Close() })
		defer t.Stop()
		_, err := u.c.Read(make([]byte, 1))
		return !errors.Is(err, os.ErrDeadlineExceeded)
	}

	// The server aborting its background read: not gone.
	cc, peer := pair()
	u := upstream()
	if !cc.watch(u) {
		t.Fatal("watch refused")
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		cc.SetReadDeadline(aLongTimeAgo)
	}()
	if _, err := cc.Read(make([]byte, 1)); err == nil {
		t.Fatal("aborted read returned no error")
	}
	cc.SetReadDeadline(time.Time{})
	if cc.gone.Load() {
		t.Error("gone after the server's own abort")
	}
	if cc.watch(upstream()) {
		t.Error("a second watch accepted while one is on")
	}
	if !cc.unwatch(u) {
		t.Error("unwatch: abort reported, none done")
	}

	// The client closing while an exchange is watched: gone, aborted.
	u = upstream()
	cc.watch(u)
	go func(peer net.Conn) {
		time.Sleep(20 * time.Millisecond)
		peer.Close()
	}(peer)
	if _, err := cc.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after the client closed returned no error")
	}
	if !cc.gone.Load() {
		t.Error("not gone after EOF")
	}
	if blocked(u) {
		t.Error("watched exchange not aborted")
	}
	if cc.unwatch(u) {
		t.Error("unwatch after the abort reported none")
	}
	// Gone already: a new watch aborts at once.
	u = upstream()
	cc.watch(u)
	if blocked(u) {
		t.Error("exchange watched after the client left not aborted")
	}

	// A read deadline of the proxy's own (client body timeout) that
	// passes: gone, as net/http ends the request's context then.
	cc, _ = pair()
	cc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := cc.Read(make([]byte, 1)); err == nil {
		t.Fatal("no timeout")
	}
	if !cc.gone.Load() {
		t.Error("not gone after a read timeout")
	}

	// A write error: gone.
	cc, peer = pair()
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close()
	time.Sleep(20 * time.Millisecond)
	for i := 0; i < 10 && !cc.gone.Load(); i++ {
		cc.Write(make([]byte, 1024))
	}
	if !cc.gone.Load() {
		t.Error("not gone after write errors")
	}
}
