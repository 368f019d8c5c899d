// Package dns is the plugin interface of `podnet dns`, a DNS server
// configured by a Corefile as CoreDNS is.
//
// A plugin is a Handler (ServeDNS + Name) that either answers a query or
// passes it to the next Handler of its server block's chain. Plugins
// register a SetupFunc under their directive name (Register); the setup
// reads its directive's tokens through a Controller and adds its Handler
// with Controller.AddPlugin. The order in which handlers run is the list
// Directives (this package's plugin.cfg), not the order of the Corefile.
//
// Plugins live in internal/dns/plugin/<name>/ (setup.go, a handler file,
// README.md, setup_test.go); internal/dns/plugin/all imports them all. The
// server that routes queries to chains is internal/dns/server, the
// Corefile parser internal/dns/corefile.
package dns

import (
	"context"
	"errors"
	"fmt"

	"github.com/miekg/dns"
)

// Handler is one plugin in a server block's chain. ServeDNS returns the
// response code and an error. When the code is one ClientWrite says was
// not written (SERVFAIL, REFUSED, FORMERR, NOTIMP), the server writes the
// reply; otherwise the handler has written it.
type Handler interface {
	ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error)
	Name() string
}

// Plugin wraps the next Handler of a chain into a new one.
type Plugin func(next Handler) Handler

// HandlerFunc adapts a function to a Handler named "handlerfunc".
type HandlerFunc func(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error)

// ServeDNS calls f.
func (f HandlerFunc) ServeDNS(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	return f(ctx, w, r)
}

// Name implements Handler.
func (f HandlerFunc) Name() string { return "handlerfunc" }

// ErrNoNext is returned by NextOrFailure when a plugin has no next handler.
var ErrNoNext = errors.New("no next plugin found")

// NextOrFailure calls next, or fails with SERVFAIL when the chain ends
// here: plugin name is the caller's, for the error.
func NextOrFailure(name string, next Handler, ctx context.Context, w dns.ResponseWriter, r *dns.Msg) (int, error) {
	if next == nil {
		return dns.RcodeServerFailure, Error(name, ErrNoNext)
	}
	if d, ok := ctx.Value(debugKey{}).(bool); ok && d {
		// no per-plugin tracing yet; the key is reserved for it
		_ = d
	}
	return next.ServeDNS(ctx, w, r)
}

// ClientWrite reports whether a handler returning rcode has written the
// reply itself. For SERVFAIL, REFUSED, FORMERR and NOTIMP it has not: the
// server writes a reply with that code.
func ClientWrite(rcode int) bool {
	switch rcode {
	case dns.RcodeServerFailure, dns.RcodeRefused, dns.RcodeFormatError, dns.RcodeNotImplemented:
		return false
	}
	return true
}

// PluginError is an error of one plugin, rendered "plugin/NAME: err" as
// CoreDNS does.
type PluginError struct {
	Plugin string
	Err    error
}

func (e *PluginError) Error() string { return "plugin/" + e.Plugin + ": " + e.Err.Error() }
func (e *PluginError) Unwrap() error { return e.Err }

// Error wraps err with the plugin's name; nil stays nil, and an error
// already naming the plugin is not wrapped twice.
func Error(name string, err error) error {
	if err == nil {
		return nil
	}
	var pe *PluginError
	if errors.As(err, &pe) && pe.Plugin == name {
		return err
	}
	return &PluginError{Plugin: name, Err: err}
}

// Errorf is Error with a formatted message.
func Errorf(name, format string, args ...any) error {
	return Error(name, fmt.Errorf(format, args...))
}

type debugKey struct{}

// WithDebug marks ctx as served by a server block with the debug plugin.
func WithDebug(ctx context.Context) context.Context { return context.WithValue(ctx, debugKey{}, true) }

// IsDebug reports whether the server block of this query runs in debug mode.
func IsDebug(ctx context.Context) bool { d, _ := ctx.Value(debugKey{}).(bool); return d }

// ServerInfo describes where a query is being served.
type ServerInfo struct {
	// Server is the listening address in CoreDNS's metric form,
	// "dns://127.0.0.1:53" or "dns://:53".
	Server string
	// Zone is the server block zone that matched the query.
	Zone string
	// Config is the matched server block.
	Config *Config
}

type serverInfoKey struct{}

// WithServerInfo attaches si to ctx; the server does it for every query.
func WithServerInfo(ctx context.Context, si ServerInfo) context.Context {
	return context.WithValue(ctx, serverInfoKey{}, si)
}

// ServerInfoFrom returns the ServerInfo of ctx.
func ServerInfoFrom(ctx context.Context) ServerInfo {
	si, _ := ctx.Value(serverInfoKey{}).(ServerInfo)
	return si
}
