package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/shim"
	"github.com/podnet/podnet/internal/testutil"
	corev1 "k8s.io/api/core/v1"
)

// node is a throwaway "node": a network namespace the Manager runs in, so
// host-mode pods and the CNI plugin's bridge live there, not on the host.
type node struct {
	t    *testing.T
	name string
	path string
	m    *Manager
	dir  string
	net  Network
}

func newNode(t *testing.T, net Network) *node {
	t.Helper()
	testutil.RequireRoot(t)
	name, path := testutil.NewNS(t)
	if net == nil {
		net = &fakeNetwork{}
	}
	n := &node{t: t, name: name, path: path, dir: t.TempDir(), net: net}
	n.m = n.manager()
	return n
}

// manager makes a new Manager over the node's state dir: an agent restart.
func (n *node) manager() *Manager {
	return testManager(n.t, n.dir, n.net)
}

func (n *node) do(fn func() error) error { return netns.Do(n.path, fn) }

// ensure sets a pod up and removes it when the test ends.
func (n *node) ensure(pod *corev1.Pod) Status {
	n.t.Helper()
	n.t.Cleanup(func() {
		m := n.manager()
		if err := n.do(func() error { return m.Remove(context.Background(), pod.UID) }); err != nil {
			n.t.Errorf("cleanup: %v", err)
		}
	})
	var st Status
	err := n.do(func() error {
		var err error
		st, err = n.m.Ensure(context.Background(), pod)
		return err
	})
	if err != nil {
		n.t.Fatal(err)
	}
	return st
}

func (n *node) remove(uid string) {
	n.t.Helper()
	if err := n.do(func() error { return n.m.Remove(context.Background(), typesUID(uid)) }); err != nil {
		n.t.Fatal(err)
	}
}

func TestPnNoneModeOnlyLoopback(t *testing.T) {
	n := newNode(t, nil)
	pod := testPod("none1", corev1.RestartPolicyNever, "ip -o link; echo ---; cat /etc/resolv.conf /etc/hosts")
	pod.Annotations = map[string]string{AnnotationNetwork: "none"}
	st := n.ensure(pod)
	if st.Mode != ModeNone || st.NetNS != NetNSName(pod.UID) || !netns.Exists(st.NetNS) || len(st.PodIPs) != 0 {
		t.Fatalf("status %+v", st)
	}
	st = waitPhase(t, n.m, pod.UID, func(s Status) bool { return s.Phase == corev1.PodSucceeded })
	log := waitLog(t, n.m.LogPath(pod.UID, "main"), "---")
	links, rest, _ := strings.Cut(log, "---")
	if lines := strings.Split(strings.TrimSpace(links), "\n"); len(lines) != 1 || !strings.Contains(lines[0], ": lo:") || !strings.Contains(lines[0], "UP") {
		t.Errorf("want only lo, up:\n%s", links)
	}
	// resolv.conf and hosts come from /etc/netns/<netns>.
	if !strings.Contains(rest, "nameserver 192.0.2.53\nsearch example.test\n") || strings.Contains(rest, "127.0.0.53") {
		t.Errorf("resolv.conf:\n%s", rest)
	}
	if !strings.Contains(rest, "127.0.0.1\tlocalhost") {
		t.Errorf("hosts:\n%s", rest)
	}
	if len(n.net.(*fakeNetwork).adds) != 0 {
		t.Error("CNI ADD called for a none pod")
	}
}

func TestPnHostModeSeesNodeInterfaces(t *testing.T) {
	n := newNode(t, nil)
	dummy := testutil.UniqueName("pnd", 11) // the node namespace goes, and its links with it
	testutil.Run(t, "ip", "netns", "exec", n.name, "ip", "link", "add", dummy, "type", "veth", "peer", "name", dummy+"p")
	pod := testPod("host2", corev1.RestartPolicyNever, "ip -o link")
	pod.Spec.HostNetwork = true
	n.ensure(pod)
	waitPhase(t, n.m, pod.UID, func(s Status) bool { return s.Phase == corev1.PodSucceeded })
	waitLog(t, n.m.LogPath(pod.UID, "main"), dummy)
}

func TestPnRestartPolicies(t *testing.T) {
	n := newNode(t, nil)
	always := testPod("always", corev1.RestartPolicyAlways, "echo run; exit 1")
	always.Annotations = map[string]string{AnnotationNetwork: "none"}
	okPod := testPod("onfailure", corev1.RestartPolicyOnFailure, "exit 0")
	okPod.Annotations = always.Annotations
	failPod := testPod("never", corev1.RestartPolicyNever, "exit 4")
	failPod.Annotations = always.Annotations
	for _, p := range []*corev1.Pod{always, okPod, failPod} {
		n.ensure(p)
	}
	st := waitPhase(t, n.m, always.UID, func(s Status) bool { return s.Containers[0].RestartCount >= 2 })
	if st.Phase != corev1.PodRunning || st.Containers[0].LastTerminationState.Terminated == nil {
		t.Errorf("always: %+v", st)
	}
	waitPhase(t, n.m, okPod.UID, func(s Status) bool { return s.Phase == corev1.PodSucceeded })
	st = waitPhase(t, n.m, failPod.UID, func(s Status) bool { return s.Phase == corev1.PodFailed })
	if c := st.Containers[0]; c.State.Terminated == nil || c.State.Terminated.ExitCode != 4 || c.RestartCount != 0 {
		t.Errorf("never: %+v", c)
	}
	// A terminated Never pod is left alone by Ensure.
	if err := n.do(func() error { _, err := n.m.Ensure(context.Background(), failPod); return err }); err != nil {
		t.Fatal(err)
	}
	if st, _ := n.m.Status(failPod.UID); st.Phase != corev1.PodFailed || st.Containers[0].RestartCount != 0 {
		t.Errorf("Ensure restarted a finished pod: %+v", st)
	}
}

func TestPnRemoveCleansUp(t *testing.T) {
	n := newNode(t, nil)
	pod := testPod("rm", corev1.RestartPolicyAlways, "trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done")
	pod.Annotations = map[string]string{AnnotationNetwork: "none"}
	st := n.ensure(pod)
	waitPhase(t, n.m, pod.UID, func(s Status) bool { return s.Ready })
	cst, err := shim.ReadState(n.m.containerDir(pod.UID, "main"))
	if err != nil {
		t.Fatal(err)
	}
	n.remove(string(pod.UID))
	if processAlive(cst.PID) || processAlive(cst.ShimPID) {
		t.Errorf("processes survived: container %d shim %d", cst.PID, cst.ShimPID)
	}
	if netns.Exists(st.NetNS) {
		t.Error("netns left")
	}
	if _, err := os.Stat(filepath.Join(EtcNetnsDir, st.NetNS)); !os.IsNotExist(err) {
		t.Errorf("/etc/netns dir left: %v", err)
	}
	if _, err := os.Stat(n.m.podDir(pod.UID)); !os.IsNotExist(err) {
		t.Errorf("state left: %v", err)
	}
	if _, err := n.m.Status(pod.UID); !errors.Is(err, ErrNotFound) {
		t.Errorf("status after remove: %v", err)
	}
	n.remove(string(pod.UID)) // idempotent
}

func TestPnAgentRestartAdoptsShims(t *testing.T) {
	n := newNode(t, nil)
	pod := testPod("adopt", corev1.RestartPolicyAlways, "exec sleep 1000")
	pod.Annotations = map[string]string{AnnotationNetwork: "none"}
	n.ensure(pod)
	waitPhase(t, n.m, pod.UID, func(s Status) bool { return s.Ready })
	before, err := shim.ReadState(n.m.containerDir(pod.UID, "main"))
	if err != nil {
		t.Fatal(err)
	}

	// The agent dies; a new one starts over the same directory.
	n.m = n.manager()
	recs, err := n.m.List()
	if err != nil || len(recs) != 1 || recs[0].UID != pod.UID || !recs[0].Ready {
		t.Fatalf("list %+v %v", recs, err)
	}
	var st Status
	if err := n.do(func() error { st, err = n.m.Ensure(context.Background(), pod); return err }); err != nil {
		t.Fatal(err)
	}
	after, _ := shim.ReadState(n.m.containerDir(pod.UID, "main"))
	if after.PID != before.PID || after.ShimPID != before.ShimPID || st.Containers[0].RestartCount != 0 || !st.Ready {
		t.Errorf("adoption disturbed the container: before %+v after %+v", before, after)
	}

	// A shim that died is replaced; its orphan container goes with it.
	_ = syscall.Kill(before.ShimPID, syscall.SIGKILL)
	for i := 0; i < 100 && shim.IsShim(before.ShimPID, n.m.containerDir(pod.UID, "main")); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if err := n.do(func() error { _, err := n.m.Ensure(context.Background(), pod); return err }); err != nil {
		t.Fatal(err)
	}
	st = waitPhase(t, n.m, pod.UID, func(s Status) bool { return s.Ready && s.Containers[0].RestartCount == 1 })
	if processAlive(before.PID) {
		t.Errorf("orphan container %d survived", before.PID)
	}
}

func TestPnRebootRecreates(t *testing.T) {
	// The namespace vanished (as after a reboot): Ensure starts over.
	n := newNode(t, nil)
	pod := testPod("reboot", corev1.RestartPolicyAlways, "exec sleep 1000")
	pod.Annotations = map[string]string{AnnotationNetwork: "none"}
	st := n.ensure(pod)
	waitPhase(t, n.m, pod.UID, func(s Status) bool { return s.Ready })
	if err := netns.Delete(st.NetNS); err != nil {
		t.Fatal(err)
	}
	st = n.ensure(pod)
	if !netns.Exists(st.NetNS) {
		t.Fatal("netns not recreated")
	}
	waitPhase(t, n.m, pod.UID, func(s Status) bool { return s.Ready })
}

func TestPnSetupFailureRollsBack(t *testing.T) {
	net := &fakeNetwork{addErr: errors.New("no addresses left")}
	n := newNode(t, net)
	pod := testPod("broken", corev1.RestartPolicyAlways, "sleep 1000")
	var err error
	n.do(func() error { _, err = n.m.Ensure(context.Background(), pod); return nil })
	if err == nil || !strings.Contains(err.Error(), "default/broken") || !strings.Contains(err.Error(), "CNI ADD") || !strings.Contains(err.Error(), "no addresses left") {
		t.Fatalf("error %v", err)
	}
	if netns.Exists(NetNSName(pod.UID)) {
		t.Error("netns left after failed set-up")
	}
	if _, err := os.Stat(n.m.podDir(pod.UID)); !os.IsNotExist(err) {
		t.Errorf("pod dir left: %v", err)
	}
	if len(net.dels) != 1 || net.dels[0].ContainerID != string(pod.UID) {
		t.Errorf("want one CNI DEL after the failed ADD, got %+v", net.dels)
	}

	// A crash half-way (a record not Ready, a namespace) is undone by the
	// next Ensure.
	net.addErr = nil
	rec := &Record{UID: pod.UID, Namespace: pod.Namespace, Name: pod.Name, Mode: ModeBridge, NetNS: NetNSName(pod.UID), Containers: []string{"main"}}
	if err := n.m.writeRecord(rec); err != nil {
		t.Fatal(err)
	}
	if _, err := netns.Create(rec.NetNS); err != nil {
		t.Fatal(err)
	}
	st := n.ensure(pod)
	if len(net.dels) != 2 || st.PodIPs[0] != "10.244.9.9" {
		t.Errorf("status %+v dels %d", st, len(net.dels))
	}
	waitPhase(t, n.m, pod.UID, func(s Status) bool { return s.Ready })
	hosts, _ := os.ReadFile(filepath.Join(EtcNetnsDir, rec.NetNS, "hosts"))
	if !strings.Contains(string(hosts), "10.244.9.9\tbroken\n") {
		t.Errorf("hosts:\n%s", hosts)
	}
}

// cniBinDir returns a directory holding podnet-cni.
func cniBinDir(t *testing.T) string { return testutil.Binaries(t) }

func TestPnBridgePodsPingEachOther(t *testing.T) {
	testutil.RequireRoot(t)
	bin := cniBinDir(t)
	bridge := testutil.UniqueName("pnbr", 12)
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":"pntest","plugins":[{"type":"podnet-cni","bridge":%q,"subnet":"10.244.1.0/24","ipMasq":false,"hairpinMode":true,"dataDir":%q,"capabilities":{"portMappings":true}}]}`,
		bridge, t.TempDir())
	cni := &CNI{ConfList: []byte(conf), BinDirs: []string{bin}, CacheDir: t.TempDir()}
	n := newNode(t, cni)

	b := testPod("pod-b", corev1.RestartPolicyAlways, "exec sleep 1000")
	stB := n.ensure(b)
	if len(stB.PodIPs) != 1 || !strings.HasPrefix(stB.PodIPs[0], "10.244.1.") {
		t.Fatalf("pod-b status %+v", stB)
	}
	a := testPod("pod-a", corev1.RestartPolicyNever, "ip -o -4 addr show eth0; ping -c 1 -W 3 "+stB.PodIPs[0]+" && echo PING-OK; cat /etc/hosts")
	stA := n.ensure(a)
	if len(stA.PodIPs) != 1 || stA.PodIPs[0] == stB.PodIPs[0] {
		t.Fatalf("pod-a status %+v", stA)
	}
	st := waitPhase(t, n.m, a.UID, func(s Status) bool { return s.Phase == corev1.PodSucceeded || s.Phase == corev1.PodFailed })
	log := waitLog(t, n.m.LogPath(a.UID, "main"), "localhost")
	if st.Phase != corev1.PodSucceeded || !strings.Contains(log, "PING-OK") {
		t.Errorf("ping failed (%s):\n%s", st.Phase, log)
	}
	if !strings.Contains(log, stA.PodIPs[0]+"/24") || !strings.Contains(log, stA.PodIPs[0]+"\tpod-a\n") {
		t.Errorf("pod-a's address or hosts entry missing:\n%s", log)
	}
	// Exec reaches the pod too (as `podnet exec` does).
	cmd, err := n.m.Exec(b.UID, []string{"ping", "-c", "1", "-W", "3", stA.PodIPs[0]})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("exec ping: %v\n%s", err, out)
	}

	// Remove works even when the namespace is already gone: CNI DEL still
	// cleans the host side.
	if err := netns.Delete(stB.NetNS); err != nil {
		t.Fatal(err)
	}
	n.remove(string(b.UID))
	n.remove(string(a.UID))
	out := testutil.Run(t, "ip", "netns", "exec", n.name, "ip", "-o", "link", "show", "type", "veth")
	if strings.TrimSpace(out) != "" {
		t.Errorf("veths left in the node:\n%s", out)
	}
}

// TestPnHostModeClusterDNS: a hostNetwork pod with ClusterFirstWithHostNet
// sees its own resolv.conf (the cluster's) in its container and its execs,
// one with ClusterFirst sees the node's, and neither changes what the node
// sees or leaves a mount behind.
func TestPnHostModeClusterDNS(t *testing.T) {
	n := newNode(t, nil)
	n.m.cfg.ResolvConf.ClusterDNS = []string{"10.96.0.10"}
	nodeResolv, _ := os.ReadFile("/etc/resolv.conf")
	mountsBefore := resolvMounts(t)

	withNet := testPod("hostdns", corev1.RestartPolicyAlways, "cat /etc/resolv.conf; exec sleep 60")
	withNet.Spec.HostNetwork = true
	withNet.Spec.DNSPolicy = corev1.DNSClusterFirstWithHostNet
	first := testPod("hostfirst", corev1.RestartPolicyNever, "cat /etc/resolv.conf; echo END")
	first.Spec.HostNetwork = true
	first.Spec.DNSPolicy = corev1.DNSClusterFirst
	n.ensure(withNet)
	n.ensure(first)

	want := "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local example.test\noptions ndots:5\n"
	if got := waitLog(t, n.m.LogPath(withNet.UID, "main"), "ndots:5"); got != want {
		t.Errorf("ClusterFirstWithHostNet container sees:\n%s\nwant:\n%s", got, want)
	}
	cmd, err := n.m.Exec(withNet.UID, []string{"cat", "/etc/resolv.conf"})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := cmd.CombinedOutput(); err != nil || string(out) != want {
		t.Errorf("exec in ClusterFirstWithHostNet pod: %v\n%s", err, out)
	}
	if got := waitLog(t, n.m.LogPath(first.UID, "main"), "END"); got != string(nodeResolv)+"END\n" {
		t.Errorf("ClusterFirst host pod sees:\n%s\nwant the node's:\n%s", got, nodeResolv)
	}
	if now, _ := os.ReadFile("/etc/resolv.conf"); string(now) != string(nodeResolv) {
		t.Errorf("the node's resolv.conf changed:\n%s", now)
	}
	if got := resolvMounts(t); got != mountsBefore {
		t.Errorf("the node's mounts of resolv.conf changed: %d, were %d", got, mountsBefore)
	}
	cst, err := shim.ReadState(n.m.containerDir(withNet.UID, "main"))
	if err != nil {
		t.Fatal(err)
	}
	n.remove(string(withNet.UID))
	if processAlive(cst.PID) || processAlive(cst.ShimPID) {
		t.Errorf("processes survived: container %d shim %d", cst.PID, cst.ShimPID)
	}
	if _, err := os.Stat(n.m.podDir(withNet.UID)); !os.IsNotExist(err) {
		t.Errorf("pod dir (and its resolv.conf) left: %v", err)
	}
}

// resolvMounts counts this process's mounts on /etc/resolv.conf.
func resolvMounts(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), " /etc/resolv.conf ")
}
