package agent

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// fakeRuntime records what the agent asked of it.
type fakeRuntime struct {
	mu       sync.Mutex
	local    map[types.UID]bool
	syncs    map[types.UID]int
	killed   []types.UID
	fail     map[types.UID]error
	restarts map[types.UID]int32
	started  map[types.UID]time.Time
	killedAt time.Time
}

func newFake() *fakeRuntime {
	return &fakeRuntime{local: map[types.UID]bool{}, syncs: map[types.UID]int{}, fail: map[types.UID]error{},
		restarts: map[types.UID]int32{}, started: map[types.UID]time.Time{}}
}

// Exec runs argv on the host (tests use it for local commands only).
func (f *fakeRuntime) Exec(_ types.UID, argv []string) (*exec.Cmd, error) {
	return exec.Command(argv[0], argv[1:]...), nil
}

// RestartContainer starts a new run of the pod's container.
func (f *fakeRuntime) RestartContainer(_ context.Context, uid types.UID, _ string, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restarts[uid]++
	f.started[uid] = f.started[uid].Add(time.Second)
	return nil
}

func (f *fakeRuntime) restartCount(uid types.UID) int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restarts[uid]
}

func (f *fakeRuntime) syncCount(uid types.UID) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.syncs[uid]
}

func (f *fakeRuntime) Sync(_ context.Context, p *corev1.Pod) (corev1.PodStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[p.UID]; err != nil {
		return corev1.PodStatus{}, err
	}
	f.local[p.UID] = true
	f.syncs[p.UID]++
	if f.started[p.UID].IsZero() {
		f.started[p.UID] = time.Now().Add(-time.Hour).Truncate(time.Second)
	}
	return corev1.PodStatus{
		Phase:  corev1.PodRunning,
		PodIP:  "10.244.0.5",
		PodIPs: []corev1.PodIP{{IP: "10.244.0.5"}},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: p.Spec.Containers[0].Name, Ready: true, RestartCount: f.restarts[p.UID],
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(f.started[p.UID])}},
		}},
	}, nil
}

func (f *fakeRuntime) Kill(_ context.Context, uid types.UID, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.local, uid)
	f.killed = append(f.killed, uid)
	f.killedAt = time.Now()
	return nil
}

func (f *fakeRuntime) Pods() ([]types.UID, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []types.UID
	for u := range f.local {
		out = append(out, u)
	}
	return out, nil
}

func (f *fakeRuntime) wasKilled(uid types.UID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range f.killed {
		if k == uid {
			return true
		}
	}
	return false
}

var podKind, _ = api.KindOf(&corev1.Pod{})

func mkpod(name, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
			Name: "c", Command: []string{"sleep", "infinity"},
		}}},
	}
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startAgent(t *testing.T, s *store.Store, rt PodRuntime) {
	ctx, cancel := context.WithCancel(context.Background())
	a := New(Config{NodeName: "n1", NodeIP: "192.168.200.1", Store: s, Runtime: rt, Resync: 100 * time.Millisecond, Logger: testutil.Logger(t)})
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestAgentRunsBindsAndDeletesPods(t *testing.T) {
	s, _ := testutil.Store(t)
	ctx := context.Background()
	rt := newFake()
	startAgent(t, s, rt)

	mine, other, unbound := mkpod("mine", "n1"), mkpod("other", "n2"), mkpod("unbound", "")
	for _, p := range []*corev1.Pod{mine, other, unbound} {
		if err := s.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	get := func(name string) *corev1.Pod {
		o, err := s.Get(ctx, podKind, "default", name)
		if err != nil {
			return nil
		}
		return o.(*corev1.Pod)
	}
	eventually(t, "status of pod mine", func() bool {
		p := get("mine")
		return p != nil && p.Status.Phase == corev1.PodRunning && p.Status.PodIP == "10.244.0.5" && p.Status.HostIP == "192.168.200.1"
	})
	// Binding is the scheduler's job (internal/controller), not the agent's.
	if p := get("unbound"); p.Spec.NodeName != "" || p.Status.Phase != corev1.PodPending || p.Status.PodIP != "" {
		t.Fatalf("the agent touched an unscheduled pod: %+v", p)
	}
	if p := get("other"); p.Status.Phase != corev1.PodPending || p.Status.PodIP != "" {
		t.Fatalf("another node's pod was touched: %+v", p.Status)
	}
	// Resyncs must not rewrite an unchanged status: wait for the worker to
	// have run three more syncs of the pod (each of the first two with its
	// status write finished, since a pod's syncs run one at a time).
	rv := get("mine").ResourceVersion
	syncs := rt.syncCount(mine.UID)
	eventually(t, "three resyncs of pod mine", func() bool { return rt.syncCount(mine.UID) >= syncs+3 })
	if now := get("mine").ResourceVersion; now != rv {
		t.Fatalf("status rewritten without a change: rv %s -> %s", rv, now)
	}
	// Graceful delete: the agent stops the pod, then removes the key.
	if _, err := s.Delete(ctx, podKind, "default", "mine", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pod mine removed from store", func() bool {
		_, err := s.Get(ctx, podKind, "default", "mine")
		return apierrors.IsNotFound(err)
	})
	if !rt.wasKilled(mine.UID) {
		t.Fatal("pod removed from the store before its sandbox was killed")
	}
}

func TestAgentRemovesPodsGoneFromStore(t *testing.T) {
	s, _ := testutil.Store(t)
	rt := newFake()
	rt.local["stale-uid"] = true // set up by a previous agent, deleted while it was down
	startAgent(t, s, rt)
	eventually(t, "stale pod removed", func() bool { return rt.wasKilled("stale-uid") })
}

func TestAgentReportsSandboxFailure(t *testing.T) {
	s, _ := testutil.Store(t)
	ctx := context.Background()
	rt := newFake()
	p := mkpod("broken", "n1")
	if err := s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	rt.fail[p.UID] = fmt.Errorf("host port tcp/8080 is already allocated")
	startAgent(t, s, rt)
	eventually(t, "failure in status", func() bool {
		o, err := s.Get(ctx, podKind, "default", "broken")
		if err != nil {
			return false
		}
		st := o.(*corev1.Pod).Status
		return st.Phase == corev1.PodPending && st.Reason == "SandboxFailed" && st.Message == "host port tcp/8080 is already allocated"
	})
}

// slowRunner takes a while to stop, as the node lease does while it
// revokes its lease.
type slowRunner struct{ stopped atomic.Bool }

func (r *slowRunner) Run(ctx context.Context) error {
	<-ctx.Done()
	time.Sleep(200 * time.Millisecond)
	r.stopped.Store(true)
	return nil
}

// Run returns only after its runners have: the agent process exits right
// after Run, and the node lease's revoke (NotReady at once, load-balancer
// addresses moved at once) must have happened by then.
func TestAgentWaitsForRunners(t *testing.T) {
	s, _ := testutil.Store(t)
	r := &slowRunner{}
	a := New(Config{NodeName: "n1", NodeIP: "192.168.200.1", Store: s, Runtime: newFake(), Runners: []Runner{r}, Logger: testutil.Logger(t)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	<-done
	if !r.stopped.Load() {
		t.Fatal("Run returned before its runner stopped")
	}
}
