package agent

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/testutil"
)

// standInEnv makes this test binary a stand-in server: it writes its pid
// to the argument after --pidfile and sleeps until signalled.
const standInEnv = "PODNET_AGENT_TEST_STANDIN"

func init() {
	if os.Getenv(standInEnv) == "" {
		return
	}
	if i := slices.Index(os.Args, "--pidfile"); i > 0 && i+1 < len(os.Args) {
		if err := os.WriteFile(os.Args[i+1], []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			os.Exit(3)
		}
	}
	if slices.Contains(os.Args, "--die") {
		os.Exit(1)
	}
	time.Sleep(time.Hour)
	os.Exit(0)
}

// standInServer is a detached stand-in in dir with args after the binary.
func standInServer(t *testing.T, dir string, args ...string) *detached {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	pid := filepath.Join(dir, "x.pid")
	d := &detached{name: "stand-in", args: append([]string{self, "serve", "--pidfile", pid}, args...), ident: 2,
		pidFile: pid, logFile: filepath.Join(dir, "x.log"), env: []string{standInEnv + "=1"}, log: testutil.Logger(t)}
	t.Cleanup(func() {
		if b, err := os.ReadFile(pid); err == nil {
			if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				if args, ok := procArgs(p); ok && args[0] == self {
					syscall.Kill(p, syscall.SIGKILL)
				}
			}
		}
	})
	return d
}

// pidOf waits until the pid file names a live process with d's command
// line, and returns it.
func pidOf(t *testing.T, d *detached) int {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if b, err := os.ReadFile(d.pidFile); err == nil {
			if p, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				if args, ok := procArgs(p); ok && slices.Equal(args, d.args) {
					return p
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no live process of %v in its pid file", d.args)
		}
	}
}

func gone(pid int, args []string) bool {
	cur, ok := procArgs(pid)
	return !ok || !slices.Equal(cur, args)
}

// TestDetachedAdoptReplaceRestart: a second runner (a restarted agent)
// adopts the process of the first; one with another command line replaces
// it; a pid file naming another program (a recycled pid) is not adopted;
// a process that dies is started again, with a backoff when it dies young.
func TestDetachedAdoptReplaceRestart(t *testing.T) {
	dir := t.TempDir()
	d := standInServer(t, dir, "--port", "1")
	d.ensure()
	pid := pidOf(t, d)
	if pid != d.pid || !d.alive() {
		t.Fatalf("started pid %d, pid file %d, alive %v", d.pid, pid, d.alive())
	}

	// A new agent adopts it.
	d2 := standInServer(t, dir, "--port", "1")
	d2.ensure()
	if d2.pid != pid || d2.exited != nil || !d2.alive() {
		t.Fatalf("not adopted: pid %d (running %d)", d2.pid, pid)
	}
	if !d2.signal(syscall.Signal(0)) {
		t.Error("signal 0 to the adopted process failed")
	}

	// Other flags: the old one goes, a new one runs.
	d3 := standInServer(t, dir, "--port", "2")
	d3.ensure()
	if !gone(pid, d.args) {
		t.Fatalf("the process with the old flags still runs")
	}
	pid3 := pidOf(t, d3)
	if d2.alive() {
		t.Error("the old runner believes its replaced process alive")
	}

	// kill -9 of an adopted one: the next ensure starts another at once.
	d4 := standInServer(t, dir, "--port", "2")
	d4.ensure()
	if d4.pid != pid3 {
		t.Fatalf("not adopted: %d, want %d", d4.pid, pid3)
	}
	syscall.Kill(pid3, syscall.SIGKILL)
	for !gone(pid3, d3.args) {
		time.Sleep(5 * time.Millisecond)
	}
	d4.ensure()
	pid4 := pidOf(t, d4)
	if pid4 == pid3 || d4.exited == nil {
		t.Fatalf("not restarted after kill -9 (pid %d)", pid4)
	}

	// Its own child dies young: it is started again after a backoff.
	syscall.Kill(pid4, syscall.SIGKILL)
	<-d4.exitedChan()
	d4.ensure()
	if d4.pid != 0 || d4.backoff != detachedMinBackoff {
		t.Fatalf("after a young death: pid %d backoff %v, want none running and %v", d4.pid, d4.backoff, detachedMinBackoff)
	}
	time.Sleep(detachedMinBackoff)
	d4.ensure()
	if pid5 := pidOf(t, d4); pid5 == pid4 {
		t.Fatal("not started again after the backoff")
	}

	// A pid file naming another program (a recycled pid): not adopted.
	if err := os.WriteFile(d.pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d5 := standInServer(t, dir, "--port", "3")
	d5.ensure()
	if d5.pid == os.Getpid() || d5.exited == nil {
		t.Fatalf("a process of another program adopted (pid %d)", d5.pid)
	}
	pidOf(t, d5)
}

// TestDetachedBackoffGrows: a server that keeps dying at once is started
// less and less often, up to the maximum.
func TestDetachedBackoffGrows(t *testing.T) {
	d := standInServer(t, t.TempDir(), "--die")
	var got []time.Duration
	for range 7 {
		d.next = time.Time{} // skip the wait itself
		d.ensure()
		if d.exited == nil {
			t.Fatalf("not started")
		}
		<-d.exitedChan()
		d.ensure()
		got = append(got, d.backoff)
	}
	want := []time.Duration{1, 2, 4, 8, 16, 30, 30}
	for i := range want {
		want[i] *= time.Second
	}
	if !slices.Equal(got, want) {
		t.Errorf("backoffs %v, want %v", got, want)
	}
}
