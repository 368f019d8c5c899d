// Package server runs the DNS servers of a loaded Corefile: one UDP and
// one TCP listener per address, each routing a query to the server block
// with the longest zone that contains the question's name, and REFUSED
// when none does.
//
// Reloads keep the listeners: a new Corefile is loaded and started beside
// the old one, then each address's routing table is swapped with one
// atomic store, so no query is dropped and in-flight queries finish on
// the old chains. A Corefile that fails to load or start leaves the old
// one serving.
//
// Every reply goes through a writer that fits it to the client: the OPT
// record with the client's buffer size, name compression, and truncation
// with TC set when it does not fit in UDP.
//
// TCP is miekg/dns's Server; UDP is this package's own loop (udp.go),
// which decodes and replies as miekg/dns does but serves queries on a pool
// of long-lived workers.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	pdns "github.com/podnet/podnet/internal/dns"
)

// route is one address's routing table: zone to server block.
type route struct {
	zones map[string]*pdns.Config
	// ctxs holds each zone's query context (ServerInfo, debug), made once
	// per table rather than per query.
	ctxs map[string]context.Context
	// info caches the ServerInfo server label.
	server string
	// chaos is set when a block on this address has the chaos plugin:
	// only then are queries of a class other than IN served.
	chaos bool
}

// Server serves one address over UDP and TCP.
type Server struct {
	addr  string // as configured, host:port
	log   *slog.Logger
	table atomic.Pointer[route]

	pc  net.PacketConn
	ln  net.Listener
	udp *udpServer
	tcp *dns.Server
}

// Addr is the bound UDP address (the TCP one has the same port).
func (s *Server) Addr() string { return s.pc.LocalAddr().String() }

// listen binds addr over UDP and TCP. With port 0 both get the same
// kernel-chosen port.
func listen(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	for try := 0; ; try++ {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, err
		}
		a := addr
		if port == "0" {
			a = net.JoinHostPort(host, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
		}
		pc, err := net.ListenPacket("udp", a)
		if err != nil {
			ln.Close()
			if port == "0" && try < 10 {
				continue
			}
			return nil, nil, err
		}
		return pc, ln, nil
	}
}

func newServer(addr string, log *slog.Logger) (*Server, error) {
	pc, ln, err := listen(addr)
	if err != nil {
		return nil, err
	}
	s := &Server{addr: addr, log: log.With("addr", addr), pc: pc, ln: ln}
	if s.udp, err = newUDPServer(pc.(*net.UDPConn), s); err != nil {
		pc.Close()
		ln.Close()
		return nil, err
	}
	s.tcp = &dns.Server{Listener: ln, Handler: s, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }}
	return s, nil
}

func (s *Server) start() {
	go func() {
		if err := s.udp.serve(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.log.Error("dns server stopped", "err", err)
		}
	}()
	go func() {
		if err := s.tcp.ActivateAndServe(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.log.Error("dns server stopped", "err", err)
		}
	}()
}

func (s *Server) shutdown(ctx context.Context) {
	if err := s.udp.shutdown(ctx); err != nil {
		s.pc.Close()
	}
	if err := s.tcp.ShutdownContext(ctx); err != nil {
		// Not started yet or already stopped: close the socket.
		s.ln.Close()
	}
}

// ServeDNS routes a query; it is the miekg/dns handler of both
// listeners and never panics.
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	s.serve(context.Background(), w, r)
}

func (s *Server) serve(ctx context.Context, w dns.ResponseWriter, r *dns.Msg) {
	t := s.table.Load()
	var cfg *pdns.Config
	defer func() {
		if cfg != nil && cfg.Debug {
			return
		}
		if rec := recover(); rec != nil {
			pdns.PanicsTotal.Inc()
			s.log.Error("recovered from panic while serving a query", "panic", fmt.Sprint(rec), "stack", string(debug.Stack()))
			reply(w, r, dns.RcodeServerFailure)
		}
	}()
	if r == nil || len(r.Question) != 1 {
		reply(w, r, dns.RcodeFormatError)
		return
	}
	if o := r.IsEdns0(); o != nil && o.Version() != 0 {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeBadVers)
		m.SetEdns0(dns.DefaultMsgSize, o.Do())
		m.IsEdns0().SetExtendedRcode(dns.RcodeBadVers)
		w.WriteMsg(m)
		return
	}
	if t == nil {
		reply(w, r, dns.RcodeRefused)
		return
	}
	sw := &scrubWriter{ResponseWriter: w}
	sw.req = pdns.Request{W: w, Req: r}
	if r.Question[0].Qclass != dns.ClassINET && !t.chaos {
		// CoreDNS refuses other classes unless chaos is configured.
		reply(sw, r, dns.RcodeRefused)
		return
	}
	cfg, zone := t.match(strings.ToLower(r.Question[0].Name), r.Question[0].Qtype)
	if cfg == nil || cfg.Chain() == nil {
		// No zone, or a zone whose block has no plugins: REFUSED, as
		// CoreDNS answers.
		reply(sw, r, dns.RcodeRefused)
		return
	}
	if c, ok := t.ctxs[zone]; ok && ctx == context.Background() {
		ctx = c
	} else {
		ctx = queryContext(ctx, t.server, zone, cfg)
	}
	rcode, _ := cfg.Chain().ServeDNS(ctx, sw, r)
	if !pdns.ClientWrite(rcode) {
		reply(sw, r, rcode)
	}
}

// queryContext is parent with what the chain of cfg learns of the query's
// server block.
func queryContext(parent context.Context, server, zone string, cfg *pdns.Config) context.Context {
	ctx := pdns.WithServerInfo(parent, pdns.ServerInfo{Server: server, Zone: zone, Config: cfg})
	if cfg.Debug {
		ctx = pdns.WithDebug(ctx)
	}
	return ctx
}

// match finds the block of name (lower case): the longest zone that
// contains it. A DS record lives in the parent zone, so for DS the search
// goes on to a parent block when there is one, as CoreDNS does. The root
// zone is the last resort.
func (t *route) match(name string, qtype uint16) (*pdns.Config, string) {
	var ds *pdns.Config
	dsZone := ""
	for off, end := 0, false; !end; off, end = dns.NextLabel(name, off) {
		c, ok := t.zones[name[off:]]
		if !ok {
			continue
		}
		if qtype != dns.TypeDS {
			return c, name[off:]
		}
		if ds != nil {
			return c, name[off:]
		}
		ds, dsZone = c, name[off:]
	}
	if ds != nil {
		return ds, dsZone
	}
	if c, ok := t.zones["."]; ok {
		return c, "."
	}
	return nil, ""
}

// reply writes an empty reply to r with rcode.
func reply(w dns.ResponseWriter, r *dns.Msg, rcode int) {
	if r == nil {
		return
	}
	m := new(dns.Msg)
	m.SetRcode(r, rcode)
	if rcode == dns.RcodeFormatError && len(m.Question) > 1 {
		m.Question = nil
	}
	w.WriteMsg(m)
}

// scrubWriter fits every reply to the client before writing it.
type scrubWriter struct {
	dns.ResponseWriter
	req pdns.Request
}

func (w *scrubWriter) WriteMsg(m *dns.Msg) error {
	return w.ResponseWriter.WriteMsg(w.req.Scrub(m))
}

// Options tune Start.
type Options struct {
	// Port is the default port, -dns.port ("53" when empty).
	Port string
	// Log receives the server's logs; slog.Default() when nil.
	Log *slog.Logger
	// Load are the loader's options (Port is overridden by Port above,
	// Log by Log).
	Load pdns.LoadOptions
}

// Runner owns the listeners and the current Instance.
type Runner struct {
	mu      sync.Mutex
	o       Options
	log     *slog.Logger
	inst    *pdns.Instance
	servers map[string]*Server
	stopped bool
}

// Start loads in and serves it.
func Start(in pdns.Input, o Options) (*Runner, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Port == "" {
		o.Port = "53"
	}
	o.Load.Port = o.Port
	o.Load.Log = o.Log
	r := &Runner{o: o, log: o.Log, servers: map[string]*Server{}}
	if err := r.Reload(in); err != nil {
		return nil, err
	}
	return r, nil
}

// Instance is the Corefile being served.
func (r *Runner) Instance() *pdns.Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.inst
}

// Addrs maps each configured address (host:port) to the bound one.
func (r *Runner) Addrs() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]string{}
	for a, s := range r.servers {
		out[a] = s.Addr()
	}
	return out
}

// tables builds each address's routing table.
func tables(inst *pdns.Instance) map[string]*route {
	out := map[string]*route{}
	for _, cfg := range inst.Configs {
		hosts := cfg.ListenHosts
		if len(hosts) == 0 {
			hosts = []string{""}
		}
		for _, k := range cfg.Keys {
			for _, h := range hosts {
				addr := net.JoinHostPort(h, k.Port)
				t, ok := out[addr]
				if !ok {
					t = &route{zones: map[string]*pdns.Config{}, ctxs: map[string]context.Context{}, server: "dns://" + addr}
					out[addr] = t
				}
				t.zones[k.Zone] = cfg
				t.ctxs[k.Zone] = queryContext(context.Background(), t.server, k.Zone, cfg)
				t.chaos = t.chaos || cfg.Handler("chaos") != nil
			}
		}
	}
	return out
}

// Reload replaces the served Corefile with in. On any error the old one
// keeps serving, untouched, and the error says why.
func (r *Runner) Reload(in pdns.Input) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return errors.New("dns: server stopped")
	}
	inst, err := pdns.Load(in, r.o.Load)
	if err != nil {
		return err
	}
	inst.Restart = r.Reload
	tabs := tables(inst)
	fresh := map[string]*Server{}
	closeFresh := func() {
		for _, s := range fresh {
			s.pc.Close()
			s.ln.Close()
		}
	}
	for addr := range tabs {
		if _, ok := r.servers[addr]; ok {
			continue
		}
		s, err := newServer(addr, r.log)
		if err != nil {
			closeFresh()
			return err
		}
		fresh[addr] = s
	}
	for _, cfg := range inst.Configs {
		var addrs []string
		hosts := cfg.ListenHosts
		if len(hosts) == 0 {
			hosts = []string{""}
		}
		for _, k := range cfg.Keys {
			for _, h := range hosts {
				a := net.JoinHostPort(h, k.Port)
				if s, ok := fresh[a]; ok {
					addrs = append(addrs, s.Addr())
				} else if s, ok := r.servers[a]; ok {
					addrs = append(addrs, s.Addr())
				}
			}
		}
		cfg.SetListenAddrs(addrs)
	}
	old := r.inst
	if old != nil {
		if err := old.RestartHooks(); err != nil {
			r.log.Warn("dns: OnRestart hooks", "err", err)
		}
	}
	if err := inst.Startup(); err != nil {
		if e := inst.Shutdown(); e != nil {
			r.log.Warn("dns: shutting down the failed configuration", "err", e)
		}
		closeFresh()
		if old != nil {
			if e := old.RestartFailed(); e != nil {
				r.log.Warn("dns: OnRestartFailed hooks", "err", e)
			}
		}
		return err
	}
	for addr, s := range fresh {
		s.table.Store(tabs[addr])
		r.servers[addr] = s
		s.start()
	}
	for addr, s := range r.servers {
		if t, ok := tabs[addr]; ok {
			s.table.Store(t)
			continue
		}
		delete(r.servers, addr)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s.shutdown(ctx)
		}()
	}
	r.inst = inst
	if old != nil {
		if err := old.Shutdown(); err != nil {
			r.log.Warn("dns: shutting down the previous configuration", "err", err)
		}
	}
	return nil
}

// Stop runs the final shutdown hooks (health's lameduck keeps answering
// during them), then closes every listener.
func (r *Runner) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return nil
	}
	r.stopped = true
	var err error
	if r.inst != nil {
		err = r.inst.FinalShutdown()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range r.servers {
		wg.Add(1)
		go func() { defer wg.Done(); s.shutdown(ctx) }()
	}
	wg.Wait()
	r.servers = map[string]*Server{}
	return err
}
