package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/testutil"
	networkingv1 "k8s.io/api/networking/v1"
)

// TestIngressServer runs `podnet ingress` on 127.0.0.1 against a store
// holding an Ingress whose Service's endpoint is a test server on
// 127.0.0.1: it serves by Host header once the store is read, answers 404
// for other hosts, HTTPS with the default certificate, /healthz and
// /metrics; an edit is served at once; SIGTERM's context end lets an
// in-flight request finish; the pid file comes and goes.
func TestIngressServer(t *testing.T) {
	s, cfg := testutil.Store(t)
	ctx := context.Background()
	testutil.LoopbackService(t, s, "default", "web", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(700 * time.Millisecond)
		}
		fmt.Fprintf(w, "backend path %s\n", r.URL.Path)
	}))
	if err := s.EnsureIngressClass(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, testutil.Ingress("default", "web", "web", "a.example")); err != nil {
		t.Fatal(err)
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	httpsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	pidfile := filepath.Join(t.TempDir(), "ingress.pid")
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := runPodnet(rctx, "ingress", "--etcd-endpoints", cfg.ClientURL, "--node-name", "n1",
			"--http-addr", httpAddr, "--https-addr", httpsAddr, "--metrics-addr", metricsAddr, "--pidfile", pidfile)
		done <- result{out, err}
	}()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
	get := func(url, host string) (int, string) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = host
		res, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if code, _ := get("http://"+metricsAddr+"/healthz", ""); code == 200 {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("podnet ingress exited: %v\n%s", r.err, r.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("/healthz not 200 within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if b, err := os.ReadFile(pidfile); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("pid file: %q %v", b, err)
	}
	if code, body := get("http://"+httpAddr+"/hello", "a.example"); code != 200 || body != "backend path /hello\n" {
		t.Errorf("HTTP a.example/hello: %d %q", code, body)
	}
	if code, body := get("https://"+httpsAddr+"/hello", "a.example"); code != 200 || body != "backend path /hello\n" {
		t.Errorf("HTTPS a.example/hello: %d %q", code, body)
	}
	for _, host := range []string{"unknown.example", "b.example"} {
		if code, _ := get("http://"+httpAddr+"/", host); code != 404 {
			t.Errorf("unknown host %s: %d, want 404", host, code)
		}
	}
	// An edit: a second host is served within a second.
	ik, _ := api.ResourceFor("ingresses")
	if _, err := s.Mutate(ctx, ik, "default", "web", func(o api.Object) error {
		i := o.(*networkingv1.Ingress)
		i.Spec.Rules = append(i.Spec.Rules, networkingv1.IngressRule{Host: "b.example", IngressRuleValue: i.Spec.Rules[0].IngressRuleValue})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	edited := time.Now()
	for {
		if code, _ := get("http://"+httpAddr+"/", "b.example"); code == 200 {
			break
		}
		if time.Since(edited) > time.Second {
			t.Fatal("an edit not served within 1s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("edit served after %v", time.Since(edited).Round(10*time.Microsecond))
	_, metrics := get("http://"+metricsAddr+"/metrics", "")
	for _, want := range []string{`nginx_ingress_controller_requests{`, `host="a.example"`, `controller_pod="n1"`,
		"nginx_ingress_controller_success{", "podnet_ingress_sync_latency_seconds_bucket{", "go_goroutines"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// Shutdown with a request in flight: it finishes.
	slow := make(chan string, 1)
	go func() {
		code, body := get("http://"+httpAddr+"/slow", "a.example")
		slow <- fmt.Sprint(code, " ", body)
	}()
	time.Sleep(200 * time.Millisecond)
	stop()
	if got := <-slow; got != "200 backend path /slow\n" {
		t.Errorf("in-flight request across shutdown: %q", got)
	}
	r := <-done
	if r.err != nil {
		t.Errorf("podnet ingress: %v\n%s", r.err, r.out)
	}
	for _, want := range []string{`"msg":"request"`, `"host":"a.example"`, "first routing table swapped", "in-flight requests finished"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("output lacks %s:\n%s", want, r.out)
		}
	}
	if _, err := os.Stat(pidfile); err == nil {
		t.Error("pid file left after exit")
	}
	if _, err := net.DialTimeout("tcp", httpAddr, 200*time.Millisecond); err == nil {
		t.Error("still listening after exit")
	}
}

func TestIngressServerFlags(t *testing.T) {
	if _, err := runPodnet(context.Background(), "ingress", "--http-addr", "", "--https-addr", ""); err == nil || !strings.Contains(err.Error(), "nothing to serve") {
		t.Errorf("no listener: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = runPodnet(context.Background(), "ingress", "--http-addr", ln.Addr().String(), "--https-addr", "", "--metrics-addr", "")
	if err == nil || !strings.Contains(err.Error(), "--http-addr") || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("port taken: %v", err)
	}
}
