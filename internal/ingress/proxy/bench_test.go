package proxy

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"
)

// BenchmarkProxy: one route, a small response, clients in parallel over
// keep-alive connections; podnet's proxy against a plain
// httputil.ReverseProxy (defaults, as the peer) and one with a
// tuned transport.
func BenchmarkProxy(b *testing.B) {
	hello := []byte("hello, world\n")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(hello)
	}))
	defer up.Close()
	upURL, _ := url.Parse(up.URL)

	run := func(b *testing.B, h http.Handler) {
		front := httptest.NewServer(h)
		defer front.Close()
		tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		b.ReportAllocs()
		b.SetParallelism(16)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest("GET", front.URL+"/bench", nil)
				req.Host = "bench.com"
				res, err := c.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					b.Errorf("status %d", res.StatusCode)
					return
				}
			}
		})
	}

	b.Run("podnet", func(b *testing.B) {
		w := &world{}
		w.service("s", upURL.Host)
		w.ingress("bench", path("bench.com", "Prefix / s"))
		p := New(Options{Logger: slog.New(slog.DiscardHandler)})
		tab, _ := buildTable(w)
		p.Swap(tab)
		run(b, p)
	})
	b.Run("httputil", func(b *testing.B) {
		run(b, httputil.NewSingleHostReverseProxy(upURL))
	})
	b.Run("httputil-tuned", func(b *testing.B) {
		rp := httputil.NewSingleHostReverseProxy(upURL)
		rp.Transport = &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1024, DialContext: (&net.Dialer{}).DialContext}
		run(b, rp)
	})
}
