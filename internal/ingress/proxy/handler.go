package proxy

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/podnet/podnet/internal/ingress/route"
)

// exchange is one request's way through the proxy. It is allocated per
// request (never pooled: an upstream transport may still read the request
// body wrapper and URL for a moment after the handler returns).
type exchange struct {
	p      *Proxy
	w      http.ResponseWriter
	r      *http.Request
	start  time.Time
	path   string // the request's (decoded) path, as matched
	groups []string
	rt     *routeState
	labels *labelBase
	client netip.Addr
	ip     string // client address as text
	// cc is the plain HTTP/1.x client's connection, nil for other
	// clients (see clientConn).
	cc *clientConn

	canary    string // canary backend key, the metrics' canary label
	service   string // the service that answered
	cors      string // Access-Control-Allow-Origin for the response, "" for none
	setCookie string

	requestID      string
	status         int
	bytes          int64 // response body bytes sent
	respHeader     int64 // response header bytes, approximated
	upstreamAddr   string
	upstreamStatus int
	upstreamStart  time.Time
	getNow         time.Time     // upstreamStart for the first upstream connection taken, then zero
	end            time.Time     // when the answer was sent, if it was read then
	upstreamDur    time.Duration // -1: no upstream
	err            string

	hv     [6]string // values of the forwarding header fields
	idBuf  [32]byte  // the bytes of requestID when the proxy made it
	url    url.URL
	uri    string // the upstream request target
	out    http.Request
	body   reqBody
	timer  *time.Timer
	cancel context.CancelCauseFunc
}

var (
	errUpstreamTimeout = errors.New("upstream timed out")
	errBodyTooLarge    = errors.New("request body larger than proxy-body-size")
)

// Canonical header names, spelled once.
const (
	hXForwardedFor    = "X-Forwarded-For"
	hXForwardedProto  = "X-Forwarded-Proto"
	hXForwardedHost   = "X-Forwarded-Host"
	hXForwardedPort   = "X-Forwarded-Port"
	hXForwardedPrefix = "X-Forwarded-Prefix"
	hXRealIP          = "X-Real-Ip"
	hXRequestID       = "X-Request-Id"
	hXScheme          = "X-Scheme"
)

var (
	valHTTP      = []string{"http"}
	valHTTPS     = []string{"https"}
	valEmpty     = []string{""}
	valTextPlain = []string{"text/plain; charset=utf-8"}
)

// ServeHTTP proxies one request by the current table. It serves both the
// HTTP and the HTTPS listener (r.TLS tells them apart).
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := &exchange{p: p, w: w, r: r, start: time.Now(), upstreamDur: -1, path: r.URL.Path}
	x.ip, x.client = clientAddr(r.RemoteAddr)
	if r.ProtoMajor == 1 && r.TLS == nil {
		x.cc = clientOf(r.Context())
	}
	defer x.finish()

	snap := p.snap.Load()
	if x.path == "" || x.path[0] != '/' {
		x.labels = p.notFound
		x.builtin(http.StatusBadRequest, "")
		return
	}
	m := snap.table.Match(r.Host, x.path)
	rt := snap.def
	if m.Route != nil {
		rt = p.routeState(snap, m.Route)
	}
	if rt == nil {
		x.labels = p.notFound
		x.builtin(http.StatusNotFound, "default backend - 404")
		return
	}
	x.rt, x.labels, x.groups = rt, rt.labels, m.Groups
	cfg := rt.cfg

	if rt.route != nil {
		if cfg.AppRoot != "" && x.path == "/" {
			loc := cfg.AppRoot
			if loc[0] == '/' {
				loc = x.scheme() + "://" + r.Host + loc
			}
			x.redirect(http.StatusFound, loc)
			return
		}
		if cfg.PermanentRedirect != "" {
			code := cfg.PermanentRedirectCode
			if code == 0 {
				code = http.StatusMovedPermanently
			}
			x.redirect(code, cfg.PermanentRedirect)
			return
		}
		if cfg.TemporalRedirect != "" {
			x.redirect(http.StatusFound, cfg.TemporalRedirect)
			return
		}
		if r.TLS == nil && (cfg.ForceSSLRedirect || (rt.route.TLS && (cfg.SSLRedirect == nil || *cfg.SSLRedirect))) {
			x.redirect(http.StatusPermanentRedirect, "https://"+redirectHost(r.Host, int(p.httpsPort.Load()))+r.URL.RequestURI())
			return
		}
		if cfg.EnableCORS {
			if origin, ok := corsOrigin(cfg.CORSAllowOrigin, r.Header.Get("Origin")); ok {
				if r.Method == http.MethodOptions {
					h := w.Header()
					setCORS(h, cfg, origin, true)
					h["Content-Type"] = valTextPlain
					h["Content-Length"] = []string{"0"}
					x.status = http.StatusNoContent
					w.WriteHeader(http.StatusNoContent)
					return
				}
				x.cors = origin
			}
		}
	}
	if rt.rps != nil && !rt.rps.allow(x.client, x.start.UnixNano()) {
		x.err = "limit-rps exceeded"
		x.builtin(http.StatusServiceUnavailable, "")
		return
	}
	if rt.conns != nil {
		if !rt.conns.acquire(x.client) {
			x.err = "limit-connections exceeded"
			x.builtin(http.StatusServiceUnavailable, "")
			return
		}
		defer rt.conns.release(x.client)
	}
	if !allowed(cfg.WhitelistSourceRange, x.client) {
		x.err = "client address not in whitelist-source-range"
		x.builtin(http.StatusForbidden, "")
		return
	}
	if cfg.ProxyBodySize > 0 && r.ContentLength > cfg.ProxyBodySize {
		x.err = "request body larger than proxy-body-size"
		x.builtin(http.StatusRequestEntityTooLarge, "")
		return
	}

	bs := rt.backend
	if c := pickCanary(r, rt.canaries); c != nil && len(c.backend.candidates()) > 0 {
		bs = c.backend
		x.canary = bs.b.Key()
	}
	if len(bs.candidates()) == 0 && len(rt.fallback.candidates()) > 0 {
		bs = rt.fallback
	}
	if bs != nil {
		x.service = bs.b.Service
	}
	if len(bs.candidates()) == 0 {
		x.err = "no ready endpoints"
		if bs != nil && bs.b.Err != "" {
			x.err = bs.b.Err
		}
		x.builtin(http.StatusServiceUnavailable, "")
		return
	}
	x.proxy(bs)
}

// clientGone reports whether the client went away: its request's
// context ended, or its connection saw the error that ends it (which the
// upstream exchange, aborted by the connection, can see first).
func (x *exchange) clientGone() bool {
	return x.r.Context().Err() != nil || (x.cc != nil && x.cc.gone.Load())
}

func (x *exchange) scheme() string {
	if x.r.TLS != nil {
		return "https"
	}
	return "http"
}

// clientAddr splits a RemoteAddr "ip:port" without allocating.
func clientAddr(remote string) (string, netip.Addr) {
	ip := remote
	if i := strings.LastIndexByte(remote, ':'); i > 0 {
		ip = remote[:i]
	}
	if len(ip) > 1 && ip[0] == '[' && ip[len(ip)-1] == ']' {
		ip = ip[1 : len(ip)-1]
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip, netip.Addr{}
	}
	return ip, a.Unmap()
}

func (x *exchange) redirect(code int, loc string) {
	h := x.w.Header()
	h["Location"] = []string{loc}
	x.builtin(code, "")
}

// builtin answers from the proxy itself, with a small text body: body, or
// the status line.
func (x *exchange) builtin(code int, body string) {
	if body == "" {
		body = strconv.Itoa(code) + " " + http.StatusText(code) + "\n"
	}
	h := x.w.Header()
	h["Content-Type"] = valTextPlain
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	x.status = code
	x.w.WriteHeader(code)
	if x.r.Method != http.MethodHead {
		n, _ := io.WriteString(x.w, body)
		x.bytes += int64(n)
	}
}

// proxy sends the request to bs and the answer back.
func (x *exchange) proxy(bs *backendState) {
	r, rt, cfg := x.r, x.rt, x.rt.cfg
	cands := bs.candidates()
	var cookie string
	if rt.affinity {
		if c, err := r.Cookie(cfg.SessionCookieName); err == nil {
			cookie = c.Value
		}
	}
	first := bs.pick(cands, rt.ewma, cookie)

	upgrade := x.prepareHeaders()
	host := r.Host
	if cfg.UpstreamVhost != "" {
		host = cfg.UpstreamVhost
	}
	x.url = url.URL{Scheme: rt.scheme, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	x.uri = r.RequestURI
	if cfg.RewriteTarget != "" && rt.route != nil {
		x.rewrite(cfg.RewriteTarget)
		x.uri = x.url.RequestURI()
	} else if x.uri == "" || x.uri[0] != '/' {
		x.uri = x.url.RequestURI() // absolute-form target, or no raw target
	}

	var (
		out *http.Request
		ctx context.Context
	)
	if rt.transport.usesContext() {
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(r.Context())
		defer cancel(nil)
		if cfg.ProxyReadTimeout > 0 {
			x.timer = time.AfterFunc(cfg.ProxyReadTimeout, func() { cancel(errUpstreamTimeout) })
			defer x.timer.Stop()
		}
		out = r.WithContext(ctx)
		out.URL = &x.url
		out.RequestURI = ""
		out.Close = false
		out.TransferEncoding = nil
	} else {
		x.out = http.Request{Method: r.Method, URL: &x.url, Header: r.Header, Trailer: r.Trailer, ContentLength: r.ContentLength}
		out = &x.out
	}
	out.Host = host
	out.Body = nil
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		x.body = reqBody{rc: r.Body, x: x, limit: cfg.ProxyBodySize}
		out.Body = &x.body
	}

	var (
		res *http.Response
		err error
		ep  *endpoint
		n   = len(cands)
	)
	x.upstreamStart = time.Now()
	x.getNow = x.upstreamStart
	for k := 0; k < n; k++ {
		ep = cands[(first+k)%n]
		if x.upstreamAddr == "" {
			x.upstreamAddr = ep.addr
		} else {
			x.upstreamAddr += ", " + ep.addr
		}
		ep.inflight.Add(1)
		res, err = rt.transport.roundTrip(x, out, ep.addr)
		if err == nil {
			break
		}
		ep.inflight.Add(-1)
		if !isDialError(err) || x.body.used.Load() || x.clientGone() {
			break
		}
	}
	if err != nil {
		x.upstreamDur = time.Since(x.upstreamStart)
		x.roundTripFailed(ctx, err)
		return
	}
	defer ep.inflight.Add(-1)
	if rt.affinity && ep.cookie != cookie {
		// Name the endpoint that answered (after a retry, not the first).
		c := &http.Cookie{Name: cfg.SessionCookieName, Value: ep.cookie, Path: rt.cookiePath, HttpOnly: true}
		if cfg.SessionCookieMaxAge > 0 {
			c.MaxAge = cfg.SessionCookieMaxAge
			c.Expires = x.start.Add(time.Duration(cfg.SessionCookieMaxAge) * time.Second)
		}
		x.setCookie = c.String()
	}
	x.upstreamStatus = res.StatusCode
	if res.StatusCode == http.StatusSwitchingProtocols {
		x.upgrade(res, upgrade)
		return
	}
	if len(rt.errCodes) > 0 && rt.errBackend != nil && containsInt(rt.errCodes, res.StatusCode) {
		if x.customError(ctx, res, bs) {
			return
		}
	}
	x.copyResponse(res)
	x.end = time.Now()
	x.upstreamDur = x.end.Sub(x.upstreamStart)
	if rt.ewma {
		ep.sample(x.upstreamDur, x.end)
	}
}

// roundTripFailed answers for an exchange that got no response: 413 when
// the body exceeded proxy-body-size, 504 on a timeout, 499 (logged only)
// when the client went away, else 502.
func (x *exchange) roundTripFailed(ctx context.Context, err error) {
	x.err = err.Error()
	var ne net.Error
	switch {
	case x.body.tooLarge.Load():
		x.builtin(http.StatusRequestEntityTooLarge, "")
	case x.body.timedOut.Load():
		x.builtin(http.StatusRequestTimeout, "")
	case ctx != nil && context.Cause(ctx) == errUpstreamTimeout, errors.Is(err, errSendTimeout):
		x.err = errUpstreamTimeout.Error()
		x.builtin(http.StatusGatewayTimeout, "")
	case x.clientGone():
		x.status = 499 // nginx's "client closed request"; nothing can be sent
	case errors.As(err, &ne) && ne.Timeout():
		x.builtin(http.StatusGatewayTimeout, "")
	default:
		x.builtin(http.StatusBadGateway, "")
	}
}

// rewrite applies rewrite-target: the target with $N replaced by the
// path's capture groups (nginx semantics, route.Rewrite). A query in the
// target comes first, the request's query after it, as nginx's rewrite.
func (x *exchange) rewrite(target string) {
	groups := x.groups
	if groups == nil {
		if re := x.rt.rewriteRE; re != nil {
			groups = re.FindStringSubmatch(x.path)
		}
		if groups == nil {
			groups = []string{x.path}
		}
	}
	s := route.Rewrite(target, groups)
	q := x.url.RawQuery
	if i := strings.IndexByte(s, '?'); i >= 0 {
		if q != "" {
			q = s[i+1:] + "&" + q
		} else {
			q = s[i+1:]
		}
		s = s[:i]
	}
	if s == "" || s[0] != '/' {
		s = "/" + s
	}
	x.url.Path, x.url.RawPath, x.url.RawQuery = s, "", q
}

// prepareHeaders turns the client's header into the upstream request's,
// in place: hop-by-hop fields out, the forwarding fields in. It returns
// the protocol the client asks to upgrade to, or "".
func (x *exchange) prepareHeaders() string {
	r, h := x.r, x.r.Header
	upgrade := ""
	if r.ProtoMajor == 1 && hasToken(h["Connection"], "upgrade") {
		upgrade = h.Get("Upgrade")
	}
	te := hasToken(h["Te"], "trailers")
	removeHopByHop(h)
	if upgrade != "" {
		h["Connection"] = []string{"Upgrade"}
		h["Upgrade"] = []string{upgrade}
	}
	if te {
		h["Te"] = []string{"trailers"}
	}
	// The values live in x.hv: one allocation for all of them.
	set := func(i int, k, v string) {
		x.hv[i] = v
		h[k] = x.hv[i : i+1 : i+1]
	}
	if prior := h[hXForwardedFor]; len(prior) > 0 {
		set(0, hXForwardedFor, strings.Join(prior, ", ")+", "+x.ip)
	} else {
		set(0, hXForwardedFor, x.ip)
	}
	set(1, hXRealIP, x.ip)
	if r.TLS != nil {
		h[hXForwardedProto] = valHTTPS
		h[hXScheme] = valHTTPS
	} else {
		h[hXForwardedProto] = valHTTP
		h[hXScheme] = valHTTP
	}
	set(2, hXForwardedHost, r.Host)
	set(3, hXForwardedPort, x.localPort())
	if id := h[hXRequestID]; len(id) > 0 && id[0] != "" {
		x.requestID = id[0]
	} else {
		x.requestID = newRequestID(&x.idBuf)
		set(4, hXRequestID, x.requestID)
	}
	if p := x.rt.cfg.XForwardedPrefix; p != "" {
		set(5, hXForwardedPrefix, p)
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = valEmpty // the transport must not add its own
	}
	return upgrade
}

// localPort is the port the client connected to.
func (x *exchange) localPort() string {
	if a, ok := x.r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		return x.p.portString(a.Port)
	}
	if a, ok := x.r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if _, port, ok := splitHostPort(a.String()); ok {
			return port
		}
	}
	if x.r.TLS != nil {
		return "443"
	}
	return "80"
}

// newRequestID is 32 random hex digits, as nginx's $request_id, in buf
// (the exchange's: one allocation less per request; buf is never
// written again, the exchange never reused).
func newRequestID(buf *[32]byte) string {
	var b [16]byte
	a, c := rand.Uint64(), rand.Uint64()
	for i := 0; i < 8; i++ {
		b[i] = byte(a >> (8 * i))
		b[8+i] = byte(c >> (8 * i))
	}
	hex.Encode(buf[:], b[:])
	return unsafe.String(&buf[0], len(buf))
}

// hopByHop are the fields that describe one connection, not the message.
var hopByHop = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopByHop(h http.Header) {
	for _, v := range h["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				h.Del(f)
			}
		}
	}
	for _, k := range hopByHop {
		delete(h, k)
	}
}

// hasToken reports whether a comma-separated header holds token
// (case-insensitive).
func hasToken(vals []string, token string) bool {
	for _, v := range vals {
		for v != "" {
			var f string
			f, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

func containsInt(s []int, n int) bool {
	for _, v := range s {
		if v == n {
			return true
		}
	}
	return false
}

// copyResponse sends res to the client, streaming: every chunk read from
// the upstream is flushed at once (SSE, gRPC), except the last one of a
// body of known length, which the server sends with the end of the
// response.
func (x *exchange) copyResponse(res *http.Response) {
	defer res.Body.Close()
	h := x.w.Header()
	removeHopByHop(res.Header)
	for k, vv := range res.Header {
		h[k] = vv
		x.respHeader += int64(len(k) + 4)
		for _, v := range vv {
			x.respHeader += int64(len(v))
		}
	}
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		h["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	if x.cors != "" {
		setCORS(h, x.rt.cfg, x.cors, false)
	}
	if x.setCookie != "" {
		h["Set-Cookie"] = append(h["Set-Cookie"], x.setCookie)
	}
	x.status = res.StatusCode
	x.w.WriteHeader(res.StatusCode)

	if res.Body != http.NoBody {
		if err := x.copyBody(res); err != nil {
			x.err = err.Error()
			// The client must not take a cut body for a whole one.
			panic(http.ErrAbortHandler)
		}
	}
	if len(res.Trailer) > 0 {
		if len(res.Trailer) == announced {
			for k, vv := range res.Trailer {
				h[k] = vv
			}
		} else {
			for k, vv := range res.Trailer {
				h[http.TrailerPrefix+k] = vv
			}
		}
	}
}

var errClientGone = errors.New("client write failed")

func (x *exchange) copyBody(res *http.Response) error {
	bufp := x.p.bufs.Get().(*[]byte)
	defer x.p.bufs.Put(bufp)
	buf := *bufp
	flusher, _ := x.w.(http.Flusher)
	readTimeout := x.rt.cfg.ProxyReadTimeout
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			if x.timer != nil {
				x.timer.Reset(readTimeout)
			}
			wn, werr := x.w.Write(buf[:n])
			x.bytes += int64(wn)
			if werr != nil {
				return errClientGone
			}
			if flusher != nil && (res.ContentLength < 0 || x.bytes < res.ContentLength) {
				flusher.Flush()
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// upgrade completes a protocol switch (WebSocket): the client's connection
// is taken over and joined to the upstream one, byte for byte, until
// either side closes. Table swaps do not touch it; Serve's end closes it.
func (x *exchange) upgrade(res *http.Response, want string) {
	if x.timer != nil {
		x.timer.Stop()
	}
	back, ok := res.Body.(io.ReadWriteCloser)
	got := res.Header.Get("Upgrade")
	if !ok || want == "" || !strings.EqualFold(got, want) {
		res.Body.Close()
		x.err = "upstream switched protocols without an upgrade request"
		x.builtin(http.StatusBadGateway, "")
		return
	}
	defer back.Close()
	hj, ok := x.w.(http.Hijacker)
	if !ok {
		x.err = "connection cannot be upgraded"
		x.builtin(http.StatusBadGateway, "")
		return
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		x.err = "hijack: " + err.Error()
		return
	}
	defer conn.Close()
	x.p.upgraded.Store(conn, struct{}{})
	defer x.p.upgraded.Delete(conn)
	x.status = http.StatusSwitchingProtocols

	removeHopByHop(res.Header)
	res.Header["Connection"] = []string{"Upgrade"}
	res.Header["Upgrade"] = []string{got}
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	res.Header.Write(brw)
	brw.WriteString("\r\n")
	if err := brw.Flush(); err != nil {
		x.err = "upgrade: " + err.Error()
		return
	}
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := back.Write(b); err != nil {
			x.err = "upgrade: " + err.Error()
			return
		}
		brw.Reader.Discard(n)
	}
	errc := make(chan error, 2)
	var up, down atomic.Int64
	go func() { errc <- splice(back, conn, &up) }()
	go func() { errc <- splice(conn, back, &down) }()
	<-errc
	x.bytes = down.Load()
}

// splice copies src to dst, counting, and closes dst's write side (or dst)
// at the end so the other direction ends too.
func splice(dst io.Writer, src io.Reader, n *atomic.Int64) error {
	buf := make([]byte, 16<<10)
	var err error
	for {
		k, rerr := src.Read(buf)
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				err = werr
				break
			}
			n.Add(int64(k))
		}
		if rerr != nil {
			if rerr != io.EOF {
				err = rerr
			}
			break
		}
	}
	if c, ok := dst.(io.Closer); ok {
		c.Close()
	}
	return err
}

// customError sends the request to the error backend when the upstream
// answered one of custom-http-errors, as ingress-nginx: GET / with X-Code,
// X-Format, X-Original-URI, X-Namespace, X-Ingress-Name, X-Service-Name,
// X-Service-Port. The error backend's answer replaces the upstream's; when
// it has no answer, the upstream's stays. It reports whether it answered.
func (x *exchange) customError(ctx context.Context, res *http.Response, served *backendState) bool {
	eb := x.rt.errBackend
	cands := eb.candidates()
	if len(cands) == 0 {
		return false
	}
	r := x.r
	method := http.MethodGet
	if r.Method == http.MethodHead {
		method = http.MethodHead
	}
	h := http.Header{
		"X-Code":         {strconv.Itoa(res.StatusCode)},
		"X-Format":       {r.Header.Get("Accept")},
		"X-Original-Uri": {r.RequestURI},
		"X-Namespace":    {served.b.Namespace},
		"X-Service-Name": {served.b.Service},
		"X-Service-Port": {served.b.Port},
		hXRequestID:      {x.requestID},
		hXForwardedFor:   r.Header[hXForwardedFor],
		hXRealIP:         {x.ip},
		hXForwardedHost:  {r.Host},
		hXForwardedProto: {x.scheme()},
		"User-Agent":     r.Header["User-Agent"],
	}
	if x.rt.route != nil {
		h["X-Ingress-Name"] = []string{x.rt.route.Ingress.Name}
	}
	u := url.URL{Scheme: "http", Path: "/"}
	out := &http.Request{Method: method, URL: &u, Header: h, Host: r.Host}
	first := eb.pick(cands, false, "")
	saved := x.uri
	x.uri = "/"
	defer func() { x.uri = saved }()
	for k := 0; k < len(cands); k++ {
		addr := cands[(first+k)%len(cands)].addr
		eres, err := x.p.defTransport.roundTrip(x, out, addr)
		if err == nil {
			res.Body.Close()
			x.upstreamAddr += " : " + addr
			x.service = eb.b.Service
			x.copyResponse(eres)
			x.upstreamDur = time.Since(x.upstreamStart)
			return true
		}
		if !isDialError(err) {
			break
		}
	}
	return false
}

// reqBody is the upstream request's body: the client's, counted against
// proxy-body-size and resetting the send timeout; Close is the server's
// business, so a retry can still send it when nothing was read.
type reqBody struct {
	rc       io.ReadCloser
	x        *exchange
	limit    int64
	n        atomic.Int64
	used     atomic.Bool
	tooLarge atomic.Bool
	timedOut atomic.Bool
	rc2      *http.ResponseController
	deadline time.Time
}

// clientBodyTimeout bounds a pause of the client while it sends its
// body, as nginx's client_body_timeout (408).
const clientBodyTimeout = 60 * time.Second

func (b *reqBody) Read(p []byte) (int, error) {
	b.used.Store(true)
	if d := b.x.p.clientBodyTimeout; b.deadline.Sub(time.Now()) < d*3/4 {
		if b.rc2 == nil {
			b.rc2 = http.NewResponseController(b.x.w)
		}
		b.deadline = time.Now().Add(d)
		b.rc2.SetReadDeadline(b.deadline)
	}
	n, err := b.rc.Read(p)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		b.timedOut.Store(true)
	}
	if b.n.Add(int64(n)) > b.limit && b.limit > 0 {
		b.tooLarge.Store(true)
		return 0, errBodyTooLarge
	}
	if t := b.x.timer; t != nil {
		if err == io.EOF {
			t.Reset(b.x.rt.cfg.ProxyReadTimeout)
		} else if d := b.x.rt.cfg.ProxySendTimeout; d > 0 {
			t.Reset(d)
		}
	}
	return n, err
}

func (b *reqBody) Close() error { return nil }

// finish records the request: metrics and one access log line.
func (x *exchange) finish() {
	end := x.end
	if end.IsZero() {
		end = time.Now()
	}
	d := end.Sub(x.start)
	r := x.r
	if x.status == 0 {
		x.status = http.StatusOK
	}
	reqSize := int64(len(r.Method) + len(r.RequestURI) + 12)
	for k, vv := range r.Header {
		reqSize += int64(len(k) + 4)
		for _, v := range vv {
			reqSize += int64(len(v))
		}
	}
	reqSize += x.body.n.Load()
	x.p.metrics.observe(x.labels, r.Method, x.status, x.canary, d, x.upstreamDur, reqSize, x.respHeader+x.bytes+17, x.bytes)
	if !x.p.accessLogs {
		return
	}
	attrs := make([]slog.Attr, 0, 18)
	attrs = append(attrs,
		slog.String("host", r.Host),
		slog.String("method", r.Method),
		slog.String("path", x.path),
		slog.String("proto", r.Proto),
		slog.Int("status", x.status),
		slog.Int64("bytes", x.bytes),
		slog.Float64("request_time", d.Seconds()),
		slog.String("remote_addr", x.ip),
		slog.String("request_id", x.requestID),
	)
	if x.upstreamAddr != "" {
		attrs = append(attrs,
			slog.String("upstream_addr", x.upstreamAddr),
			slog.Int("upstream_status", x.upstreamStatus),
			slog.Float64("upstream_response_time", x.upstreamDur.Seconds()),
		)
	}
	if x.rt != nil && x.rt.route != nil {
		attrs = append(attrs,
			slog.String("namespace", x.rt.route.Ingress.Namespace),
			slog.String("ingress", x.rt.route.Ingress.Name),
		)
	}
	if x.service != "" {
		attrs = append(attrs, slog.String("service", x.service))
	}
	if x.canary != "" {
		attrs = append(attrs, slog.String("canary", x.canary))
	}
	if x.err != "" {
		attrs = append(attrs, slog.String("error", x.err))
	}
	x.p.log.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
}

var _ http.Handler = (*Proxy)(nil)
