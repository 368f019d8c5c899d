package agent

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestNodeDNS runs the node DNS runner for a namespace the test made: the
// server answers on 10.96.0.10 there, untracked; it outlives the runner
// and is adopted by the next one; a ConfigMap edit is served within 2s;
// a bad edit keeps the old Corefile and is reported on the ConfigMap.
func TestNodeDNS(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tool := range []string{"nft", "dig"} {
		if _, err := os.Stat("/usr/sbin/" + tool); err != nil {
			if _, err := os.Stat("/usr/bin/" + tool); err != nil {
				testutil.SkipOrFail(t, tool+" not installed")
			}
		}
	}
	bin := filepath.Join(testutil.Binaries(t), "podnet")
	nsName, _ := testutil.NewNS(t)
	s, _ := testutil.Store(t)
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "coredns"},
		Data: map[string]string{"Corefile": ".:53 {\n    template IN TXT test.example {\n        answer \"{{ .Name }} 5 IN TXT one\"\n    }\n}\n"}}
	if err := s.Create(ctx, cm); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	start := func() context.CancelFunc {
		rctx, cancel := context.WithCancel(ctx)
		n := NewNodeDNS(NodeDNSConfig{NodeName: "n1", Binary: bin, Dir: dir, Address: "10.96.0.10", Upstream: "none",
			Source: s, Store: s, NetNS: nsName, Logger: testutil.Logger(t)})
		done := make(chan struct{})
		go func() { n.Run(rctx); close(done) }()
		return func() { cancel(); <-done }
	}
	t.Cleanup(func() {
		if b, err := os.ReadFile(filepath.Join(dir, "dns.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		testutil.InNS(nsName, "pkill", "-9", "-f", dir).Run()
	})
	dig := func() string {
		out, _ := testutil.InNS(nsName, "dig", "+short", "+time=1", "+tries=1", "@10.96.0.10", "a.test.example", "TXT").CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	waitFor := func(what, want string, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			got := dig()
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				log, _ := os.ReadFile(filepath.Join(dir, "dns.log"))
				t.Fatalf("%s: dig says %q, want %q\n%s", what, got, want, log)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	stop := start()
	waitFor("first start", `"one"`, 10*time.Second)
	pid, _ := os.ReadFile(filepath.Join(dir, "dns.pid"))

	// No conntrack entry for DNS to the node's address.
	out, _ := testutil.InNS(nsName, "cat", "/proc/net/nf_conntrack").CombinedOutput()
	if strings.Contains(string(out), "dst=10.96.0.10") {
		t.Errorf("DNS to 10.96.0.10 is tracked:\n%s", out)
	}

	// The runner goes (as an agent killed); the server keeps answering,
	// and the next runner adopts it.
	stop()
	if got := dig(); got != `"one"` {
		t.Errorf("without a runner: %q", got)
	}
	stop = start()
	defer func() { stop() }()
	time.Sleep(1500 * time.Millisecond) // a runner tick: it must adopt, not restart
	if again, _ := os.ReadFile(filepath.Join(dir, "dns.pid")); string(again) != string(pid) {
		t.Errorf("server restarted: pid %s then %s", pid, again)
	}

	// An edit is served within 2s.
	k, _ := api.ResourceFor("configmaps")
	edit := func(corefile string) {
		if _, err := s.Mutate(ctx, k, "kube-system", "coredns", func(o api.Object) error {
			o.(*corev1.ConfigMap).Data["Corefile"] = corefile
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	edit(".:53 {\n    template IN TXT test.example {\n        answer \"{{ .Name }} 5 IN TXT two\"\n    }\n}\n")
	waitFor("reload", `"two"`, 2*time.Second)

	// A bad edit: the old Corefile serves, the error is on the ConfigMap.
	edit(".:53 {\n    forwrd . 127.0.0.1\n}\n")
	deadline := time.Now().Add(5 * time.Second)
	for {
		o, err := s.Get(ctx, k, "kube-system", "coredns")
		if err != nil {
			t.Fatal(err)
		}
		if msg := o.GetAnnotations()[api.AnnotationDNSErrorPrefix+"n1"]; strings.Contains(msg, "unknown directive 'forwrd'") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no error annotation: %v", o.GetAnnotations())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := dig(); got != `"two"` {
		t.Errorf("after a bad edit: %q", got)
	}
}
