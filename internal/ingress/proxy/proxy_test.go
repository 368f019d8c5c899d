package proxy

import (
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRouting(t *testing.T) {
	e := newEnv(t)
	a, b, d := newBackend(t, "a", nil), newBackend(t, "b", nil), newBackend(t, "def", nil)
	w := &world{}
	w.service("a", a.addr)
	w.service("b", b.addr)
	w.service("def", d.addr)
	w.ingress("one", path("foo.com", "Prefix /app a"), path("foo.com", "Exact /app/exact b"), path("*.bar.com", "Prefix / b"))
	e.load(w)

	cases := []struct {
		host, target string
		code         int
		backend      string
		path         string
	}{
		{"foo.com", "/app", 200, "a", "/app"},
		{"foo.com", "/app/x/y?q=1", 200, "a", "/app/x/y"},
		{"FOO.com:80", "/app/", 200, "a", "/app/"},
		{"foo.com", "/appx", 404, "", ""},
		{"foo.com", "/app/exact", 200, "b", "/app/exact"},
		{"x.bar.com", "/anything", 200, "b", "/anything"},
		{"x.y.bar.com", "/", 404, "", ""},
		{"unknown.com", "/", 404, "", ""},
	}
	for _, c := range cases {
		r := e.do("GET", c.host, c.target)
		if r.code != c.code {
			t.Errorf("%s%s: status %d, want %d (%q)", c.host, c.target, r.code, c.code, r.body)
			continue
		}
		if c.code == 404 {
			if r.body != "default backend - 404" {
				t.Errorf("%s%s: 404 body %q", c.host, c.target, r.body)
			}
			continue
		}
		s := r.seen(t)
		if s.Name != c.backend || s.Path != c.path {
			t.Errorf("%s%s: backend %s saw %s, want %s saw %s", c.host, c.target, s.Name, s.Path, c.backend, c.path)
		}
	}

	// server-alias: another name for the Ingress's hosts.
	w.ingress("alias", path("main.com", "Prefix / a"), ann("server-alias", "alias.com, *.alias.org"))
	e.load(w)
	for _, h := range []string{"main.com", "alias.com", "x.alias.org"} {
		if r := e.do("GET", h, "/p"); r.code != 200 || r.seen(t).Name != "a" || r.seen(t).Host != h {
			t.Errorf("server-alias %s: %d %q", h, r.code, r.body)
		}
	}

	// A spec.defaultBackend takes what no rule matches.
	w.ingress("fallback", defaultBackend("def"))
	e.load(w)
	r := e.do("GET", "unknown.com", "/x")
	if r.code != 200 || r.seen(t).Name != "def" || r.seen(t).Path != "/x" {
		t.Errorf("default backend: %d %q", r.code, r.body)
	}
	if r := e.do("GET", "foo.com", "/app"); r.seen(t).Name != "a" {
		t.Errorf("rules still win over the default backend: %q", r.body)
	}
}

func TestHostDefaultBackendFallback(t *testing.T) {
	e := newEnv(t)
	a, d := newBackend(t, "a", nil), newBackend(t, "def", nil)
	w := &world{}
	w.service("a", a.addr)
	w.service("def", d.addr)
	w.ingress("one", path("foo.com", "Prefix /app a"), defaultBackend("def"))
	e.load(w)
	if s := e.do("GET", "foo.com", "/other").seen(t); s.Name != "def" {
		t.Errorf("host fallback: %s", s.Name)
	}
}

func TestHeaders(t *testing.T) {
	e := newEnv(t)
	a := newBackend(t, "a", nil)
	w := &world{}
	w.service("a", a.addr)
	w.ingress("one", path("foo.com", "Prefix / a"))
	e.load(w)

	r := e.do("GET", "foo.com:8080", "/p?x=1", "X-Forwarded-For", "10.1.1.1", "Connection", "X-Hop", "X-Hop", "gone", "Keep-Alive", "timeout=5", "X-Forwarded-Proto", "https")
	s := r.seen(t)
	h := s.Header
	want := map[string]string{
		"X-Forwarded-For":   "10.1.1.1, 127.0.0.1",
		"X-Real-Ip":         "127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "foo.com:8080",
		"X-Forwarded-Port":  e.httpAddr[strings.LastIndexByte(e.httpAddr, ':')+1:],
		"X-Scheme":          "http",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if s.Host != "foo.com:8080" {
		t.Errorf("Host %q, want the client's", s.Host)
	}
	if s.URI != "/p?x=1" {
		t.Errorf("URI %q", s.URI)
	}
	for _, k := range []string{"X-Hop", "Keep-Alive", "User-Agent"} {
		if _, ok := h[k]; ok && (k != "User-Agent" || h.Get(k) != "Go-http-client/1.1") {
			t.Errorf("%s passed through: %q", k, h.Get(k))
		}
	}
	id := h.Get("X-Request-Id")
	if b, err := hex.DecodeString(id); err != nil || len(b) != 16 {
		t.Errorf("X-Request-Id %q is not 32 hex digits", id)
	}
	if s2 := e.do("GET", "foo.com", "/", "X-Request-Id", "abc-123").seen(t); s2.Header.Get("X-Request-Id") != "abc-123" {
		t.Errorf("client's X-Request-Id not kept: %q", s2.Header.Get("X-Request-Id"))
	}
	if s3 := e.doTLS("GET", "foo.com", "/").seen(t); s3.Header.Get("X-Forwarded-Proto") != "https" || s3.Header.Get("X-Forwarded-Port") != e.tlsAddr[strings.LastIndexByte(e.tlsAddr, ':')+1:] {
		t.Errorf("over TLS: proto %q port %q", s3.Header.Get("X-Forwarded-Proto"), s3.Header.Get("X-Forwarded-Port"))
	}
	// Upstream hop-by-hop response fields are dropped; others kept.
	if r.header.Get("X-Backend") != "a" {
		t.Errorf("response header lost: %v", r.header)
	}
}

func TestRewriteTarget(t *testing.T) {
	e := newEnv(t)
	a := newBackend(t, "a", nil)
	w := &world{}
	w.service("a", a.addr)
	w.ingress("re", path("foo.com", "Impl /something(/|$)(.*) a"), ann("rewrite-target", "/$2", "use-regex", "true"))
	w.ingress("groups", path("bar.com", "Impl /v1/(\\w+)/(.*) a"), ann("rewrite-target", "/api/$1abc/$2?from=rw"))
	w.ingress("plain", path("baz.com", "Prefix /strip a"), ann("rewrite-target", "/"))
	e.load(w)
	cases := []struct{ host, target, uri string }{
		{"foo.com", "/something", "/"},
		{"foo.com", "/something/", "/"},
		{"foo.com", "/something/new/x?q=1", "/new/x?q=1"},
		{"foo.com", "/SomeThing/case", "/case"},
		{"bar.com", "/v1/users/7", "/api/usersabc/7?from=rw"},
		{"bar.com", "/v1/users/7?q=2", "/api/usersabc/7?from=rw&q=2"},
		{"baz.com", "/strip/a/b", "/"},
	}
	for _, c := range cases {
		r := e.do("GET", c.host, c.target)
		if r.code != 200 {
			t.Errorf("%s%s: %d %q", c.host, c.target, r.code, r.body)
			continue
		}
		if s := r.seen(t); s.URI != c.uri || s.Host != c.host {
			t.Errorf("%s%s: backend saw %s (Host %s), want %s", c.host, c.target, s.URI, s.Host, c.uri)
		}
	}
}

func TestRedirects(t *testing.T) {
	e := newEnv(t)
	a := newBackend(t, "a", nil)
	w := &world{}
	w.service("a", a.addr)
	w.secret(t, "tls", "secure.com", "secure.com")
	w.ingress("approot", path("root.com", "Prefix / a"), ann("app-root", "/app1"))
	w.ingress("perm", path("perm.com", "Prefix / a"), ann("permanent-redirect", "https://new.example/x"))
	w.ingress("perm308", path("perm308.com", "Prefix / a"), ann("permanent-redirect", "https://new.example/y", "permanent-redirect-code", "308"))
	w.ingress("temp", path("temp.com", "Prefix / a"), ann("temporal-redirect", "https://tmp.example/"))
	w.ingress("tls", path("secure.com", "Prefix / a"), tlsHosts("tls", "secure.com"))
	w.ingress("tlsoff", path("lax.com", "Prefix / a"), tlsHosts("tls", "lax.com"), ann("ssl-redirect", "false"))
	w.ingress("force", path("force.com", "Prefix / a"), ann("force-ssl-redirect", "true"))
	e.load(w)
	httpsPort := e.tlsAddr[strings.LastIndexByte(e.tlsAddr, ':')+1:]
	cases := []struct {
		host, target string
		code         int
		loc          string
	}{
		{"root.com", "/", 302, "http://root.com/app1"},
		{"root.com", "/app1", 200, ""},
		{"perm.com", "/any", 301, "https://new.example/x"},
		{"perm308.com", "/any", 308, "https://new.example/y"},
		{"temp.com", "/any", 302, "https://tmp.example/"},
		{"secure.com", "/p?q=1", 308, "https://secure.com:" + httpsPort + "/p?q=1"},
		{"secure.com:80", "/", 308, "https://secure.com:" + httpsPort + "/"},
		{"lax.com", "/p", 200, ""},
		{"force.com", "/f", 308, "https://force.com:" + httpsPort + "/f"},
	}
	for _, c := range cases {
		r := e.do("GET", c.host, c.target)
		if r.code != c.code || r.header.Get("Location") != c.loc {
			t.Errorf("%s%s: %d Location %q, want %d %q", c.host, c.target, r.code, r.header.Get("Location"), c.code, c.loc)
		}
	}
	// Over HTTPS there is no SSL redirect.
	for _, h := range []string{"secure.com", "force.com"} {
		if r := e.doTLS("GET", h, "/x"); r.code != 200 {
			t.Errorf("https %s: %d", h, r.code)
		}
	}
	if r := e.doTLS("GET", "root.com", "/"); r.header.Get("Location") != "https://root.com/app1" {
		t.Errorf("app-root over https: %q", r.header.Get("Location"))
	}
}

func TestForwardedPrefixAndVhost(t *testing.T) {
	e := newEnv(t)
	a := newBackend(t, "a", nil)
	w := &world{}
	w.service("a", a.addr)
	w.ingress("p", path("foo.com", "Impl /api(/|$)(.*) a"), ann("rewrite-target", "/$2", "x-forwarded-prefix", "/api"))
	w.ingress("v", path("vhost.com", "Prefix / a"), ann("upstream-vhost", "internal.svc"))
	e.load(w)
	s := e.do("GET", "foo.com", "/api/users").seen(t)
	if s.Path != "/users" || s.Header.Get("X-Forwarded-Prefix") != "/api" {
		t.Errorf("x-forwarded-prefix: path %s prefix %q", s.Path, s.Header.Get("X-Forwarded-Prefix"))
	}
	s = e.do("GET", "vhost.com", "/").seen(t)
	if s.Host != "internal.svc" || s.Header.Get("X-Forwarded-Host") != "vhost.com" {
		t.Errorf("upstream-vhost: Host %q X-Forwarded-Host %q", s.Host, s.Header.Get("X-Forwarded-Host"))
	}
	if s := e.do("GET", "vhost.com", "/").seen(t); s.Header.Get("X-Forwarded-Prefix") != "" {
		t.Errorf("x-forwarded-prefix without the annotation")
	}
}

func TestBackendProtocolHTTPS(t *testing.T) {
	e := newEnv(t)
	srv := newTLSBackend(t, "secure")
	w := &world{}
	w.service("s", srv)
	w.ingress("s", path("foo.com", "Prefix / s"), ann("backend-protocol", "HTTPS"))
	e.load(w)
	r := e.do("GET", "foo.com", "/x")
	if r.code != 200 {
		t.Fatalf("%d %q", r.code, r.body)
	}
	if s := r.seen(t); s.Name != "secure" || s.Header.Get("X-Tls") != "yes" {
		t.Errorf("not over TLS: %+v", s)
	}
}

func TestBodySize(t *testing.T) {
	e := newEnv(t)
	a := newBackend(t, "a", nil)
	w := &world{}
	w.service("a", a.addr)
	w.ingress("small", path("small.com", "Prefix / a"), ann("proxy-body-size", "1k"))
	w.ingress("big", path("big.com", "Prefix / a"), ann("proxy-body-size", "0"))
	w.ingress("def", path("def.com", "Prefix / a"))
	e.load(w)
	post := func(host string, n int, chunked bool) resp {
		var body io.Reader = strings.NewReader(strings.Repeat("x", n))
		if chunked {
			body = io.MultiReader(body) // unknown length: chunked
		}
		return e.doWith(e.client, e.httpURL, "POST", host, "/", body)
	}
	cases := []struct {
		host    string
		n       int
		chunked bool
		code    int
	}{
		{"small.com", 1024, false, 200},
		{"small.com", 1025, false, 413},
		{"small.com", 1000, true, 200},
		{"small.com", 5000, true, 413},
		{"def.com", 1 << 20, false, 200},
		{"def.com", 1<<20 + 1, false, 413},
		{"big.com", 3 << 20, false, 200},
	}
	for _, c := range cases {
		r := post(c.host, c.n, c.chunked)
		if r.code != c.code {
			t.Errorf("%s %d bytes (chunked %v): %d, want %d", c.host, c.n, c.chunked, r.code, c.code)
		}
		if c.code == 200 && len(r.seen(t).Body) != c.n {
			t.Errorf("%s: backend got %d bytes", c.host, len(r.seen(t).Body))
		}
	}
}

func TestTimeouts(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	defer close(release)
	slow := newBackend(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-release:
		}
	}))
	// Sends headers, then stalls in the body.
	stall := newBackend(t, "stall", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("part"))
		w.(http.Flusher).Flush()
		select {
		case <-time.After(3 * time.Second):
		case <-release:
		}
	}))
	reader := newBackend(t, "reader", nil)
	w := &world{}
	w.service("slow", slow.addr)
	w.service("stall", stall.addr)
	w.service("reader", reader.addr)
	w.ingress("slow", path("slow.com", "Prefix / slow"), ann("proxy-read-timeout", "1"))
	w.ingress("stall", path("stall.com", "Prefix / stall"), ann("proxy-read-timeout", "1"))
	w.ingress("send", path("send.com", "Prefix / reader"), ann("proxy-send-timeout", "1"))
	e.load(w)

	start := time.Now()
	if r := e.do("GET", "slow.com", "/"); r.code != 504 {
		t.Errorf("read timeout: %d", r.code)
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("504 after %v", d)
	}
	// A timeout in the body cuts the connection: the client must see an
	// error, not a short body taken for whole.
	req, _ := http.NewRequest("GET", e.httpURL+"/", nil)
	req.Host = "stall.com"
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err == nil {
		t.Errorf("stalled body ended cleanly: %q", b)
	}
	// A client sending its body slower than proxy-send-timeout.
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte("a"))
		time.Sleep(2500 * time.Millisecond)
		pw.Write([]byte("b"))
		pw.Close()
	}()
	if r := e.doWith(e.client, e.httpURL, "POST", "send.com", "/", pr); r.code != 504 {
		t.Errorf("send timeout: %d %q", r.code, r.body)
	}
}

func TestWhitelistSourceRange(t *testing.T) {
	e := newEnv(t)
	a := newBackend(t, "a", nil)
	w := &world{}
	w.service("a", a.addr)
	w.ingress("in", path("in.com", "Prefix / a"), ann("whitelist-source-range", "10.0.0.0/8, 127.0.0.1/32"))
	w.ingress("out", path("out.com", "Prefix / a"), ann("whitelist-source-range", "10.0.0.0/8,192.168.1.1"))
	e.load(w)
	if r := e.do("GET", "in.com", "/"); r.code != 200 {
		t.Errorf("allowed client: %d", r.code)
	}
	if r := e.do("GET", "out.com", "/"); r.code != 403 {
		t.Errorf("denied client: %d", r.code)
	}
	if a.count() != 1 {
		t.Errorf("backend got %d requests, want 1", a.count())
	}
}

func TestLimitRPS(t *testing.T) {
	e := newEnv(t)
	a := newBackend(t, "a", nil)
	w := &world{}
	w.service("a", a.addr)
	w.ingress("lim", path("lim.com", "Prefix / a"), ann("limit-rps", "2"))
	w.ingress("free", path("free.com", "Prefix / a"))
	e.load(w)
	ok, busy := 0, 0
	for i := 0; i < 20; i++ {
		switch r := e.do("GET", "lim.com", "/"); r.code {
		case 200:
			ok++
		case 503:
			busy++
		default:
			t.Fatalf("status %d", r.code)
		}
	}
	// 1 + burst (5 x 2) at once; maybe one more if the loop took 0.5 s.
	if ok < 11 || ok > 13 || busy == 0 {
		t.Errorf("limit-rps 2: %d passed, %d refused; want 11 passed", ok, busy)
	}
	for i := 0; i < 20; i++ {
		if r := e.do("GET", "free.com", "/"); r.code != 200 {
			t.Fatalf("unlimited route: %d", r.code)
		}
	}
	time.Sleep(time.Second)
	if r := e.do("GET", "lim.com", "/"); r.code != 200 {
		t.Errorf("after a second: %d", r.code)
	}
}

func TestLimitConnections(t *testing.T) {
	e := newEnv(t)
	hold := make(chan struct{})
	entered := make(chan struct{}, 1)
	a := newBackend(t, "a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			entered <- struct{}{}
			<-hold
		}
	}))
	w := &world{}
	w.service("a", a.addr)
	w.ingress("lim", path("lim.com", "Prefix / a"), ann("limit-connections", "1"))
	e.load(w)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if r := e.do("GET", "lim.com", "/hold"); r.code != 200 {
			t.Errorf("held request: %d", r.code)
		}
	}()
	<-entered
	if r := e.do("GET", "lim.com", "/"); r.code != 503 {
		t.Errorf("second concurrent request: %d, want 503", r.code)
	}
	close(hold)
	wg.Wait()
	if r := e.do("GET", "lim.com", "/"); r.code != 200 {
		t.Errorf("after the first finished: %d", r.code)
	}
}
