// Package e2e drives the real podnet binaries end to end: `podnet up` runs
// as a node inside a network namespace the test creates, an "external host"
// namespace sits on the node's uplink, and the CLI talks to the node's
// store. Nothing touches the root namespace's links, routes or rules.
package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/testutil"
	corev1 "k8s.io/api/core/v1"
)

const (
	nodeIP = "192.168.77.1"
	extIP  = "192.168.77.2"
	uplink = "pnup0"
)

// node is one podnet node (`podnet up`) in a namespace, with an external
// host on its uplink.
type node struct {
	t        *testing.T
	bin      string
	ns, path string
	ext      string
	extPath  string
	dir      string
	up       *exec.Cmd
	upLog    *bytes.Buffer
	upExited chan struct{}
}

func newNode(t *testing.T) *node {
	testutil.RequireRoot(t)
	n := &node{t: t, bin: testutil.Binaries(t), dir: t.TempDir()}
	n.ns, n.path = testutil.NewNS(t)
	n.ext, n.extPath = testutil.NewNS(t)
	peer := testutil.UniqueName("pnx", 0)
	testutil.Run(t, "ip", "-n", n.ns, "link", "add", uplink, "type", "veth", "peer", "name", peer, "netns", n.ext)
	testutil.Run(t, "ip", "-n", n.ns, "addr", "add", nodeIP+"/24", "dev", uplink)
	testutil.Run(t, "ip", "-n", n.ns, "link", "set", uplink, "up")
	testutil.Run(t, "ip", "-n", n.ext, "addr", "add", extIP+"/24", "dev", peer)
	testutil.Run(t, "ip", "-n", n.ext, "link", "set", peer, "up")
	n.startLANDNS()
	n.start()
	t.Cleanup(n.teardown)
	return n
}

// start runs `podnet up` inside the node namespace (inheriting it from a
// locked thread, so it shares the host's mount namespace as a real agent
// does) and waits until the CLI can reach it.
func (n *node) start() {
	t := n.t
	d := func(s string) string { return filepath.Join(n.dir, s) }
	n.up = exec.Command(filepath.Join(n.bin, "podnet"), "up", "--node-name", "node1", "--node-ip", nodeIP,
		"--data-dir", d("etcd"), "--state-dir", d("agent"), "--cni-conf-dir", d("net.d"),
		"--cni-bin-dir", n.bin, "--cni-data-dir", d("cni"), "--dns-upstream", d("lan-dns/upstream.conf"))
	n.upLog = &bytes.Buffer{}
	n.up.Stdout, n.up.Stderr = n.upLog, n.upLog
	n.up.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := netns.Do(n.path, n.up.Start); err != nil {
		t.Fatalf("start podnet up: %v", err)
	}
	n.upExited = make(chan struct{})
	go func(c *exec.Cmd, ch chan struct{}) { c.Wait(); close(ch) }(n.up, n.upExited)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := n.podnet("get", "pods"); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("podnet up not ready:\n%s", n.upLog)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startLANDNS runs `podnet dns` on the external host as the LAN's DNS
// server, which the node's cluster DNS forwards to (so nothing queries
// this machine's resolver): outside.lan is the external host; any other
// name is SERVFAIL at once (hosts without fallthrough).
func (n *node) startLANDNS() {
	t := n.t
	dir := filepath.Join(n.dir, "lan-dns")
	corefile := filepath.Join(dir, "Corefile")
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(dir, 0o755))
	must(os.WriteFile(corefile, []byte(".:53 {\n    bind "+extIP+"\n    hosts {\n        "+extIP+" outside.lan\n    }\n}\n"), 0o644))
	must(os.WriteFile(filepath.Join(dir, "upstream.conf"), []byte("nameserver "+extIP+"\n"), 0o644))
	cmd := exec.Command(filepath.Join(n.bin, "podnet"), "dns", "-conf", corefile)
	log := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	must(netns.Do(n.extPath, cmd.Start))
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("LAN DNS log:\n%s", log)
		}
	})
}

// kill9 kills `podnet up` as a crash would.
func (n *node) kill9() {
	n.up.Process.Signal(syscall.SIGKILL)
	<-n.upExited
}

func (n *node) stop() {
	if n.up == nil {
		return
	}
	n.up.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.upExited:
	case <-time.After(20 * time.Second):
		n.kill9()
	}
	n.up = nil
}

// teardown deletes every pod through the agent, then stops it. Shims left
// by a failing test are killed so nothing outlives the test.
func (n *node) teardown() {
	if n.up != nil {
		if out, err := n.podnet("get", "pods", "-A", "-o", "name"); err == nil {
			for _, line := range strings.Fields(out) {
				name := strings.TrimPrefix(line, "pod/")
				if o, err := n.podnet("delete", "pod", name, "--timeout", "30s"); err != nil {
					n.t.Errorf("teardown: delete %s: %v\n%s", name, err, o)
				}
			}
		}
		n.stop()
	}
	exec.Command("pkill", "-9", "-f", n.dir).Run()
	if n.t.Failed() {
		n.t.Logf("podnet up log:\n%s", n.upLog)
	}
}

// podnet runs the CLI in the node namespace.
func (n *node) podnet(args ...string) (string, error) {
	c := exec.Command("nsenter", append([]string{"--net=" + n.path, filepath.Join(n.bin, "podnet")}, args...)...)
	out, err := c.CombinedOutput()
	return string(out), err
}

func (n *node) mustPodnet(args ...string) string {
	n.t.Helper()
	out, err := n.podnet(args...)
	if err != nil {
		n.t.Fatalf("podnet %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (n *node) pod(name string) *corev1.Pod {
	n.t.Helper()
	var p corev1.Pod
	out := n.mustPodnet("get", "pod", name, "-o", "json")
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		n.t.Fatalf("decode pod %s: %v\n%s", name, err, out)
	}
	return &p
}

// inNS runs a command in a namespace and returns its combined output.
func inNS(path string, name string, args ...string) (string, error) {
	c := exec.Command("nsenter", append([]string{"--net=" + path, name}, args...)...)
	out, err := c.CombinedOutput()
	return string(out), err
}

func eventually(t *testing.T, what string, timeout time.Duration, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := f()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last: %s", what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// check returns a function that fails t if the command it wraps failed.
func check(t *testing.T) func(string, error) string {
	return func(out string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return out
	}
}
