// Package dnstest starts `podnet dns` servers from a Corefile string for
// tests, as CoreDNS's test/server.go does, and queries them with the
// miekg/dns client or the real dig. Servers listen on 127.0.0.1 only;
// write keys with port 0 (".:0") to get a free port shared by UDP and TCP.
package dnstest

import (
	"context"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/server"
	"github.com/podnet/podnet/internal/testutil"
)

// Server is a running Corefile.
type Server struct {
	*server.Runner
	// Addr is the first block's 127.0.0.1:port.
	Addr string
}

// Start serves corefile (blocks bound to 127.0.0.1 unless they use bind)
// and stops it at the end of the test. It fails the test on a load error.
func Start(t testing.TB, corefile string) *Server {
	t.Helper()
	s, err := TryStart(t, corefile)
	if err != nil {
		t.Fatalf("start dns server: %v", err)
	}
	return s
}

// Options tune StartWith.
type Options struct {
	// Stdout receives the log plugin's lines.
	Stdout io.Writer
	// File names the Corefile in errors and for the reload plugin
	// ("Corefile" when empty).
	File string
}

// TryStart is Start returning the load error.
func TryStart(t testing.TB, corefile string) (*Server, error) {
	t.Helper()
	return TryStartWith(t, corefile, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, corefile string, o Options) *Server {
	t.Helper()
	s, err := TryStartWith(t, corefile, o)
	if err != nil {
		t.Fatalf("start dns server: %v", err)
	}
	return s
}

// TryStartWith is TryStart with options.
func TryStartWith(t testing.TB, corefile string, o Options) (*Server, error) {
	t.Helper()
	if o.File == "" {
		o.File = "Corefile"
	}
	in := pdns.Input{File: o.File, Contents: []byte(corefile)}
	r, err := server.Start(in, server.Options{Port: "0", Log: testutil.Logger(t), Load: pdns.LoadOptions{DefaultHosts: []string{"127.0.0.1"}, Stdout: o.Stdout}})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { r.Stop() })
	s := &Server{Runner: r}
	inst := r.Instance()
	if len(inst.Configs) > 0 {
		cfg := inst.Configs[0]
		host := "127.0.0.1"
		if len(cfg.ListenHosts) > 0 {
			host = cfg.ListenHosts[0]
		}
		s.Addr = r.Addrs()[net.JoinHostPort(host, cfg.Keys[0].Port)]
	}
	return s, nil
}

// Exchange sends m over net ("udp" or "tcp") to addr.
func Exchange(t testing.TB, netw, addr string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: netw, Timeout: 3 * time.Second, UDPSize: 65535}
	r, _, err := c.ExchangeContext(context.Background(), m, addr)
	if err != nil {
		t.Fatalf("exchange %v with %s over %s: %v", m.Question, addr, netw, err)
	}
	return r
}

// Query asks addr over UDP for name and type.
func Query(t testing.TB, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	return Exchange(t, "udp", addr, m)
}

// Dig runs the real dig against addr with args (e.g. "example.org", "A",
// "+tcp") and returns its output. It skips when dig is missing (fails
// under CI=true).
func Dig(t testing.TB, addr string, args ...string) string {
	t.Helper()
	bin := testutil.LookTool(t, "dig", "dnsutils")
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("dig: bad address %q: %v", addr, err)
	}
	a := append([]string{"@" + host, "-p", port, "+tries=1", "+time=3"}, args...)
	out, err := exec.Command(bin, a...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v\n%s", strings.Join(a, " "), err, out)
	}
	return string(out)
}
