package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	out := `Running 10s test @ http://127.0.0.1:8080/
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.61ms  812.22us  28.65ms   88.30%
    Req/Sec    20.27k     1.48k   23.44k    71.00%
  Latency Distribution
     50%    1.46ms
     75%    1.81ms
     90%    2.37ms
     99%    4.52ms
  403412 requests in 10.00s, 57.33MB read
  Socket errors: connect 0, read 3, write 0, timeout 0
  Non-2xx or 3xx responses: 12
Requests/sec:  40331.18
Transfer/sec:      5.73MB
`
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.rps != 40331.18 || r.p99 != 4520*time.Microsecond {
		t.Errorf("rps %v p99 %v", r.rps, r.p99)
	}
	if !strings.Contains(r.errs, "read 3") || !strings.Contains(r.errs, "Non-2xx or 3xx responses: 12") {
		t.Errorf("errs %q", r.errs)
	}
	for _, p99 := range []struct {
		s    string
		want time.Duration
	}{{"812.00us", 812 * time.Microsecond}, {"1.20s", 1200 * time.Millisecond}} {
		r, err := parseWrk(strings.Replace(out, "4.52ms", p99.s, 1))
		if err != nil || r.p99 != p99.want {
			t.Errorf("p99 %s: %v, %v", p99.s, r.p99, err)
		}
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused"); err == nil {
		t.Error("wrk failure parsed")
	}
}

// The nginx config has one server block per host with its upstream, and
// nginx accepts it.
func TestNginxConf(t *testing.T) {
	tab, err := buildTable(3, "127.0.0.1:9")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := nginxConf(tab, dir, "1", "127.0.0.1:18000", "127.0.0.1:18443", filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), "")
	for _, want := range []string{
		"worker_processes 1;", "access_log off;",
		"upstream bench-svc0001-80 {\n        server 127.0.0.1:9 max_fails=0;\n        keepalive 320;",
		"server_name h0002.bench.test;", "location / {\n            proxy_pass http://bench-svc0002-80;",
		"listen 127.0.0.1:18443 ssl default_server;",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
	if n := strings.Count(conf, "server_name "); n != 3 {
		t.Errorf("%d server_name lines, want 3", n)
	}
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Skip("nginx not installed: config not checked by nginx -t")
	}
	if _, _, err := writeCert(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("nginx", "-t", "-q", "-p", dir, "-c", "nginx.conf").CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v: %s", err, out)
	}
}

// The httputil peer routes by host to the backend and answers 404 for
// other hosts.
func TestHTTPUtilHandler(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "up "+r.Host+" "+r.Header.Get("X-Forwarded-Host"))
	}))
	defer up.Close()
	tab, err := buildTable(3, strings.TrimPrefix(up.URL, "http://"), "extra.bench.test")
	if err != nil {
		t.Fatal(err)
	}
	h, err := httputilHandler(tab)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(h)
	defer front.Close()
	c := front.Client()
	for host, want := range map[string]string{
		"h0001.bench.test": "up h0001.bench.test h0001.bench.test",
		"extra.bench.test": "up extra.bench.test extra.bench.test",
	} {
		body, code, err := get(c, front.URL+"/x/y", host)
		if err != nil || code != 200 || body != want {
			t.Errorf("%s: %d %q %v, want 200 %q", host, code, body, err, want)
		}
	}
	if _, code, err := get(c, front.URL+"/", "h0003.bench.test"); err != nil || code != 404 {
		t.Errorf("unknown host: %d %v, want 404", code, err)
	}
}
