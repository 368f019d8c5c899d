package agent

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/testutil"
)

func TestNodeIngressArgs(t *testing.T) {
	n, err := NewNodeIngress(NodeIngressConfig{NodeName: "n1", NodeIP: "10.0.0.5", Binary: "/bin/podnet", Dir: "/s/n1/ingress"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/bin/podnet", "ingress", "--pidfile", "/s/n1/ingress/ingress.pid", "--node-name", "n1",
		"--http-addr", "10.0.0.5:80", "--https-addr", "10.0.0.5:443", "--metrics-addr", "10.0.0.5:10254"}
	if !slices.Equal(n.server.args, want) {
		t.Errorf("args %q\nwant %q", n.server.args, want)
	}
	n, _ = NewNodeIngress(NodeIngressConfig{NodeName: "n1", NodeIP: "fd00::5", HTTPPort: 8080, HTTPSPort: 8443, MetricsPort: -1, Binary: "/bin/podnet", Dir: "/d"})
	if got := strings.Join(n.server.args[6:], " "); got != "--http-addr [fd00::5]:8080 --https-addr [fd00::5]:8443 --metrics-addr " {
		t.Errorf("IPv6, other ports, no metrics: %q", got)
	}
	for _, c := range []NodeIngressConfig{{NodeIP: "nope"}, {NodeIP: "10.0.0.5", HTTPPort: 70000}} {
		if _, err := NewNodeIngress(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

// TestNodeIngress runs the node ingress runner with the real `podnet
// ingress` on 127.0.0.1 (a backend on 127.0.0.1 too) under a steady load:
// the proxy serves; the runner stopped (the agent gone) or replaced by a
// new one (the agent restarted) fails no request, and the new runner
// adopts the proxy instead of starting another; a proxy killed with -9 is
// started again; at the end, the proxy still runs without any runner.
func TestNodeIngress(t *testing.T) {
	if testing.Short() {
		t.Skip("runs podnet ingress processes")
	}
	bin := filepath.Join(testutil.Binaries(t), "podnet")
	s, cfg := testutil.Store(t)
	ctx := context.Background()
	testutil.LoopbackService(t, s, "default", "web", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "backend path %s\n", r.URL.Path)
	}))
	if err := s.EnsureIngressClass(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, testutil.Ingress("default", "web", "web", "a.example")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	httpPort, httpsPort := testutil.FreePort(t), testutil.FreePort(t)
	conf := NodeIngressConfig{NodeName: "n1", NodeIP: "127.0.0.1", HTTPPort: httpPort, HTTPSPort: httpsPort, MetricsPort: -1,
		Binary: bin, Dir: dir, Env: []string{"PODNET_ETCD_ENDPOINTS=" + cfg.ClientURL}, Logger: testutil.Logger(t)}
	pidFile := filepath.Join(dir, "ingress.pid")
	readPid := func() int {
		b, _ := os.ReadFile(pidFile)
		p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return p
	}
	t.Cleanup(func() {
		if p := readPid(); p > 0 {
			if args, ok := procArgs(p); ok && len(args) > 1 && args[1] == "ingress" {
				syscall.Kill(p, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "ingress.log"))
			t.Logf("ingress.log:\n%s", lastLogLines(string(log), 40))
		}
	})
	startRunner := func() context.CancelFunc {
		n, err := NewNodeIngress(conf)
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { n.Run(rctx); close(done) }()
		return func() { cancel(); <-done }
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/hello", httpPort)
	client := &http.Client{Timeout: 3 * time.Second}
	get := func() (int, string) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = "a.example"
		res, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	waitServing := func(what string) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			code, body := get()
			if code == 200 && body == "backend path /hello\n" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not serving: %d %q", what, code, body)
			}
		}
	}

	stop := startRunner()
	waitServing("first start")
	pid := readPid()

	// A steady load while the agent goes and comes back.
	var total, failed atomic.Int64
	var firstErr sync.Once
	loadDone := make(chan struct{})
	quit := make(chan struct{})
	go func() {
		defer close(loadDone)
		for {
			select {
			case <-quit:
				return
			default:
			}
			code, body := get()
			total.Add(1)
			if code != 200 {
				failed.Add(1)
				firstErr.Do(func() { t.Logf("first failed request: %d %q", code, body) })
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	waitLoad := func(n int64) {
		from := total.Load()
		for total.Load() < from+n {
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitLoad(20)
	stop() // the agent stops (or is killed): the proxy stays
	waitLoad(50)
	stop = startRunner() // a new agent
	time.Sleep(1500 * time.Millisecond)
	if p := readPid(); p != pid {
		t.Errorf("the new runner started another proxy (pid %d, was %d)", p, pid)
	}
	waitLoad(50)
	close(quit)
	<-loadDone
	t.Logf("%d requests across the runner's stop and restart, %d failed", total.Load(), failed.Load())
	if failed.Load() != 0 || total.Load() < 100 {
		t.Errorf("%d of %d requests failed across the runner's stop and restart", failed.Load(), total.Load())
	}

	// kill -9 of the proxy: the runner starts another.
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	waitServing("after kill -9 of the proxy")
	if p := readPid(); p == pid || p == 0 {
		t.Errorf("pid file after the restart: %d (killed %d)", p, pid)
	}
	t.Logf("serving again %v after kill -9", time.Since(killed).Round(time.Millisecond))
	stop()
	if code, _ := get(); code != 200 {
		t.Errorf("without a runner: %d", code)
	}
}

func lastLogLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
