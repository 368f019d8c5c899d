package proxy

import (
	"bufio"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzServeHTTP feeds arbitrary request heads (method, target, Host and
// other fields) through the whole request path against a table using
// most annotations: it must never panic, and answer with a status from a
// known set.
func FuzzServeHTTP(f *testing.F) {
	a := newBackend(f, "a", nil)
	w := &world{}
	w.service("a", a.addr, deadAddr(f))
	w.service("can", a.addr)
	w.service("empty")
	w.secret(f, "tls", "secure.com", "secure.com")
	w.ingress("plain", path("foo.com", "Prefix /app a"), path("foo.com", "Exact /exact a"), path("*.wild.com", "Prefix / a"))
	w.ingress("can", path("foo.com", "Prefix /app can"), ann("canary", "true", "canary-by-header", "X-Canary", "canary-by-cookie", "c", "canary-weight", "30"))
	w.ingress("re", path("re.com", "Impl /v(\\d+)/(.*) a"), ann("rewrite-target", "/$2/$1?x=$1", "x-forwarded-prefix", "/v"))
	w.ingress("cors", path("cors.com", "Prefix / a"), ann("enable-cors", "true", "cors-allow-origin", "https://*.ok.com", "affinity", "cookie"))
	w.ingress("lim", path("lim.com", "Prefix / a"), ann("limit-rps", "1000", "limit-connections", "100", "whitelist-source-range", "127.0.0.0/8,::1", "proxy-body-size", "10"))
	w.ingress("tls", path("secure.com", "Prefix / a"), tlsHosts("tls", "secure.com"), ann("app-root", "/home"))
	w.ingress("down", path("down.com", "Prefix / empty"), ann("custom-http-errors", "503"))
	w.ingress("def", defaultBackend("a"))
	p := New(Options{Logger: slog.New(slog.DiscardHandler)})
	tab, _ := buildTable(w)
	p.Swap(tab)

	seeds := []string{
		"GET /app/x HTTP/1.1\r\nHost: foo.com\r\n\r\n",
		"GET /exact?q=1 HTTP/1.1\r\nHost: FOO.com:80\r\nX-Canary: always\r\n\r\n",
		"OPTIONS / HTTP/1.1\r\nHost: cors.com\r\nOrigin: https://a.ok.com\r\n\r\n",
		"GET /v2/a%2Fb/c HTTP/1.1\r\nHost: re.com\r\nCookie: INGRESSCOOKIE=zz\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: lim.com\r\nContent-Length: 20\r\n\r\n01234567890123456789",
		"GET / HTTP/1.1\r\nHost: secure.com\r\nConnection: Upgrade, X-Foo\r\nUpgrade: websocket\r\n\r\n",
		"GET http://other.com/x HTTP/1.1\r\nHost: foo.com\r\n\r\n",
		"GET * HTTP/1.1\r\nHost: down.com\r\n\r\n",
		"PUT /%zz HTTP/1.1\r\nHost: [::1]:80\r\nX-Forwarded-For: a, b\r\nTe: trailers\r\n\r\n",
	}
	for _, s := range seeds {
		f.Add(s, "127.0.0.1:5555")
	}
	f.Add(seeds[0], "[::1]:1")
	f.Add(seeds[4], "10.0.0.1:1")
	known := map[int]bool{200: true, 204: true, 301: true, 302: true, 308: true, 400: true, 403: true, 404: true, 413: true, 502: true, 503: true}
	f.Fuzz(func(t *testing.T, head, remote string) {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(head)))
		if err != nil {
			return
		}
		req.RemoteAddr = remote
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		if !known[rec.Code] {
			t.Fatalf("status %d for %q from %q", rec.Code, head, remote)
		}
	})
}
