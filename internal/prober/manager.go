package prober

import (
	"context"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
)

// Kind is a probe's purpose.
type Kind string

const (
	Readiness Kind = "readiness"
	Liveness  Kind = "liveness"
	Startup   Kind = "startup"
)

// Config configures a Manager.
type Config struct {
	// Clock drives probe periods and initial delays (tests pass a fake).
	Clock  clock.WithTicker
	Logger *slog.Logger
	// OnChange is called (from a worker goroutine) when a container's
	// ready or started state changed, so the agent writes the status.
	OnChange func(uid types.UID)
	// Restart is called when a liveness or startup probe failed
	// failureThreshold times: the agent restarts the container. grace is
	// the probe's terminationGracePeriodSeconds, 0 for the pod's.
	Restart func(ctx context.Context, uid types.UID, container string, grace time.Duration, why string)
}

// Manager runs the probes of a node's pods.
type Manager struct {
	cfg  Config
	log  *slog.Logger
	mu   sync.Mutex
	pods map[types.UID]*podProbes
}

type podProbes struct {
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	target     Target
	containers map[string]containerState
	workers    map[string]map[Kind]*worker // container -> kind
}

// instance identifies one run of a container.
type instance struct {
	restarts  int32
	startedAt int64 // unix seconds, the store's precision
}

type containerState struct {
	running   bool
	inst      instance
	startedAt time.Time
}

// NewManager returns a Manager with no pods.
func NewManager(cfg Config) *Manager {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.OnChange == nil {
		cfg.OnChange = func(types.UID) {}
	}
	return &Manager{cfg: cfg, log: cfg.Logger, pods: map[types.UID]*podProbes{}}
}

func stateOf(cs corev1.ContainerStatus) containerState {
	st := containerState{inst: instance{restarts: cs.RestartCount}}
	if r := cs.State.Running; r != nil {
		st.running = true
		st.startedAt = r.StartedAt.Time
		st.inst.startedAt = r.StartedAt.Unix()
	}
	return st
}

// Update tells the manager what the runtime observed of pod: its target
// (pod IP, exec) and its containers. The first Update of a pod starts its
// probe workers (they end with ctx or Remove). The pod's stored status
// (pod.Status) seeds each worker: a container instance the store already
// records as ready (or started) keeps that state until its probes say
// otherwise, so a restarted agent does not flap the pod's endpoints.
func (m *Manager) Update(ctx context.Context, pod *corev1.Pod, t Target, observed []corev1.ContainerStatus) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pp := m.pods[pod.UID]
	now := map[string]containerState{}
	for _, cs := range observed {
		now[cs.Name] = stateOf(cs)
	}
	if pp == nil {
		pctx, cancel := context.WithCancel(ctx)
		pp = &podProbes{cancel: cancel, target: t, containers: now, workers: map[string]map[Kind]*worker{}}
		m.pods[pod.UID] = pp
		stored := map[string]corev1.ContainerStatus{}
		for _, cs := range pod.Status.ContainerStatuses {
			stored[cs.Name] = cs
		}
		for i := range pod.Spec.Containers {
			c := &pod.Spec.Containers[i]
			for kind, p := range map[Kind]*corev1.Probe{Readiness: c.ReadinessProbe, Liveness: c.LivenessProbe, Startup: c.StartupProbe} {
				if p == nil {
					continue
				}
				w := newWorker(m, pod.UID, pod.Namespace+"/"+pod.Name, kind, c, p, c.StartupProbe != nil)
				if old, ok := stored[c.Name]; ok {
					if cur, ok := now[c.Name]; ok && cur.running && stateOf(old).running && stateOf(old).inst == cur.inst {
						// The same run of the container the store describes:
						// carry its judged state on (an agent restart).
						prior := w.initial()
						switch kind {
						case Readiness:
							prior = boolResult(old.Ready, Failure)
						case Startup:
							prior = boolResult(old.Started != nil && *old.Started, Unknown)
						}
						w.seen, w.inst = true, cur.inst
						w.reported, w.last, w.count = prior, prior, 1
					}
				}
				if pp.workers[c.Name] == nil {
					pp.workers[c.Name] = map[Kind]*worker{}
				}
				pp.workers[c.Name][kind] = w
				pp.wg.Add(1)
				go func() {
					defer pp.wg.Done()
					w.loop(pctx)
				}()
			}
		}
		return
	}
	pp.target = t
	for name, st := range now {
		if old := pp.containers[name]; old != st {
			for _, w := range pp.workers[name] {
				w.kick()
			}
		}
	}
	pp.containers = now
}

func boolResult(ok bool, otherwise Result) Result {
	if ok {
		return Success
	}
	return otherwise
}

// Remove stops a pod's probe workers and forgets it; it waits for them.
func (m *Manager) Remove(uid types.UID) {
	m.mu.Lock()
	pp := m.pods[uid]
	delete(m.pods, uid)
	m.mu.Unlock()
	if pp != nil {
		pp.cancel()
		pp.wg.Wait()
	}
}

// RemoveAll stops every pod's workers (the agent is shutting down).
func (m *Manager) RemoveAll() {
	m.mu.Lock()
	uids := make([]types.UID, 0, len(m.pods))
	for uid := range m.pods {
		uids = append(uids, uid)
	}
	m.mu.Unlock()
	for _, uid := range uids {
		m.Remove(uid)
	}
}

// StopRestarting stops a pod's liveness and startup probes (a pod being
// deleted must not have containers restarted); readiness goes on.
func (m *Manager) StopRestarting(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pp := m.pods[uid]
	if pp == nil {
		return
	}
	for _, ws := range pp.workers {
		for k, w := range ws {
			if k != Readiness {
				w.stopped = true
			}
		}
	}
}

// Tracked reports whether the pod has been Updated and not Removed.
func (m *Manager) Tracked(uid types.UID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pods[uid] != nil
}

// State returns a container's started and ready states as Kubernetes
// defines them: started once it runs and its startup probe (if any)
// succeeded; ready once started and its readiness probe (if any)
// succeeded.
func (m *Manager) State(uid types.UID, container string) (started, ready bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pp := m.pods[uid]
	if pp == nil {
		return false, false
	}
	return pp.stateLocked(container)
}

func (pp *podProbes) stateLocked(container string) (started, ready bool) {
	if !pp.containers[container].running {
		return false, false
	}
	ws := pp.workers[container]
	started = true
	if w := ws[Startup]; w != nil {
		started = w.reported == Success
	}
	ready = started
	if w := ws[Readiness]; w != nil {
		ready = started && w.reported == Success
	}
	return started, ready
}
