package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"time"
)

// transportKey names an upstream transport: one per protocol and connect
// timeout, shared by every route and every table, so keep-alive pools
// survive reloads.
type transportKey struct {
	proto   string // HTTP, HTTPS, GRPC, GRPCS
	connect time.Duration
}

// Upstream pool sizes: nginx keeps up to 320 idle connections per worker
// (ingress-nginx's upstream-keepalive-connections); a Go proxy serving
// many concurrent clients from a few goroutines' worth of CPU wants at
// least as many per endpoint, or it churns connections under load.
const (
	maxIdlePerHost = 1024
	idleTimeout    = 60 * time.Second
)

// dialError marks a failure to establish an upstream connection: nothing
// was sent, so the request may go to another endpoint whatever its method.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func isDialError(err error) bool {
	var de *dialError
	if errors.As(err, &de) {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// upstreamClient sends a request to one endpoint address and reads the
// answer's head.
type upstreamClient interface {
	roundTrip(x *exchange, out *http.Request, addr string) (*http.Response, error)
	// forget drops idle connections to addresses no longer live.
	forget()
	// usesContext: timeouts and client cancellation go through the
	// request's context (net/http's Transport), not connection deadlines.
	usesContext() bool
}

// h2Client is net/http's Transport, for the HTTP/2 upstreams (gRPC):
// h2c with prior knowledge, or h2 over TLS.
type h2Client struct{ t *http.Transport }

func (c *h2Client) roundTrip(x *exchange, out *http.Request, addr string) (*http.Response, error) {
	out.URL.Host = addr
	return c.t.RoundTrip(out)
}

func (c *h2Client) forget()           {}
func (c *h2Client) usesContext() bool { return true }
func (c *h1Client) usesContext() bool { return false }

// tlsUpstream is the TLS configuration towards upstreams: ingress-nginx
// does not verify upstream certificates by default (proxy-ssl-verify off),
// nor send SNI.
func tlsUpstream() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true}
}

// transport returns the shared client for k; p.mu is held.
func (p *Proxy) transport(k transportKey) upstreamClient {
	if t := p.transports[k]; t != nil {
		return t
	}
	connect := k.connect
	if connect <= 0 {
		connect = 5 * time.Second
	}
	switch k.proto {
	case "GRPC", "GRPCS":
	case "HTTPS":
		c := newH1Client(connect, tlsUpstream())
		c.live = &p.live
		p.transports[k] = c
		return c
	default:
		c := newH1Client(connect, nil)
		c.live = &p.live
		p.transports[k] = c
		return c
	}
	d := &net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy: nil, // never the environment's proxy
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		},
		MaxIdleConnsPerHost:   maxIdlePerHost,
		IdleConnTimeout:       idleTimeout,
		DisableCompression:    true, // pass Accept-Encoding and bodies through untouched
		ExpectContinueTimeout: time.Second,
		ReadBufferSize:        16 << 10,
		WriteBufferSize:       16 << 10,
		TLSClientConfig:       tlsUpstream(),
	}
	var protos http.Protocols
	if k.proto == "GRPC" {
		protos.SetUnencryptedHTTP2(true) // h2c with prior knowledge
	} else {
		protos.SetHTTP2(true)
	}
	t.Protocols = &protos
	c := &h2Client{t}
	p.transports[k] = c
	return c
}
