package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// standInEnv makes this test binary a stand-in process: it sleeps until
// killed, whatever its name and arguments, so a test can run "podnet
// agent <dir>/x" or "etcd --data-dir <dir>/x" as real command lines.
const standInEnv = "PODNET_CLUSTER_TEST_STANDIN"

func init() {
	if os.Getenv(standInEnv) != "" {
		time.Sleep(time.Hour)
		os.Exit(0)
	}
}

// standIn starts this test binary under the name bin (a symlink in a
// fresh directory) with args; it is killed when the test ends.
func standIn(t *testing.T, bin string, args ...string) int {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), bin)
	if err := os.Symlink(self, p); err != nil {
		t.Fatal(err)
	}
	c := exec.Command(p, args...)
	c.Env = append(os.Environ(), standInEnv+"=1")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	// Wait until it is past its exec: its command line is its own.
	want := append([]string{p}, args...)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if got, err := cmdline(c.Process.Pid); err == nil && slices.Equal(got, want) {
			return c.Process.Pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("stand-in %s %v never ran", bin, args)
		}
	}
}

// TestNamesDirOnlyPodnetModes: of processes naming a path under the
// cluster directory, only podnet server, agent, shim, dns and ingress and
// etcd are the cluster's; other podnet commands, other programs and processes naming
// another directory are not.
func TestNamesDirOnlyPodnetModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	other := filepath.Join(t.TempDir(), "c")
	var want []int
	for _, mode := range []string{"server", "agent", "shim"} {
		want = append(want, standIn(t, "podnet", mode, "--state-dir", filepath.Join(dir, "n1")))
	}
	// The node's DNS server and ingress proxy, by their pid files.
	want = append(want, standIn(t, "podnet", "dns", "-conf", filepath.Join(dir, "agent", "n1", "dns", "Corefile")))
	want = append(want, standIn(t, "podnet", "ingress", "--pidfile", filepath.Join(dir, "agent", "n1", "ingress", "ingress.pid"), "--http-addr", "10.0.0.1:80"))
	want = append(want, standIn(t, "podnet", "shim", filepath.Join(dir, "pods", "x")))        // a bare path argument
	want = append(want, standIn(t, EtcdBinaryName, "--data-dir="+filepath.Join(dir, "etcd"))) // --flag=value
	for _, c := range [][]string{
		{"podnet", "get", "pods", "--kubeconfig", filepath.Join(dir, "config")}, // not a long-running mode
		{"podnet", "up", "--data-dir", filepath.Join(dir, "up")},
		{"vi", filepath.Join(dir, "record.json")},                         // an editor on the cluster's file
		{"podnet", "agent", "--state-dir", filepath.Join(other, "n1")},    // another cluster
		{EtcdBinaryName, "--data-dir", filepath.Join(other, "etcd")},      // another cluster's etcd
		{"podnet", "agent", "--state-dir", filepath.Clean(dir) + "-2/n1"}, // a sibling sharing the prefix
	} {
		standIn(t, c[0], c[1:]...)
	}
	m := ProcessMatcher{Dir: dir}
	got := m.Find()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("found %v, want %v", got, want)
	}
	if pids := (ProcessMatcher{Dir: filepath.Join(t.TempDir(), "none")}).Find(); len(pids) != 0 {
		t.Errorf("an unused directory matches %v", pids)
	}
}

// TestProcessMatcherSkipsUnexecdFork: a fork that has not exec'd carries
// its parent's command line; Find must report the parent alone. A shell's
// subshell blocked in a builtin is such a fork for as long as it lives, so
// this reproduces deterministically what TestProcessMatcherEtcd hit now
// and then (the fake etcd's fork for sleep, in the moment before its
// exec). KillAll still gets both: the orphaned copy matches once its
// parent is gone.
func TestProcessMatcherSkipsUnexecdFork(t *testing.T) {
	etcd := fakeEtcdPath(t)
	dir := filepath.Join(t.TempDir(), "c")
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	arg := filepath.Join(dir, "etcd", "etcd1", "data")
	// The subshell reads from the pipe, which never has data: it forks
	// nothing and never execs; the parent waits for it.
	c := exec.Command(etcd, "-c", "(read x; :); read y", arg)
	c.Stdin = r
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	want := []string{etcd, "-c", "(read x; :); read y", arg}
	var copies []int
	for deadline := time.Now().Add(10 * time.Second); len(copies) < 2; time.Sleep(5 * time.Millisecond) {
		copies = copies[:0]
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			var pid int
			if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
				continue
			}
			if got, err := cmdline(pid); err == nil && slices.Equal(got, want) {
				copies = append(copies, pid)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the shell's subshell never appeared: %v", copies)
		}
	}
	var child int
	for _, p := range copies {
		if p != c.Process.Pid {
			child = p
		}
	}
	if pp, err := procPPID(child); err != nil || pp != c.Process.Pid {
		t.Fatalf("copy %d has parent %d (%v), want %d", child, pp, err, c.Process.Pid)
	}
	m := ProcessMatcher{Dir: dir}
	if got := m.Find(); !slices.Equal(got, []int{c.Process.Pid}) {
		t.Fatalf("found %v, want only the parent %d (not its fork %d)", got, c.Process.Pid, child)
	}
	if n, err := m.KillAll(10 * time.Second); err != nil || n != 2 {
		t.Fatalf("KillAll: killed %d (want the parent and its fork), %v", n, err)
	}
	if pids := m.Find(); len(pids) != 0 {
		t.Errorf("left after KillAll: %v", pids)
	}
}
