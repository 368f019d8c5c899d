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

// transport returns the shared transport for k; p.mu is held.
func (p *Proxy) transport(k transportKey) *http.Transport {
	if t := p.transports[k]; t != nil {
		return t
	}
	connect := k.connect
	if connect <= 0 {
		connect = 5 * time.Second
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
		// ingress-nginx does not verify upstream certificates by default
		// (proxy-ssl-verify off), nor send SNI.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}
	var protos http.Protocols
	switch k.proto {
	case "GRPC":
		protos.SetUnencryptedHTTP2(true) // h2c with prior knowledge
	case "GRPCS":
		protos.SetHTTP2(true)
	default:
		protos.SetHTTP1(true) // as nginx: HTTP/1.1 to upstreams
	}
	t.Protocols = &protos
	p.transports[k] = t
	return t
}
