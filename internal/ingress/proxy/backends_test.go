package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRoundRobin(t *testing.T) {
	e := newEnv(t)
	bs := []*backend{newBackend(t, "a", nil), newBackend(t, "b", nil), newBackend(t, "c", nil)}
	w := &world{}
	w.service("s", bs[0].addr, bs[1].addr, bs[2].addr)
	w.ingress("rr", path("foo.com", "Prefix / s"))
	e.load(w)
	for i := 0; i < 30; i++ {
		if r := e.do("GET", "foo.com", "/"); r.code != 200 {
			t.Fatalf("%d", r.code)
		}
	}
	for _, b := range bs {
		if b.count() != 10 {
			t.Errorf("%s got %d of 30", b.name, b.count())
		}
	}
}

func TestRetryDeadEndpoint(t *testing.T) {
	e := newEnv(t)
	a := newBackend(t, "a", nil)
	w := &world{}
	w.service("s", deadAddr(t), a.addr, deadAddr(t))
	w.ingress("r", path("foo.com", "Prefix / s"))
	e.load(w)
	for i := 0; i < 30; i++ {
		method := "GET"
		if i%2 == 1 {
			method = "POST" // not idempotent: retried all the same, nothing was sent
		}
		if r := e.doWith(e.client, e.httpURL, method, "foo.com", "/", strings.NewReader("body")); r.code != 200 || r.seen(t).Body != "body" {
			t.Fatalf("request %d (%s): %d %q", i, method, r.code, r.body)
		}
	}
	if a.count() != 30 {
		t.Errorf("live endpoint got %d of 30", a.count())
	}
	// All dead: 502.
	w2 := &world{}
	w2.service("s", deadAddr(t), deadAddr(t))
	w2.ingress("r", path("foo.com", "Prefix / s"))
	e.load(w2)
	if r := e.do("GET", "foo.com", "/"); r.code != 502 {
		t.Errorf("all endpoints dead: %d", r.code)
	}
	if !strings.Contains(e.logs.String(), `"upstream_addr":"127.0.0.1:`) || !strings.Contains(e.logs.String(), ", 127.0.0.1:") {
		t.Errorf("access log does not list the endpoints tried")
	}
}

func TestEndpointStates(t *testing.T) {
	e := newEnv(t)
	ready, term := newBackend(t, "ready", nil), newBackend(t, "term", nil)
	w := &world{}
	w.service("s")
	w.endpoint("s", ready.addr, true, false)
	w.endpoint("s", term.addr, false, true)
	w.ingress("r", path("foo.com", "Prefix / s"))
	e.load(w)
	for i := 0; i < 10; i++ {
		if s := e.do("GET", "foo.com", "/").seen(t); s.Name != "ready" {
			t.Fatalf("terminating endpoint got a request while a ready one exists")
		}
	}
	// Only the terminating one left: it drains what comes.
	w2 := &world{}
	w2.service("s")
	w2.endpoint("s", term.addr, false, true)
	w2.ingress("r", path("foo.com", "Prefix / s"))
	e.load(w2)
	if s := e.do("GET", "foo.com", "/").seen(t); s.Name != "term" {
		t.Errorf("got %s", s.Name)
	}
	// None: 503, and the reason in the log.
	w3 := &world{}
	w3.service("s")
	w3.ingress("r", path("foo.com", "Prefix / s"))
	w3.ingress("m", path("missing.com", "Prefix / nosuch"))
	e.load(w3)
	if r := e.do("GET", "foo.com", "/"); r.code != 503 {
		t.Errorf("no endpoints: %d", r.code)
	}
	if r := e.do("GET", "missing.com", "/"); r.code != 503 {
		t.Errorf("missing service: %d", r.code)
	}
	if !strings.Contains(e.logs.String(), "nosuch not found") {
		t.Errorf("missing Service not logged: %s", e.logs.String())
	}
}

func TestEWMA(t *testing.T) {
	e := newEnv(t)
	fast := newBackend(t, "fast", nil)
	slow := newBackend(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
	}))
	w := &world{}
	w.service("s", fast.addr, slow.addr)
	w.ingress("r", path("foo.com", "Prefix / s"), ann("load-balance", "ewma"))
	e.load(w)
	for i := 0; i < 60; i++ {
		e.do("GET", "foo.com", "/")
	}
	if fast.count() < 45 {
		t.Errorf("ewma: fast %d, slow %d of 60", fast.count(), slow.count())
	}
}

func TestAffinity(t *testing.T) {
	e := newEnv(t)
	a, b := newBackend(t, "a", nil), newBackend(t, "b", nil)
	w := &world{}
	w.service("s", a.addr, b.addr)
	w.ingress("r", path("foo.com", "Prefix /app s"), ann("affinity", "cookie", "session-cookie-name", "route", "session-cookie-max-age", "60"))
	e.load(w)
	r := e.do("GET", "foo.com", "/app/x")
	ck := r.header.Get("Set-Cookie")
	if !strings.HasPrefix(ck, "route=") || !strings.Contains(ck, "Path=/app") || !strings.Contains(ck, "Max-Age=60") || !strings.Contains(ck, "HttpOnly") {
		t.Fatalf("Set-Cookie %q", ck)
	}
	first := r.seen(t).Name
	cookie := strings.SplitN(ck, ";", 2)[0]
	for i := 0; i < 10; i++ {
		r := e.do("GET", "foo.com", "/app/y", "Cookie", cookie)
		if r.seen(t).Name != first {
			t.Fatalf("request %d with the cookie went to %s, not %s", i, r.seen(t).Name, first)
		}
		if r.header.Get("Set-Cookie") != "" {
			t.Fatalf("cookie set again although valid")
		}
	}
	// session-cookie-path sets the cookie's Path instead of the route's.
	w3 := &world{}
	w3.service("s", a.addr, b.addr)
	w3.ingress("r", path("foo.com", "Prefix /app s"), ann("affinity", "cookie", "session-cookie-name", "sticky", "session-cookie-path", "/"))
	e.load(w3)
	if ck := e.do("GET", "foo.com", "/app/z").header.Get("Set-Cookie"); !strings.HasPrefix(ck, "sticky=") || !strings.Contains(ck, "Path=/;") && !strings.HasSuffix(ck, "Path=/") {
		t.Errorf("session-cookie-path: Set-Cookie %q", ck)
	}
	e.load(w)
	// A cookie naming no endpoint is replaced.
	r = e.do("GET", "foo.com", "/app", "Cookie", "route=stale")
	if r.code != 200 || !strings.HasPrefix(r.header.Get("Set-Cookie"), "route=") {
		t.Errorf("stale cookie: %d %q", r.code, r.header.Get("Set-Cookie"))
	}
	// After a retry past a dead endpoint the cookie names the one that
	// answered.
	w2 := &world{}
	w2.service("s", deadAddr(t), a.addr)
	w2.ingress("r", path("foo.com", "Prefix /app s"), ann("affinity", "cookie", "session-cookie-name", "route"))
	e.load(w2)
	for i := 0; i < 4; i++ {
		r := e.do("GET", "foo.com", "/app")
		ck := strings.SplitN(r.header.Get("Set-Cookie"), ";", 2)[0]
		if r.code != 200 || ck == "" {
			t.Fatalf("%d %q", r.code, ck)
		}
		if r := e.do("GET", "foo.com", "/app", "Cookie", ck); r.header.Get("Set-Cookie") != "" || r.seen(t).Name != "a" {
			t.Errorf("cookie %s from a retried request does not name the live endpoint", ck)
		}
	}
}

func TestCanary(t *testing.T) {
	e := newEnv(t)
	main, can := newBackend(t, "main", nil), newBackend(t, "canary", nil)
	w := &world{}
	w.service("main", main.addr)
	w.service("canary", can.addr)
	w.ingress("h", path("hdr.com", "Prefix / main"))
	w.ingress("h-canary", path("hdr.com", "Prefix / canary"), ann("canary", "true", "canary-by-header", "X-Canary", "canary-by-cookie", "use_canary"))
	w.ingress("v", path("val.com", "Prefix / main"))
	w.ingress("v-canary", path("val.com", "Prefix / canary"), ann("canary", "true", "canary-by-header", "X-Canary", "canary-by-header-value", "yes-please"))
	w.ingress("w", path("all.com", "Prefix / main"))
	w.ingress("w-canary", path("all.com", "Prefix / canary"), ann("canary", "true", "canary-weight", "100"))
	w.ingress("half", path("half.com", "Prefix / main"))
	w.ingress("half-canary", path("half.com", "Prefix / canary"), ann("canary", "true", "canary-weight", "50", "canary-by-header", "X-Canary"))
	e.load(w)
	cases := []struct {
		host string
		hdr  []string
		want string
	}{
		{"hdr.com", nil, "main"},
		{"hdr.com", []string{"X-Canary", "always"}, "canary"},
		{"hdr.com", []string{"X-Canary", "never"}, "main"},
		{"hdr.com", []string{"X-Canary", "other"}, "main"},
		{"hdr.com", []string{"Cookie", "use_canary=always"}, "canary"},
		{"hdr.com", []string{"Cookie", "use_canary=never"}, "main"},
		{"hdr.com", []string{"X-Canary", "never", "Cookie", "use_canary=always"}, "main"},
		{"val.com", []string{"X-Canary", "yes-please"}, "canary"},
		{"val.com", []string{"X-Canary", "always"}, "main"},
		{"all.com", nil, "canary"},
		{"half.com", []string{"X-Canary", "never"}, "main"},
		{"half.com", []string{"X-Canary", "always"}, "canary"},
	}
	for _, c := range cases {
		for i := 0; i < 5; i++ {
			if s := e.do("GET", c.host, "/", c.hdr...).seen(t); s.Name != c.want {
				t.Errorf("%s %v: %s, want %s", c.host, c.hdr, s.Name, c.want)
				break
			}
		}
	}
	n := 0
	for i := 0; i < 200; i++ {
		if e.do("GET", "half.com", "/").seen(t).Name == "canary" {
			n++
		}
	}
	if n < 60 || n > 140 {
		t.Errorf("canary-weight 50: %d of 200 to the canary", n)
	}
	if !strings.Contains(e.logs.String(), `"canary":"default-canary-80"`) {
		t.Errorf("canary not in the access log")
	}
}

func TestCORS(t *testing.T) {
	e := newEnv(t)
	a := newBackend(t, "a", nil)
	w := &world{}
	w.service("a", a.addr)
	w.ingress("any", path("any.com", "Prefix / a"), ann("enable-cors", "true"))
	w.ingress("list", path("list.com", "Prefix / a"), ann("enable-cors", "true", "cors-allow-origin", "https://app.example, https://*.example.org",
		"cors-allow-methods", "GET, POST", "cors-allow-headers", "X-Custom", "cors-expose-headers", "X-Exposed", "cors-max-age", "600", "cors-allow-credentials", "false"))
	e.load(w)

	r := e.do("OPTIONS", "any.com", "/x", "Origin", "https://whoever.example", "Access-Control-Request-Method", "PUT")
	if r.code != 204 || r.header.Get("Access-Control-Allow-Origin") != "*" || r.header.Get("Access-Control-Max-Age") != "1728000" ||
		r.header.Get("Access-Control-Allow-Credentials") != "true" || !strings.Contains(r.header.Get("Access-Control-Allow-Methods"), "PATCH") {
		t.Errorf("preflight: %d %v", r.code, r.header)
	}
	if a.count() != 0 {
		t.Errorf("preflight reached the backend")
	}
	r = e.do("GET", "any.com", "/x", "Origin", "https://whoever.example")
	if r.code != 200 || r.header.Get("Access-Control-Allow-Origin") != "*" || r.header.Get("X-Backend") != "a" {
		t.Errorf("GET: %d %v", r.code, r.header)
	}

	r = e.do("OPTIONS", "list.com", "/", "Origin", "https://app.example")
	if r.code != 204 || r.header.Get("Access-Control-Allow-Origin") != "https://app.example" || r.header.Get("Access-Control-Allow-Methods") != "GET, POST" ||
		r.header.Get("Access-Control-Allow-Headers") != "X-Custom" || r.header.Get("Access-Control-Max-Age") != "600" || r.header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("preflight from a listed origin: %d %v", r.code, r.header)
	}
	r = e.do("GET", "list.com", "/", "Origin", "https://sub.example.org")
	if r.header.Get("Access-Control-Allow-Origin") != "https://sub.example.org" || r.header.Get("Access-Control-Expose-Headers") != "X-Exposed" {
		t.Errorf("wildcard origin: %v", r.header)
	}
	r = e.do("GET", "list.com", "/", "Origin", "https://evil.example")
	if r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("unlisted origin got CORS headers: %v", r.header)
	}
	// An unlisted origin's OPTIONS is the backend's business.
	if r := e.do("OPTIONS", "list.com", "/", "Origin", "https://evil.example"); r.code != 200 || r.header.Get("X-Backend") != "a" {
		t.Errorf("unlisted preflight: %d", r.code)
	}
}

func TestCustomHTTPErrors(t *testing.T) {
	e := newEnv(t)
	app := newBackend(t, "app", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			http.Error(w, "app 404", 404)
		case "/teapot":
			http.Error(w, "app 418", 418)
		default:
			w.Write([]byte("app ok"))
		}
	}))
	errs := newBackend(t, "errors", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code := r.Header.Get("X-Code")
		w.Header().Set("X-Seen", strings.Join([]string{r.Method, r.URL.Path, r.Header.Get("X-Code"), r.Header.Get("X-Format"), r.Header.Get("X-Original-Uri"),
			r.Header.Get("X-Namespace"), r.Header.Get("X-Ingress-Name"), r.Header.Get("X-Service-Name"), r.Header.Get("X-Service-Port"), r.Host}, "|"))
		w.WriteHeader(404)
		w.Write([]byte("custom page for " + code))
	}))
	w := &world{}
	w.service("app", app.addr)
	w.service("errors", errs.addr)
	w.ingress("web", path("foo.com", "Prefix / app"), ann("custom-http-errors", "404,503", "default-backend", "errors"))
	w.ingress("down", path("down.com", "Prefix / empty"), ann("default-backend", "errors"))
	w.service("empty")
	e.load(w)

	r := e.do("POST", "foo.com", "/missing?q=1", "Accept", "text/html")
	if r.code != 404 || r.body != "custom page for 404" {
		t.Fatalf("custom error: %d %q", r.code, r.body)
	}
	if got, want := r.header.Get("X-Seen"), "GET|/|404|text/html|/missing?q=1|default|web|app|80|foo.com"; got != want {
		t.Errorf("error backend saw %q, want %q", got, want)
	}
	if r := e.do("GET", "foo.com", "/teapot"); r.code != 418 || r.body != "app 418\n" {
		t.Errorf("code not in the list: %d %q", r.code, r.body)
	}
	if r := e.do("GET", "foo.com", "/"); r.body != "app ok" {
		t.Errorf("ok: %q", r.body)
	}
	// default-backend also takes requests for a Service without endpoints.
	if r := e.do("GET", "down.com", "/x"); r.code != 404 || !strings.HasPrefix(r.body, "custom page") {
		t.Errorf("no endpoints, default-backend: %d %q", r.code, r.body)
	}
}
