package proxy

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
)

// series finds a metric's series whose labels include want.
func gather(t *testing.T, e *env, name string, want map[string]string) []*dto.Metric {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []*dto.Metric
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.Metric {
			got := map[string]string{}
			for _, l := range m.Label {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			out = append(out, m)
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	a := newBackend(t, "a", nil)
	w := &world{}
	w.service("a", a.addr)
	w.ingress("web", path("foo.com", "Prefix /app a"))
	e.load(w)
	for i := 0; i < 3; i++ {
		e.do("GET", "foo.com", "/app/"+strings.Repeat("x", i)) // distinct paths, one series
	}
	e.do("POST", "foo.com", "/app")
	e.do("GET", "nohost.com", "/")
	labels := map[string]string{
		"controller_class": "podnet.io/ingress-controller", "controller_namespace": "podnet-system", "controller_pod": "node-1",
		"host": "foo.com", "ingress": "web", "namespace": "default", "path": "/app", "service": "a", "method": "GET", "status": "200", "canary": "",
	}
	got := gather(t, e, "nginx_ingress_controller_requests", labels)
	if len(got) != 1 || got[0].GetCounter().GetValue() != 3 {
		t.Fatalf("requests{GET 200}: %v", got)
	}
	for _, name := range []string{"nginx_ingress_controller_request_duration_seconds", "nginx_ingress_controller_response_duration_seconds",
		"nginx_ingress_controller_request_size", "nginx_ingress_controller_response_size", "nginx_ingress_controller_bytes_sent"} {
		h := gather(t, e, name, labels)
		if len(h) != 1 || h[0].GetHistogram().GetSampleCount() != 3 {
			t.Errorf("%s: %v", name, h)
		}
	}
	if got := gather(t, e, "nginx_ingress_controller_requests", map[string]string{"method": "POST", "path": "/app"}); len(got) != 1 {
		t.Errorf("POST series: %v", got)
	}
	if got := gather(t, e, "nginx_ingress_controller_requests", map[string]string{"status": "404", "ingress": "", "path": ""}); len(got) != 1 {
		t.Errorf("404 series: %v", got)
	}
	// Odd methods fold into one label value.
	e.do("BREW", "foo.com", "/app")
	e.do("PROPFIND", "foo.com", "/app")
	if got := gather(t, e, "nginx_ingress_controller_requests", map[string]string{"method": "OTHER", "path": "/app"}); len(got) != 1 || got[0].GetCounter().GetValue() != 2 {
		t.Errorf("OTHER series: %v", got)
	}
	// A removed Ingress's series go.
	e.load(&world{})
	if got := gather(t, e, "nginx_ingress_controller_requests", map[string]string{"ingress": "web"}); len(got) != 0 {
		t.Errorf("series of a removed Ingress remain: %d", len(got))
	}
}

func TestAccessLog(t *testing.T) {
	e := newEnv(t)
	a := newBackend(t, "a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(201)
		w.Write([]byte("12345"))
	}))
	w := &world{}
	w.service("a", a.addr)
	w.ingress("web", path("foo.com", "Prefix / a"))
	e.load(w)
	e.do("PUT", "foo.com", "/logged?secret=1", "X-Request-Id", "rid-1")
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not JSON: %q", l)
		}
		if m["path"] == "/logged" {
			if line != nil {
				t.Fatalf("two lines for one request")
			}
			line = m
		}
	}
	if line == nil {
		t.Fatalf("no access log line:\n%s", e.logs.String())
	}
	want := map[string]any{"msg": "request", "host": "foo.com", "method": "PUT", "status": 201.0, "upstream_status": 201.0, "upstream_addr": a.addr,
		"bytes": 5.0, "request_id": "rid-1", "namespace": "default", "ingress": "web", "service": "a", "remote_addr": "127.0.0.1"}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("%s = %v, want %v", k, line[k], v)
		}
	}
	for _, k := range []string{"request_time", "upstream_response_time", "time"} {
		if _, ok := line[k]; !ok {
			t.Errorf("no %s", k)
		}
	}
}
