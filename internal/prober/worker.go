package prober

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// worker runs one probe of one container, as the kubelet's probe worker:
// every periodSeconds (and when the container's state changes) it probes,
// once initialDelaySeconds have passed since the container started; a
// result is reported only after successThreshold (or failureThreshold)
// consecutive equal outcomes. A failed liveness or startup probe restarts
// the container; the worker then holds until a new run of it appears.
// State fields are guarded by the manager's mutex.
type worker struct {
	m          *Manager
	uid        types.UID
	pod        string
	kind       Kind
	container  *corev1.Container
	probe      *corev1.Probe
	hasStartup bool
	kickc      chan struct{}

	// guarded by m.mu
	inst     instance
	seen     bool
	reported Result
	last     Result
	count    int32
	onHold   bool
	stopped  bool
}

func newWorker(m *Manager, uid types.UID, pod string, kind Kind, c *corev1.Container, p *corev1.Probe, hasStartup bool) *worker {
	w := &worker{m: m, uid: uid, pod: pod, kind: kind, container: c, probe: p, hasStartup: hasStartup, kickc: make(chan struct{}, 1)}
	w.reported = w.initial()
	return w
}

// initial is what a probe reports for a container run it has not judged
// yet: not ready, not started, alive.
func (w *worker) initial() Result {
	switch w.kind {
	case Readiness:
		return Failure
	case Liveness:
		return Success
	}
	return Unknown
}

func (w *worker) kick() {
	select {
	case w.kickc <- struct{}{}:
	default:
	}
}

func (w *worker) loop(ctx context.Context) {
	period := time.Duration(max(w.probe.PeriodSeconds, 1)) * time.Second
	t := w.m.cfg.Clock.NewTicker(period)
	defer t.Stop()
	for {
		w.doProbe(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		case <-w.kickc:
		}
	}
}

// doProbe runs one step: it returns after at most one probe.
func (w *worker) doProbe(ctx context.Context) {
	m := w.m
	m.mu.Lock()
	pp := m.pods[w.uid]
	if pp == nil || ctx.Err() != nil || w.stopped {
		m.mu.Unlock()
		return
	}
	cs := pp.containers[w.container.Name]
	changed := false
	set := func(r Result) {
		if w.reported != r {
			w.reported = r
			changed = true
		}
	}
	notify := func() {
		if changed {
			m.cfg.OnChange(w.uid)
		}
	}
	if !cs.running {
		if w.kind == Readiness {
			set(Failure)
		}
		m.mu.Unlock()
		notify()
		return
	}
	if !w.seen || cs.inst != w.inst {
		w.seen, w.inst, w.onHold = true, cs.inst, false
		set(w.initial())
		w.last, w.count = Unknown, 0
	}
	skip := w.onHold
	if w.kind != Startup && w.hasStartup {
		if sw := pp.workers[w.container.Name][Startup]; sw != nil && sw.reported != Success {
			skip = true // the startup probe gates the others
		}
	}
	if w.kind == Startup && w.reported == Success {
		skip = true
	}
	if m.cfg.Clock.Since(cs.startedAt) < time.Duration(w.probe.InitialDelaySeconds)*time.Second {
		skip = true
	}
	target := pp.target
	inst := cs.inst
	m.mu.Unlock()
	notify()
	if skip {
		return
	}

	timeout := time.Duration(max(w.probe.TimeoutSeconds, 1)) * time.Second
	res, msg := Probe(ctx, &w.probe.ProbeHandler, w.container, target, timeout)
	if ctx.Err() != nil {
		return
	}

	m.mu.Lock()
	if m.pods[w.uid] != pp || w.inst != inst || w.stopped {
		m.mu.Unlock()
		return // the container restarted (or the pod went) meanwhile
	}
	if res == w.last {
		w.count++
	} else {
		w.last, w.count = res, 1
	}
	threshold := max(w.probe.SuccessThreshold, 1)
	if res == Failure {
		threshold = max(w.probe.FailureThreshold, 1)
	}
	if w.count < threshold {
		m.mu.Unlock()
		if res == Failure {
			m.log.Debug("probe failed", "pod", w.pod, "container", w.container.Name, "probe", w.kind, "consecutive", w.count, "msg", msg)
		}
		return
	}
	prev := w.reported
	set(res)
	restart := (w.kind == Liveness || w.kind == Startup) && res == Failure
	if restart {
		w.onHold, w.count = true, 0
	}
	m.mu.Unlock()
	if prev != res {
		m.log.Info("probe result changed", "pod", w.pod, "container", w.container.Name, "probe", w.kind, "result", res, "msg", msg)
	}
	notify()
	if restart && m.cfg.Restart != nil {
		var grace time.Duration
		if g := w.probe.TerminationGracePeriodSeconds; g != nil {
			grace = time.Duration(*g) * time.Second
		}
		m.cfg.Restart(ctx, w.uid, w.container.Name, grace, string(w.kind)+" probe failed: "+msg)
	}
}
