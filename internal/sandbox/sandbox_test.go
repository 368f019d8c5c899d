package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/shim"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The test binary doubles as the podnet binary for shims: "<test> shim ..."
// runs shim.Main.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "shim" {
		os.Exit(shim.Main(os.Args[2:]))
	}
	os.Exit(m.Run())
}

func running() corev1.ContainerState {
	return corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
}
func waiting() corev1.ContainerState {
	return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
}
func exited(code int32) corev1.ContainerState {
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}
}
func cs(state corev1.ContainerState, last ...int32) corev1.ContainerStatus {
	c := corev1.ContainerStatus{State: state}
	if len(last) > 0 {
		c.LastTerminationState = exited(last[0])
	}
	return c
}

func TestPodPhase(t *testing.T) {
	const (
		always    = corev1.RestartPolicyAlways
		onFailure = corev1.RestartPolicyOnFailure
		never     = corev1.RestartPolicyNever
	)
	tests := []struct {
		name   string
		policy corev1.RestartPolicy
		cs     []corev1.ContainerStatus
		want   corev1.PodPhase
	}{
		{"no containers", always, nil, corev1.PodPending},
		{"creating", always, []corev1.ContainerStatus{cs(waiting())}, corev1.PodPending},
		{"one running one creating", always, []corev1.ContainerStatus{cs(running()), cs(waiting())}, corev1.PodPending},
		{"running", always, []corev1.ContainerStatus{cs(running()), cs(running())}, corev1.PodRunning},
		{"backoff counts as stopped", always, []corev1.ContainerStatus{cs(waiting(), 1)}, corev1.PodRunning},
		{"running and backoff", onFailure, []corev1.ContainerStatus{cs(running()), cs(waiting(), 1)}, corev1.PodRunning},
		{"never all succeeded", never, []corev1.ContainerStatus{cs(exited(0)), cs(exited(0))}, corev1.PodSucceeded},
		{"never one failed", never, []corev1.ContainerStatus{cs(exited(0)), cs(exited(2))}, corev1.PodFailed},
		{"never one still running", never, []corev1.ContainerStatus{cs(running()), cs(exited(2))}, corev1.PodRunning},
		{"onfailure all succeeded", onFailure, []corev1.ContainerStatus{cs(exited(0))}, corev1.PodSucceeded},
		{"onfailure restarting", onFailure, []corev1.ContainerStatus{cs(exited(0)), cs(waiting(), 1)}, corev1.PodRunning},
		{"always stopped is running", always, []corev1.ContainerStatus{cs(exited(0))}, corev1.PodRunning},
		{"empty policy means always", "", []corev1.ContainerStatus{cs(exited(1))}, corev1.PodRunning},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := PodPhase(tc.policy, tc.cs); got != tc.want {
				t.Errorf("got %s want %s", got, tc.want)
			}
		})
	}
}

func TestContainerStatus(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	last := &shim.Termination{ExitCode: 1, Reason: "Error", StartedAt: t0, FinishedAt: t0.Add(time.Second)}
	tests := []struct {
		name      string
		st        shim.State
		alive     bool
		wantState string
		reason    string
		ready     bool
		lastCode  *int32
	}{
		{name: "no state yet", wantState: "waiting", reason: "ContainerCreating"},
		{name: "running", st: shim.State{State: shim.Running, StartedAt: t0, RestartCount: 2, LastTermination: last}, alive: true,
			wantState: "running", ready: true, lastCode: ptr(int32(1))},
		{name: "running but shim dead", st: shim.State{State: shim.Running}, wantState: "waiting", reason: "ShimNotRunning"},
		{name: "backoff", st: shim.State{State: shim.Waiting, Reason: "CrashLoopBackOff", LastTermination: last}, alive: true,
			wantState: "waiting", reason: "CrashLoopBackOff", lastCode: ptr(int32(1))},
		{name: "terminated, shim gone", st: shim.State{State: shim.Terminated, ExitCode: 3, Reason: "Error"},
			wantState: "terminated", reason: "Error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := containerStatus("uid1", "app", tc.st, tc.alive)
			got, reason := "", ""
			switch {
			case c.State.Running != nil:
				got = "running"
			case c.State.Waiting != nil:
				got, reason = "waiting", c.State.Waiting.Reason
			case c.State.Terminated != nil:
				got, reason = "terminated", c.State.Terminated.Reason
			}
			if got != tc.wantState || reason != tc.reason || c.Ready != tc.ready || c.Name != "app" || c.RestartCount != int32(tc.st.RestartCount) {
				t.Errorf("status %+v", c)
			}
			if (tc.lastCode == nil) != (c.LastTerminationState.Terminated == nil) ||
				tc.lastCode != nil && *tc.lastCode != c.LastTerminationState.Terminated.ExitCode {
				t.Errorf("last termination %+v", c.LastTerminationState)
			}
			if c.ContainerID != "podnet://uid1/app" || c.Started == nil || *c.Started != (got == "running") {
				t.Errorf("id %q started %v", c.ContainerID, c.Started)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestModeOfAndNetNSName(t *testing.T) {
	p := &corev1.Pod{}
	for _, tc := range []struct {
		host bool
		ann  string
		want Mode
		err  bool
	}{
		{want: ModeBridge}, {ann: "bridge", want: ModeBridge}, {ann: "none", want: ModeNone},
		{host: true, ann: "none", want: ModeHost}, {ann: "weird", err: true},
	} {
		p.Spec.HostNetwork = tc.host
		p.Annotations = map[string]string{}
		if tc.ann != "" {
			p.Annotations[AnnotationNetwork] = tc.ann
		}
		got, err := ModeOf(p)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("%+v: got %q, %v", tc, got, err)
		}
	}
	a, b := NetNSName("0b6f1c4e-7a2d-4f7e-9c1a-2f3b4c5d6e7f"), NetNSName("0b6f1c4e-7a2d-4f7e-9c1a-2f3b4c5d6e80")
	if a == b || len(a) != 15 || !strings.HasPrefix(a, "pn-") || a != NetNSName("0b6f1c4e-7a2d-4f7e-9c1a-2f3b4c5d6e7f") {
		t.Errorf("names %q %q", a, b)
	}
}

func TestPortMappingsAndRuntimeConf(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Name: "a", Ports: []corev1.ContainerPort{{ContainerPort: 80, HostPort: 8080}, {ContainerPort: 81}}},
		{Name: "b", Ports: []corev1.ContainerPort{{ContainerPort: 53, HostPort: 5353, Protocol: corev1.ProtocolUDP, HostIP: "127.0.0.1"}}},
	}}}
	got := PortMappingsOf(pod)
	want := []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}, {HostPort: 5353, ContainerPort: 53, Protocol: "udp", HostIP: "127.0.0.1"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v", got)
	}
	rt := runtimeConf(Attachment{ContainerID: "u1", NetNS: "/run/netns/pn-x", IfName: "eth0", PodNamespace: "ns", PodName: "p", PodUID: "u1", PortMappings: got})
	if rt.ContainerID != "u1" || rt.IfName != "eth0" || rt.NetNS != "/run/netns/pn-x" {
		t.Errorf("rt %+v", rt)
	}
	args := map[string]string{}
	for _, a := range rt.Args {
		args[a[0]] = a[1]
	}
	if args["K8S_POD_NAMESPACE"] != "ns" || args["K8S_POD_NAME"] != "p" || args["K8S_POD_UID"] != "u1" || args["K8S_POD_INFRA_CONTAINER_ID"] != "u1" {
		t.Errorf("args %v", args)
	}
	if !reflect.DeepEqual(rt.CapabilityArgs["portMappings"], want) {
		t.Errorf("capability args %+v", rt.CapabilityArgs)
	}
	if rt := runtimeConf(Attachment{}); len(rt.CapabilityArgs) != 0 {
		t.Errorf("no ports should give no portMappings: %+v", rt.CapabilityArgs)
	}
}

func TestNeedsShim(t *testing.T) {
	for _, tc := range []struct {
		st     shim.State
		policy corev1.RestartPolicy
		want   bool
	}{
		{shim.State{}, corev1.RestartPolicyNever, true},
		{shim.State{State: shim.Running}, corev1.RestartPolicyNever, true},
		{shim.State{State: shim.Terminated, ExitCode: 1}, corev1.RestartPolicyAlways, false},
		{shim.State{State: shim.Terminated, Stopped: true}, corev1.RestartPolicyAlways, true},
		{shim.State{State: shim.Terminated, Stopped: true, ExitCode: 143}, corev1.RestartPolicyOnFailure, true},
		{shim.State{State: shim.Terminated, Stopped: true}, corev1.RestartPolicyOnFailure, false},
		{shim.State{State: shim.Terminated, Stopped: true, ExitCode: 143}, corev1.RestartPolicyNever, false},
	} {
		if got := needsShim(tc.st, tc.policy); got != tc.want {
			t.Errorf("%+v %s: got %v", tc.st, tc.policy, got)
		}
	}
}

func TestValidatePod(t *testing.T) {
	ok := func() *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: "u1", Name: "p", Namespace: "ns"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Command: []string{"true"}}}}}
	}
	if err := validatePod(ok()); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*corev1.Pod){
		"no uid":       func(p *corev1.Pod) { p.UID = "" },
		"slash uid":    func(p *corev1.Pod) { p.UID = "../x" },
		"no container": func(p *corev1.Pod) { p.Spec.Containers = nil },
		"no command":   func(p *corev1.Pod) { p.Spec.Containers[0].Command = nil },
		"dup name":     func(p *corev1.Pod) { p.Spec.Containers = append(p.Spec.Containers, p.Spec.Containers[0]) },
		"bad name":     func(p *corev1.Pod) { p.Spec.Containers[0].Name = "a/b" },
		"bad network":  func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationNetwork: "x"} },
	} {
		p := ok()
		mut(p)
		if err := validatePod(p); err == nil {
			t.Errorf("%s: want error", name)
		}
	}
}

func testManager(t *testing.T, dir string, net Network) *Manager {
	t.Helper()
	// The real `podnet shim` when make test provides the binaries, else
	// this test binary (see TestMain).
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if d := os.Getenv("PODNET_BIN"); d != "" {
		exe = filepath.Join(d, "podnet")
	}
	if net == nil {
		net = &fakeNetwork{}
	}
	m, err := New(Config{NodeName: "node1", StateDir: dir, PodnetBinary: exe, Network: net,
		ResolvConf: resolvconfFixture(t), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRecordsAndList(t *testing.T) {
	m := testManager(t, t.TempDir(), nil)
	recs := []*Record{
		{UID: "u2", Namespace: "b", Name: "two", Mode: ModeNone, NetNS: NetNSName("u2"), Containers: []string{"c"}},
		{UID: "u1", Namespace: "a", Name: "one", Mode: ModeHost, Containers: []string{"c"}, Ready: true},
	}
	for _, r := range recs {
		if err := m.writeRecord(r); err != nil {
			t.Fatal(err)
		}
	}
	// Garbage is skipped, not fatal.
	if err := os.MkdirAll(filepath.Join(m.podDir("junk")), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m.podDir("junk"), recordFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := m.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].UID != "u1" || got[1].UID != "u2" || got[1].NetNS != recs[0].NetNS {
		t.Fatalf("list %+v", got)
	}
	uids, err := m.Pods()
	if err != nil || !reflect.DeepEqual(uids, []types.UID{"u1", "u2"}) {
		t.Errorf("pods %v %v", uids, err)
	}
	st, err := m.Status("u2")
	if err != nil || st.Phase != corev1.PodPending || len(st.Containers) != 1 {
		t.Errorf("status %+v %v", st, err)
	}
	if _, err := m.Status("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("want ErrNotFound, got %v", err)
	}
	cmd, err := m.Exec("u2", []string{"cat", "/etc/hosts"})
	if err != nil || strings.Join(cmd.Args, " ") != "ip netns exec "+NetNSName("u2")+" cat /etc/hosts" {
		t.Errorf("exec %v %v", cmd, err)
	}
	cmd, err = m.Exec("u1", []string{"true"})
	if err != nil || strings.Join(cmd.Args, " ") != "true" {
		t.Errorf("exec %v %v", cmd, err)
	}
}

// fakeNetwork records calls and hands out addresses.
type fakeNetwork struct {
	mu     sync.Mutex
	addErr error
	adds   []Attachment
	dels   []Attachment
}

func (f *fakeNetwork) Add(_ context.Context, a Attachment) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adds = append(f.adds, a)
	if f.addErr != nil {
		return nil, f.addErr
	}
	return []string{"10.244.9.9"}, nil
}

func (f *fakeNetwork) Del(_ context.Context, a Attachment) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dels = append(f.dels, a)
	return nil
}

// TestHostModeLifecycle needs no root: a hostNetwork pod has no namespace
// and no CNI attachment, only shims.
func TestHostModeLifecycle(t *testing.T) {
	net := &fakeNetwork{}
	dir := t.TempDir()
	m := testManager(t, dir, net)
	pod := testPod("host1", corev1.RestartPolicyAlways, "echo $MY_NAME $MY_NODE $GREETING; exec sleep 100")
	pod.Spec.HostNetwork = true
	pod.Spec.Containers[0].Env = []corev1.EnvVar{
		{Name: "MY_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "MY_NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
		{Name: "GREETING", Value: "hello"},
	}
	ctx := context.Background()
	t.Cleanup(func() { _ = m.Remove(ctx, pod.UID) })
	st, err := m.Ensure(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode != ModeHost || st.NetNS != "" || len(net.adds) != 0 {
		t.Errorf("status %+v adds %v", st, net.adds)
	}
	st = waitPhase(t, m, pod.UID, func(s Status) bool { return s.Ready })
	if st.Phase != corev1.PodRunning {
		t.Errorf("phase %s", st.Phase)
	}
	waitLog(t, m.LogPath(pod.UID, "main"), "host1 node1 hello")
	ps := st.PodStatus()
	if ps.Phase != corev1.PodRunning || len(ps.ContainerStatuses) != 1 || ps.StartTime == nil {
		t.Errorf("pod status %+v", ps)
	}
	pid := containerPID(t, m, pod.UID, "main")

	// Ensure again: nothing restarts.
	if _, err := m.Ensure(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if p := containerPID(t, m, pod.UID, "main"); p != pid {
		t.Errorf("container restarted: %d -> %d", pid, p)
	}
	if err := m.Kill(ctx, pod.UID, time.Second); err != nil {
		t.Fatal(err)
	}
	if processAlive(pid) {
		t.Errorf("container %d survived Remove", pid)
	}
	if _, err := os.Stat(m.podDir(pod.UID)); !os.IsNotExist(err) {
		t.Errorf("pod dir left: %v", err)
	}
	if err := m.Remove(ctx, pod.UID); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if len(net.dels) != 0 {
		t.Errorf("CNI DEL for a host pod: %v", net.dels)
	}
}
