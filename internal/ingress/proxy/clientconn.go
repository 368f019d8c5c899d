package proxy

import (
	"context"
	"net"
	"sync/atomic"
	"time"
)

// clientConn is a plain-HTTP client connection, as the HTTP listener
// hands it to net/http's server. It sees the server's own reads and
// writes, so it learns that the client went away as the server does (a
// read or write error), and aborts the upstream exchange it is watching
// then, without the context.AfterFunc on the request's context that an
// exchange otherwise needs (several allocations and two locks of the
// request's context per request).
//
// It is only used for HTTP/1.x requests on the plain listener: there the
// server cancels a request's context exactly when one of the
// connection's reads fails (except the one it aborts itself, with a read
// deadline in the past, to end its background read) or one of its writes
// does. HTTP/2 (a stream reset cancels without a connection error) and
// TLS (close_notify ends reading without an error from the connection)
// keep the AfterFunc.
type clientConn struct {
	*net.TCPConn
	// aborting: the server set a read deadline in the past, so a timeout
	// of the read in progress is its own doing.
	aborting atomic.Bool
	gone     atomic.Bool
	// up is the upstream connection of the exchange in progress, if any.
	up atomic.Pointer[h1Conn]
}

type clientConnKey struct{}

// clientOf is r's clientConn, or nil.
func clientOf(ctx context.Context) *clientConn {
	cc, _ := ctx.Value(clientConnKey{}).(*clientConn)
	return cc
}

func (c *clientConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	if err != nil {
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() || !c.aborting.Load() {
			c.fail()
		}
	}
	return n, err
}

func (c *clientConn) Write(p []byte) (int, error) {
	n, err := c.TCPConn.Write(p)
	if err != nil {
		c.fail()
	}
	return n, err
}

func (c *clientConn) SetReadDeadline(t time.Time) error {
	c.aborting.Store(!t.IsZero() && t.Before(aLongTimeAgo.Add(time.Hour)))
	return c.TCPConn.SetReadDeadline(t)
}

func (c *clientConn) SetDeadline(t time.Time) error {
	c.aborting.Store(!t.IsZero() && t.Before(aLongTimeAgo.Add(time.Hour)))
	return c.TCPConn.SetDeadline(t)
}

// fail marks the client gone and aborts the exchange it watches.
func (c *clientConn) fail() {
	c.gone.Store(true)
	if u := c.up.Swap(nil); u != nil {
		u.abort()
	}
}

// watch makes the client's going away abort u's exchange (at once if it
// is gone already). It watches one exchange at a time: false when it
// watches another already (the error backend's exchange while the
// upstream's answer is open).
func (c *clientConn) watch(u *h1Conn) bool {
	if !c.up.CompareAndSwap(nil, u) {
		return false
	}
	if c.gone.Load() {
		if u := c.up.Swap(nil); u != nil {
			u.abort()
		}
	}
	return true
}

// unwatch ends the watch of u: false when the abort was already done
// (as an AfterFunc's stop).
func (c *clientConn) unwatch(u *h1Conn) bool { return c.up.CompareAndSwap(u, nil) }

// clientListener wraps the plain listener's TCP connections.
type clientListener struct{ net.Listener }

func (l clientListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok && err == nil {
		return &clientConn{TCPConn: tc}, nil
	}
	return c, err
}

// clientContext is the plain server's ConnContext: the clientConn for
// the handler.
func clientContext(ctx context.Context, c net.Conn) context.Context {
	if cc, ok := c.(*clientConn); ok {
		return context.WithValue(ctx, clientConnKey{}, cc)
	}
	return ctx
}
