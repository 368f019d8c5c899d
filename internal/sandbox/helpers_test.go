package sandbox

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/resolvconf"
	"github.com/podnet/podnet/internal/shim"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const fixtureResolv = "nameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch example.test\n"

func resolvconfFixture(t *testing.T) resolvconf.Config {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(p, []byte(fixtureResolv), 0o644); err != nil {
		t.Fatal(err)
	}
	return resolvconf.Config{HostResolvConf: p}
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var uidSeq int

// testPod is a pod with one container "main" running a shell script.
func testPod(name string, policy corev1.RestartPolicy, script string) *corev1.Pod {
	uidSeq++
	grace := int64(2)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name,
			UID: types.UID(name + "-" + time.Now().Format("150405.000000000") + "-" + string(rune('a'+uidSeq%26)))},
		Spec: corev1.PodSpec{
			RestartPolicy:                 policy,
			TerminationGracePeriodSeconds: &grace,
			Containers:                    []corev1.Container{{Name: "main", Command: []string{"/bin/sh", "-c", script}}},
		},
	}
}

func waitPhase(t *testing.T, m *Manager, uid types.UID, cond func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var st Status
	var err error
	for time.Now().Before(deadline) {
		st, err = m.Status(uid)
		if err == nil && cond(st) {
			return st
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("timed out; last status %+v err %v", st, err)
	return st
}

func waitLog(t *testing.T, path, want string) string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var b []byte
	for time.Now().Before(deadline) {
		b, _ = os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return string(b)
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("log %s never contained %q:\n%s", path, want, b)
	return ""
}

func containerPID(t *testing.T, m *Manager, uid types.UID, name string) int {
	t.Helper()
	st, err := shim.ReadState(m.containerDir(uid, name))
	if err != nil {
		t.Fatal(err)
	}
	return st.PID
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	for i := 0; i < 100; i++ {
		if syscall.Kill(pid, 0) != nil {
			return false
		}
		// A zombie still answers kill 0; it is dead for our purposes.
		if b, err := os.ReadFile("/proc/" + itoa(pid) + "/stat"); err == nil {
			s := string(b)
			if i := strings.LastIndexByte(s, ')'); i > 0 && strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z") {
				return false
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

func itoa(i int) string { return strconv.Itoa(i) }

func typesUID(s string) types.UID { return types.UID(s) }
