// Package agent is podnet's node agent, a small kubelet for networking: it
// watches the store for pods bound to its node and makes the node match.
//
// The agent keeps an in-memory copy of its node's pods, filled by a list and
// kept current by a watch (an informer). Each pod has a worker goroutine
// that reconciles it through the PodRuntime (internal/sandbox in
// production) and writes the observed status back to the store when it
// changed. A pod marked for deletion is torn down, then its key is removed.
//
// Restart safety: all pod state lives on the node's disk and in the kernel,
// not in the agent. A restarted agent lists what is set up, adopts what is
// still wanted without touching it, and removes what is not. While the
// store is unreachable the agent changes nothing: running pods keep running.
package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/prober"
	"github.com/podnet/podnet/internal/store"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// PodRuntime sets pods up on this node. internal/sandbox implements it.
type PodRuntime interface {
	// Sync makes the pod's sandbox and containers match pod (idempotent)
	// and returns the observed status: phase, pod IPs, container statuses.
	Sync(ctx context.Context, pod *corev1.Pod) (corev1.PodStatus, error)
	// Kill stops a pod's containers and removes its network and files.
	// Idempotent; gracePeriod bounds the wait for processes to exit.
	Kill(ctx context.Context, uid types.UID, gracePeriod time.Duration) error
	// Pods lists the UIDs of pods set up on this node.
	Pods() ([]types.UID, error)
	// Exec returns a command running argv in the pod's network namespace
	// (exec probes and preStop hooks).
	Exec(uid types.UID, argv []string) (*exec.Cmd, error)
	// RestartContainer ends a container's current run (SIGTERM, SIGKILL
	// after grace, 0 meaning the pod's) so it restarts per restartPolicy.
	RestartContainer(ctx context.Context, uid types.UID, container string, grace time.Duration) error
}

// Config configures an Agent.
type Config struct {
	NodeName string
	NodeIP   string
	Store    *store.Store
	Runtime  PodRuntime
	Logger   *slog.Logger
	// Resync is how often every pod is reconciled without an event, which
	// is how container state changes reach the store. Default 1s.
	Resync time.Duration
	// DrainDelay is how long a deleted pod that Services sent traffic to
	// keeps running after no EndpointSlice lists it as ready any more,
	// before its containers get SIGTERM: time for every node's proxy to
	// apply that change. 0 means DefaultDrainDelay; negative means none.
	DrainDelay time.Duration
	// Clock drives the probes (tests pass a fake); nil is the real clock.
	Clock clock.WithTicker
	// Runners are node-level loops run for the agent's lifetime (the node
	// lease, the overlay).
	Runners []Runner
}

// Agent reconciles one node's pods.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	podKind   *api.Kind
	sliceKind *api.Kind

	mu      sync.Mutex
	pods    map[types.UID]*corev1.Pod // desired: this node's pods in the store
	retry   map[types.UID]retryState  // pods whose set-up failed
	synced  bool                      // pods reflects a complete list
	workers map[types.UID]chan struct{}
	wg      sync.WaitGroup
	probes  *prober.Manager
	ctx     context.Context // Run's
}

// DefaultDrainDelay is Config.DrainDelay's default.
const DefaultDrainDelay = time.Second

// New returns an agent; call Run.
func New(cfg Config) *Agent {
	if cfg.Resync <= 0 {
		cfg.Resync = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DrainDelay == 0 {
		cfg.DrainDelay = DefaultDrainDelay
	}
	k, _ := api.KindOf(&corev1.Pod{})
	sk, _ := api.KindOf(&discoveryv1.EndpointSlice{})
	a := &Agent{
		cfg:       cfg,
		log:       cfg.Logger.With("node", cfg.NodeName),
		podKind:   k,
		sliceKind: sk,
		pods:      map[types.UID]*corev1.Pod{},
		workers:   map[types.UID]chan struct{}{},
		retry:     map[types.UID]retryState{},
		ctx:       context.Background(),
	}
	a.probes = prober.NewManager(prober.Config{
		Clock: cfg.Clock, Logger: a.log,
		OnChange: func(uid types.UID) { a.poke(a.runCtx(), uid) },
		Restart:  a.restartContainer,
	})
	return a
}

// retryState backs off a pod whose set-up keeps failing (a taken host
// port, say), as the kubelet does: 1s doubling to 30s.
type retryState struct {
	next  time.Time
	delay time.Duration
}

const maxRetryDelay = 30 * time.Second

// runnerStopTimeout bounds how long Run waits for its Runners to return.
const runnerStopTimeout = 5 * time.Second

// Run works until ctx ends. Running pods are left running when it returns.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("agent started", "nodeIP", a.cfg.NodeIP)
	a.mu.Lock()
	a.ctx = ctx
	a.mu.Unlock()
	var runners sync.WaitGroup
	for _, r := range a.cfg.Runners {
		runners.Add(1)
		go func(r Runner) {
			defer runners.Done()
			if err := r.Run(ctx); err != nil && ctx.Err() == nil {
				a.log.Error("node loop ended", "loop", fmt.Sprintf("%T", r), "err", err)
			}
		}(r)
	}
	go a.informer(ctx)
	t := time.NewTicker(a.cfg.Resync)
	defer t.Stop()
	for {
		a.reconcileAll(ctx)
		select {
		case <-ctx.Done():
			a.mu.Lock()
			for uid, ch := range a.workers {
				close(ch)
				delete(a.workers, uid)
			}
			a.mu.Unlock()
			a.wg.Wait()
			a.probes.RemoveAll()
			// The runners' own shutdown matters: the node lease is revoked
			// there, so the node turns NotReady (and its load-balancer
			// addresses move) at once, not after the lease's TTL.
			done := make(chan struct{})
			go func() { runners.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(runnerStopTimeout):
				a.log.Warn("node loops still running at exit", "waited", runnerStopTimeout)
			}
			a.log.Info("agent stopped")
			return nil
		case <-t.C:
		}
	}
}

// informer lists and watches pods, keeping a.pods current and poking the
// workers of pods that changed. It re-lists after any watch failure.
func (a *Agent) informer(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		objs, rev, err := a.cfg.Store.List(lctx, a.podKind, "")
		cancel()
		if err != nil {
			a.log.Warn("cannot list pods; keeping the node as it is", "err", err)
			sleep(ctx, backoff)
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		fresh := map[types.UID]*corev1.Pod{}
		for _, o := range objs {
			p := o.(*corev1.Pod)
			if a.mine(ctx, p) {
				fresh[p.UID] = p
			}
		}
		a.mu.Lock()
		a.pods, a.synced = fresh, true
		a.mu.Unlock()
		a.reconcileAll(ctx)
		for ev := range a.cfg.Store.Watch(ctx, a.podKind, "", rev) {
			if ev.Err != nil {
				a.log.Warn("pod watch ended; re-listing", "err", ev.Err)
				break
			}
			p := ev.Object.(*corev1.Pod)
			a.mu.Lock()
			cur, had := a.pods[p.UID]
			want := ev.Type != store.Deleted && a.mine(ctx, p)
			switch {
			case want && had && newer(cur, p):
				// Our own status write already put a later version in
				// the cache; this event is older news.
			case want:
				a.pods[p.UID] = p
			default:
				delete(a.pods, p.UID)
			}
			a.mu.Unlock()
			if want || had {
				a.poke(ctx, p.UID)
			}
		}
	}
}

// mine reports whether p runs here. Pods without a node wait for the
// scheduler (internal/controller), which `podnet up` runs too.
func (a *Agent) mine(_ context.Context, p *corev1.Pod) bool {
	return p.Spec.NodeName == a.cfg.NodeName
}

// reconcileAll pokes every wanted pod's worker and every local pod that is
// no longer wanted.
func (a *Agent) reconcileAll(ctx context.Context) {
	a.mu.Lock()
	synced := a.synced
	uids := make([]types.UID, 0, len(a.pods))
	for uid := range a.pods {
		uids = append(uids, uid)
	}
	a.mu.Unlock()
	for _, uid := range uids {
		a.poke(ctx, uid)
	}
	if !synced {
		return // never remove anything before a complete list
	}
	local, err := a.cfg.Runtime.Pods()
	if err != nil {
		a.log.Error("list local pods", "err", err)
		return
	}
	for _, uid := range local {
		a.poke(ctx, uid)
	}
}

// poke makes uid's worker reconcile soon, starting the worker if needed.
func (a *Agent) poke(ctx context.Context, uid types.UID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	ch, ok := a.workers[uid]
	if !ok {
		ch = make(chan struct{}, 1)
		a.workers[uid] = ch
		a.wg.Add(1)
		go a.worker(ctx, uid, ch)
	}
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (a *Agent) worker(ctx context.Context, uid types.UID, ch chan struct{}) {
	defer a.wg.Done()
	for range ch {
		done, err := a.reconcile(ctx, uid)
		if err != nil && ctx.Err() == nil {
			a.log.Error("reconcile pod", "uid", uid, "err", err)
		}
		if done {
			a.probes.Remove(uid)
			a.mu.Lock()
			if a.workers[uid] == ch {
				delete(a.workers, uid)
				close(ch)
			}
			a.mu.Unlock()
		}
	}
}

// reconcile brings one pod to its desired state. done means the pod is gone
// from both the store and the node, so its worker can stop.
func (a *Agent) reconcile(ctx context.Context, uid types.UID) (done bool, err error) {
	a.mu.Lock()
	p := a.pods[uid]
	synced := a.synced
	a.mu.Unlock()
	if p == nil {
		if !synced {
			return false, nil
		}
		if err := a.cfg.Runtime.Kill(ctx, uid, 0); err != nil {
			return false, fmt.Errorf("remove pod %s no longer in the store: %w", uid, err)
		}
		a.log.Debug("pod not in the store is gone from the node", "uid", uid)
		a.mu.Lock()
		delete(a.retry, uid)
		a.mu.Unlock()
		return true, nil
	}
	name := p.Namespace + "/" + p.Name
	if p.DeletionTimestamp != nil {
		if err := a.terminate(ctx, p); err != nil {
			return false, fmt.Errorf("pod %s: stop: %w", name, err)
		}
		_, err := a.cfg.Store.Delete(ctx, a.podKind, p.Namespace, p.Name, store.DeleteOptions{Force: true, UID: uid})
		if err != nil && !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("pod %s: remove from store: %w", name, err)
		}
		a.log.Info("pod deleted", "pod", name)
		a.mu.Lock()
		delete(a.pods, uid)
		delete(a.retry, uid)
		a.mu.Unlock()
		return true, nil
	}
	if terminal(p.Status.Phase) {
		a.probes.Remove(uid)
		return false, nil // finished pods keep their sandbox state until deleted
	}
	a.mu.Lock()
	r, failing := a.retry[uid]
	a.mu.Unlock()
	if failing && time.Now().Before(r.next) {
		return false, nil
	}
	st, serr := a.cfg.Runtime.Sync(ctx, p)
	a.mu.Lock()
	if serr != nil {
		r.delay = min(max(2*r.delay, a.cfg.Resync), maxRetryDelay)
		r.next = time.Now().Add(r.delay)
		a.retry[uid] = r
	} else {
		delete(a.retry, uid)
	}
	a.mu.Unlock()
	if serr != nil {
		st = p.Status
		st.Phase = corev1.PodPending
		st.Reason = "SandboxFailed"
		st.Message = serr.Error()
	}
	if api.NetworkMode(p) == api.NetworkHost && a.cfg.NodeIP != "" && serr == nil {
		// As in Kubernetes, a host-network pod's IP is its node's.
		st.PodIP = a.cfg.NodeIP
		st.PodIPs = []corev1.PodIP{{IP: a.cfg.NodeIP}}
	}
	st.HostIP = a.cfg.NodeIP
	st.HostIPs = []corev1.HostIP{{IP: a.cfg.NodeIP}}
	if a.cfg.NodeIP == "" {
		st.HostIPs = nil
	}
	if serr == nil {
		a.applyProbes(ctx, p, &st)
	}
	st.StartTime = p.Status.StartTime
	if st.StartTime == nil {
		now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
		st.StartTime = &now
	}
	st.Conditions = conditions(p, st)
	if err := a.writeStatus(ctx, p, st); err != nil {
		return false, err
	}
	if serr != nil {
		return false, fmt.Errorf("pod %s: %w", name, serr)
	}
	return false, nil
}

// newer reports whether a's resourceVersion (an etcd revision) is later
// than b's.
func newer(a, b *corev1.Pod) bool {
	ra, err1 := strconv.ParseInt(a.ResourceVersion, 10, 64)
	rb, err2 := strconv.ParseInt(b.ResourceVersion, 10, 64)
	return err1 == nil && err2 == nil && ra > rb
}

func terminal(ph corev1.PodPhase) bool {
	return ph == corev1.PodSucceeded || ph == corev1.PodFailed
}

func conditions(p *corev1.Pod, st corev1.PodStatus) []corev1.PodCondition {
	ready := st.Phase == corev1.PodRunning
	for _, cs := range st.ContainerStatuses {
		ready = ready && cs.Ready
	}
	cond := func(t corev1.PodConditionType, ok bool) corev1.PodCondition {
		s := corev1.ConditionFalse
		if ok {
			s = corev1.ConditionTrue
		}
		c := corev1.PodCondition{Type: t, Status: s}
		for _, old := range p.Status.Conditions {
			if old.Type == t && old.Status == s {
				c.LastTransitionTime = old.LastTransitionTime
			}
		}
		if c.LastTransitionTime.IsZero() {
			c.LastTransitionTime = metav1.NewTime(time.Now().UTC().Truncate(time.Second))
		}
		return c
	}
	return []corev1.PodCondition{
		cond(corev1.PodScheduled, true),
		cond(corev1.PodReadyToStartContainers, len(st.PodIPs) > 0 || api.NetworkMode(p) != api.NetworkBridge),
		cond(corev1.ContainersReady, ready),
		cond(corev1.PodReady, ready),
	}
}

// writeStatus stores st if it differs from what the store has. Times are
// compared at the store's one-second precision, so a resync writes nothing.
func (a *Agent) writeStatus(ctx context.Context, p *corev1.Pod, st corev1.PodStatus) error {
	if sameStatus(p.Status, st) {
		return nil
	}
	o, err := a.cfg.Store.Mutate(ctx, a.podKind, p.Namespace, p.Name, func(o api.Object) error {
		cur := o.(*corev1.Pod)
		if cur.UID != p.UID {
			return fmt.Errorf("pod %s/%s was replaced", p.Namespace, p.Name)
		}
		cur.Status = st
		return nil
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pod %s/%s: write status: %w", p.Namespace, p.Name, err)
	}
	a.mu.Lock()
	if _, ok := a.pods[p.UID]; ok {
		a.pods[p.UID] = o.(*corev1.Pod)
	}
	a.mu.Unlock()
	return nil
}

func sameStatus(a, b corev1.PodStatus) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
