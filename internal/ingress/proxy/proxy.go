// Package proxy is the data plane of podnet's ingress controller: an
// HTTP and HTTPS reverse proxy serving the routing table compiled by
// package route.
//
// The table is held in an atomic pointer; Swap installs a new one, so a
// reload is one pointer store and never touches connections: in-flight
// requests finish on the table they started with, upgraded connections
// (WebSocket) keep running, and upstream keep-alive pools are shared by
// every table. Live state that must outlive a table (endpoint latency and
// in-flight counts, round-robin positions, rate limiter buckets, metric
// series) is keyed by identity (address, backend key, Ingress) and carried
// over by Swap.
//
// A request goes through, in order: route match (or the table's default
// backend, or the built-in 404), redirects (ssl-redirect and
// force-ssl-redirect 308, permanent/temporal-redirect, app-root 302),
// CORS preflight (204), limit-connections and limit-rps (503),
// whitelist-source-range (403), proxy-body-size (413), canary choice,
// endpoint choice (affinity cookie, round robin or ewma), then the
// upstream exchange with a retry on the next endpoint when a connection
// cannot be established (nothing was sent, so any method), and finally
// custom-http-errors. Every request ends with one access log line and the
// ingress-nginx request metrics.
//
// Upstreams: HTTP and HTTPS backends go through h1Client, an HTTP/1.1
// client that runs the exchange on the handler's goroutine with
// connection deadlines and per-endpoint keep-alive pools (net/http's
// Transport spends much of a proxy's CPU on its per-connection goroutines
// and per-request contexts); GRPC and GRPCS backends go through net/http's
// Transport (h2c with prior knowledge, or h2 over TLS). Timeouts follow
// nginx: proxy-connect-timeout bounds the connect (then the next endpoint
// is tried; 504 when none is left), proxy-read-timeout a pause between two
// reads from the upstream, proxy-send-timeout a pause between two writes
// to it (504 before the answer started; after, the client connection is
// cut so a short body is never taken for a whole one).
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podnet/podnet/internal/ingress/annotations"
	"github.com/podnet/podnet/internal/ingress/route"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
)

// Options configure a Proxy.
type Options struct {
	Logger *slog.Logger
	// Registry receives the request metrics; nil means none are exported.
	Registry prometheus.Registerer
	// DefaultCert is served to TLS clients whose server name no Ingress
	// covers; nil means a self-signed one is made by New.
	DefaultCert *tls.Certificate
	// NodeName is the metrics' controller_pod label.
	NodeName string
	// Namespace is the metrics' controller_namespace label.
	Namespace string
}

// Proxy is the reverse proxy. Its zero value is not usable; call New.
type Proxy struct {
	log         *slog.Logger
	defaultCert *tls.Certificate
	metrics     *metrics
	snap        atomic.Pointer[snapshot]
	httpsPort   atomic.Int32 // for redirects; 0 means 443
	ports       [2]atomic.Pointer[portName]

	// mu serializes Swap and guards the state carried from one table to
	// the next.
	mu         sync.Mutex
	endpoints  map[string]*endpoint
	rr         map[string]*atomic.Uint64
	rps        map[limiterKey]*rateLimiter
	conns      map[limiterKey]*connLimiter
	labels     map[labelBase]*labelBase
	transports map[transportKey]upstreamClient
	// live is the set of endpoint addresses of the current table, for the
	// upstream pools (read without p.mu).
	live atomic.Pointer[map[string]struct{}]
	// defTransport serves the default backends (plain HTTP).
	defTransport upstreamClient

	upgraded   sync.Map // net.Conn -> struct{}: hijacked connections, closed when Serve ends
	notFound   *labelBase
	bufs       sync.Pool
	accessLogs bool
	// clientBodyTimeout: see the constant; a field for tests.
	clientBodyTimeout time.Duration
}

type limiterKey struct {
	ing types.NamespacedName
	n   int
}

// snapshot is a table with the proxy's per-route state.
type snapshot struct {
	table  *route.Table
	routes map[*route.Route]*routeState
	def    *routeState // the table's default backend, or nil
	// more holds the state of routes Match returns that Routes does not
	// list (a host's spec.defaultBackend fallback), made on first use.
	more sync.Map // *route.Route -> *routeState
}

// routeState is what a request matching a route needs, resolved once per
// Swap.
type routeState struct {
	route      *route.Route // nil for the table's default backend
	cfg        *annotations.Config
	backend    *backendState
	canaries   []canaryState
	fallback   *backendState // default-backend annotation: when backend has no endpoints
	errBackend *backendState // custom-http-errors target
	errCodes   []int
	rps        *rateLimiter
	conns      *connLimiter
	transport  upstreamClient
	scheme     string // upstream URL scheme
	// rewriteRE gives rewrite-target its groups on a route that is not a
	// Regex route: ingress-nginx treats every path as a regex there.
	rewriteRE  *regexp.Regexp
	labels     *labelBase
	ewma       bool
	affinity   bool
	cookiePath string
}

// New makes a proxy serving an empty table (everything is the built-in
// 404) until the first Swap.
func New(o Options) *Proxy {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cert := o.DefaultCert
	if cert == nil {
		c, err := selfSigned(time.Now())
		if err != nil {
			// crypto/rand failing leaves nothing to serve TLS with.
			panic(fmt.Sprintf("ingress proxy: %v", err))
		}
		cert = c
	}
	p := &Proxy{
		log:         log,
		defaultCert: cert,
		metrics:     newMetrics(o.Registry, o.Namespace, o.NodeName),
		endpoints:   map[string]*endpoint{},
		rr:          map[string]*atomic.Uint64{},
		rps:         map[limiterKey]*rateLimiter{},
		conns:       map[limiterKey]*connLimiter{},
		labels:      map[labelBase]*labelBase{},
		transports:  map[transportKey]upstreamClient{},
		notFound:    &labelBase{},
		accessLogs:  log.Enabled(context.Background(), slog.LevelInfo),

		clientBodyTimeout: clientBodyTimeout,
	}
	p.bufs.New = func() any { b := make([]byte, 32<<10); return &b }
	p.defTransport = p.transport(transportKey{"HTTP", annotations.Defaults().ProxyConnectTimeout})
	p.Swap(&route.Table{})
	return p
}

// Swap installs t for every request that starts from now on. It is safe
// to call concurrently with requests and with itself.
func (p *Proxy) Swap(t *route.Table) {
	if t == nil {
		t = &route.Table{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	b := &builder{
		p:         p,
		endpoints: map[string]*endpoint{},
		rr:        map[string]*atomic.Uint64{},
		rps:       map[limiterKey]*rateLimiter{},
		conns:     map[limiterKey]*connLimiter{},
		labels:    map[labelBase]*labelBase{},
		backends:  map[*route.Backend]*backendState{},
	}
	s := &snapshot{table: t, routes: map[*route.Route]*routeState{}}
	for _, r := range t.Routes() {
		s.routes[r] = b.route(r, t)
	}
	if db := t.DefaultBackend(); db != nil {
		cfg := annotations.Defaults()
		s.def = &routeState{
			cfg:       cfg,
			backend:   b.backend(db),
			transport: p.defTransport,
			scheme:    "http",
			labels:    b.label(labelBase{namespace: db.Namespace, service: db.Service}),
		}
	}
	p.snap.Store(s)
	p.endpoints, p.rr, p.rps, p.conns = b.endpoints, b.rr, b.rps, b.conns
	p.labels = b.labels
	p.metrics.forget(b.labels)
	p.publishLive()
	for _, t := range p.transports {
		t.forget()
	}
}

// publishLive copies the endpoint addresses for the upstream pools; p.mu
// is held.
func (p *Proxy) publishLive() {
	live := make(map[string]struct{}, len(p.endpoints))
	for a := range p.endpoints {
		live[a] = struct{}{}
	}
	p.live.Store(&live)
}

// routeState is the state of a route of snap's table.
func (p *Proxy) routeState(snap *snapshot, r *route.Route) *routeState {
	if s := snap.routes[r]; s != nil {
		return s
	}
	if s, ok := snap.more.Load(r); ok {
		return s.(*routeState)
	}
	// A route Routes does not list: resolve it against the live state,
	// adding to it (the next Swap keeps what its table still uses).
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := snap.more.Load(r); ok {
		return s.(*routeState)
	}
	b := &builder{p: p, endpoints: p.endpoints, rr: p.rr, rps: p.rps, conns: p.conns,
		labels: p.labels, backends: map[*route.Backend]*backendState{}}
	n := len(p.endpoints)
	s, _ := snap.more.LoadOrStore(r, b.route(r, snap.table))
	if len(p.endpoints) != n {
		p.publishLive()
	}
	return s.(*routeState)
}

// builder resolves a table's routes against the state carried over.
type builder struct {
	p         *Proxy
	endpoints map[string]*endpoint
	rr        map[string]*atomic.Uint64
	rps       map[limiterKey]*rateLimiter
	conns     map[limiterKey]*connLimiter
	labels    map[labelBase]*labelBase
	backends  map[*route.Backend]*backendState
}

func (b *builder) route(r *route.Route, t *route.Table) *routeState {
	cfg := r.Config
	if cfg == nil {
		cfg = annotations.Defaults()
	}
	proto := cfg.BackendProtocol
	scheme := "http"
	if proto == "HTTPS" || proto == "GRPCS" {
		scheme = "https"
	}
	rs := &routeState{
		route:     r,
		cfg:       cfg,
		backend:   b.backend(r.Backend),
		errCodes:  cfg.CustomHTTPErrors,
		transport: b.p.transport(transportKey{proto, cfg.ProxyConnectTimeout}),
		scheme:    scheme,
		ewma:      cfg.LoadBalance == "ewma",
		affinity:  cfg.Affinity == "cookie",
	}
	if db := routeDefaultBackend(r); db != nil {
		rs.fallback = b.backend(db)
		rs.errBackend = rs.fallback
	} else if db := t.DefaultBackend(); db != nil {
		rs.errBackend = b.backend(db)
	}
	for _, c := range r.Canaries {
		ccfg := c.Config
		if ccfg == nil {
			ccfg = annotations.Defaults()
		}
		rs.canaries = append(rs.canaries, canaryState{cfg: ccfg, backend: b.backend(c.Backend)})
	}
	if cfg.LimitRPS > 0 {
		k := limiterKey{r.Ingress, cfg.LimitRPS}
		l := b.rps[k]
		if l == nil {
			if l = b.p.rps[k]; l == nil {
				l = newRateLimiter(cfg.LimitRPS)
			}
			b.rps[k] = l
		}
		rs.rps = l
	}
	if cfg.LimitConnections > 0 {
		k := limiterKey{r.Ingress, cfg.LimitConnections}
		l := b.conns[k]
		if l == nil {
			if l = b.p.conns[k]; l == nil {
				l = newConnLimiter(cfg.LimitConnections)
			}
			b.conns[k] = l
		}
		rs.conns = l
	}
	if cfg.RewriteTarget != "" && r.PathType != route.Regex {
		rs.rewriteRE, _ = regexp.Compile("(?i)^(?:" + r.Path + ")")
	}
	if rs.affinity {
		rs.cookiePath = cfg.SessionCookiePath
		if rs.cookiePath == "" {
			rs.cookiePath = r.Path
			if r.PathType == route.Regex || rs.cookiePath == "" {
				rs.cookiePath = "/"
			}
		}
	}
	lb := labelBase{host: r.Host, ingress: r.Ingress.Name, namespace: r.Ingress.Namespace, path: r.Path}
	if r.Backend != nil {
		lb.service = r.Backend.Service
	}
	rs.labels = b.label(lb)
	return rs
}

func (b *builder) label(lb labelBase) *labelBase {
	if l := b.labels[lb]; l != nil {
		return l
	}
	l := b.p.labels[lb]
	if l == nil {
		l = &lb
	}
	b.labels[lb] = l
	return l
}

func (b *builder) backend(be *route.Backend) *backendState {
	if be == nil {
		return nil
	}
	if bs := b.backends[be]; bs != nil {
		return bs
	}
	key := be.Key()
	rr := b.rr[key]
	if rr == nil {
		if rr = b.p.rr[key]; rr == nil {
			rr = new(atomic.Uint64)
		}
		b.rr[key] = rr
	}
	bs := &backendState{b: be, rr: rr}
	for _, e := range be.Endpoints {
		ep := b.endpoints[e.Addr]
		if ep == nil {
			if ep = b.p.endpoints[e.Addr]; ep == nil {
				ep = newEndpoint(e.Addr)
			}
			b.endpoints[e.Addr] = ep
		}
		if e.Terminating {
			bs.term = append(bs.term, ep)
		} else {
			bs.ready = append(bs.ready, ep)
		}
	}
	b.backends[be] = bs
	return bs
}

// routeDefaultBackend is the route's default-backend annotation resolved
// by package route, or nil.
func routeDefaultBackend(r *route.Route) *route.Backend { return r.DefaultBackend }

// TLSConfig is the HTTPS listener's configuration: the certificate by SNI
// from the current table, else the default certificate; ALPN h2 and
// http/1.1.
func (p *Proxy) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: p.certificate,
	}
}

func (p *Proxy) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello.ServerName != "" {
		if c := p.snap.Load().table.Certificate(hello.ServerName); c != nil {
			return c, nil
		}
	}
	return p.defaultCert, nil
}

// shutdownGrace bounds how long Serve waits for in-flight requests when
// its context ends.
const shutdownGrace = 30 * time.Second

// Serve serves plain HTTP (HTTP/1.1 and h2c with prior knowledge) on
// httpLn and HTTPS (HTTP/2 by ALPN, HTTP/1.1) on httpsLn; either may be
// nil. It returns when ctx ends, after a graceful shutdown (in-flight
// requests finish, for at most 30 s; then upgraded connections are
// closed), or when a listener fails.
func (p *Proxy) Serve(ctx context.Context, httpLn, httpsLn net.Listener) error {
	errLog := slog.NewLogLogger(p.log.Handler(), slog.LevelDebug)
	var servers []*http.Server
	errc := make(chan error, 2)
	if httpLn != nil {
		var protos http.Protocols
		protos.SetHTTP1(true)
		protos.SetUnencryptedHTTP2(true)
		s := &http.Server{
			Handler:           p,
			ReadHeaderTimeout: 60 * time.Second,
			IdleTimeout:       75 * time.Second,
			MaxHeaderBytes:    1 << 20,
			ErrorLog:          errLog,
			Protocols:         &protos,
			ConnContext:       clientContext,
		}
		servers = append(servers, s)
		go func() { errc <- s.Serve(clientListener{httpLn}) }()
	}
	if httpsLn != nil {
		if a, ok := httpsLn.Addr().(*net.TCPAddr); ok {
			p.httpsPort.Store(int32(a.Port))
		}
		var protos http.Protocols
		protos.SetHTTP1(true)
		protos.SetHTTP2(true)
		s := &http.Server{
			Handler:           p,
			TLSConfig:         p.TLSConfig(),
			ReadHeaderTimeout: 60 * time.Second,
			IdleTimeout:       75 * time.Second,
			MaxHeaderBytes:    1 << 20,
			ErrorLog:          errLog,
			Protocols:         &protos,
		}
		servers = append(servers, s)
		go func() { errc <- s.ServeTLS(httpsLn, "", "") }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		err = fmt.Errorf("ingress proxy: serve: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if serr := s.Shutdown(sctx); serr != nil && !errors.Is(serr, context.DeadlineExceeded) {
				p.log.Warn("ingress proxy: shutdown", "error", serr)
			}
			s.Close()
		}()
	}
	wg.Wait()
	p.upgraded.Range(func(k, _ any) bool {
		k.(net.Conn).Close()
		return true
	})
	return err
}

// portString avoids formatting the listeners' ports per request: 80 and
// 443, and the last two others seen.
func (p *Proxy) portString(port int) string {
	switch port {
	case 80:
		return "80"
	case 443:
		return "443"
	}
	for i := range p.ports {
		if pn := p.ports[i].Load(); pn != nil && pn.port == port {
			return pn.s
		}
	}
	pn := &portName{port, strconv.Itoa(port)}
	if !p.ports[1].CompareAndSwap(nil, pn) {
		p.ports[0].Store(pn)
	}
	return pn.s
}

type portName struct {
	port int
	s    string
}
