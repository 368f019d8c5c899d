package agent

import (
	"context"
	"os/exec"
	"sync"
	"time"

	"github.com/podnet/podnet/internal/prober"
	"github.com/podnet/podnet/internal/store"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Probes and graceful termination.
//
// Readiness: each container's ready and started flags come from the prober
// (internal/prober): a container is started once it runs and its startup
// probe passed, ready once started and its readiness probe passed (no
// probe: as soon as it runs). ContainersReady and Ready follow from them.
// A restarted agent seeds the probers from the stored status, so a pod the
// store has as Ready stays Ready until its probes fail (no endpoint flap on
// an agent kill -9).
//
// Termination of a pod with a deletionTimestamp, within its grace period
// (deadline = deletionTimestamp + deletionGracePeriodSeconds, so an agent
// restart does not extend it):
//  1. liveness and startup probes stop;
//  2. at the same time: every running container's lifecycle.preStop hook
//     (exec, httpGet, sleep) runs, and the drain waits until no
//     EndpointSlice in the pod's namespace lists the pod as a ready
//     endpoint, then DrainDelay more (other nodes' proxies applying the
//     change) — only if some slice listed the pod at all;
//  3. then SIGTERM, and SIGKILL when the grace period ends (at least 2s
//     after SIGTERM, as the kubelet gives after a preStop hook).

func (a *Agent) runCtx() context.Context {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ctx
}

func (a *Agent) target(uid types.UID, podIP string) prober.Target {
	return prober.Target{Host: podIP, Exec: func(argv []string) (*exec.Cmd, error) {
		return a.cfg.Runtime.Exec(uid, argv)
	}}
}

// applyProbes feeds the runtime's view of p to the prober and sets each
// container status's ready and started flags from it.
func (a *Agent) applyProbes(ctx context.Context, p *corev1.Pod, st *corev1.PodStatus) {
	a.probes.Update(a.runCtx(), p, a.target(p.UID, st.PodIP), st.ContainerStatuses)
	for i := range st.ContainerStatuses {
		cs := &st.ContainerStatuses[i]
		started, ready := a.probes.State(p.UID, cs.Name)
		cs.Started, cs.Ready = &started, ready
	}
}

// restartContainer is the prober's reaction to a failed liveness or
// startup probe: the container's preStop hook, then SIGTERM and SIGKILL
// after the grace period (the probe's, else the pod's), as the kubelet.
func (a *Agent) restartContainer(ctx context.Context, uid types.UID, container string, grace time.Duration, why string) {
	a.mu.Lock()
	p := a.pods[uid]
	a.mu.Unlock()
	if p == nil || p.DeletionTimestamp != nil {
		return
	}
	if grace <= 0 {
		grace = podGrace(p)
	}
	name := p.Namespace + "/" + p.Name
	a.log.Warn("container failed its probe; restarting it", "pod", name, "container", container, "why", why)
	deadline := time.Now().Add(grace)
	for i := range p.Spec.Containers {
		if c := &p.Spec.Containers[i]; c.Name == container {
			a.preStop(ctx, p, c, deadline)
		}
	}
	if err := a.cfg.Runtime.RestartContainer(ctx, uid, container, max(time.Until(deadline), minKillGrace)); err != nil && ctx.Err() == nil {
		a.log.Error("restart container", "pod", name, "container", container, "err", err)
	}
	a.poke(a.runCtx(), uid)
}

// minKillGrace is the least time between SIGTERM and SIGKILL after hooks
// and the drain used the grace period up (the kubelet's 2s).
const minKillGrace = 2 * time.Second

func podGrace(p *corev1.Pod) time.Duration {
	switch {
	case p.DeletionGracePeriodSeconds != nil:
		return time.Duration(*p.DeletionGracePeriodSeconds) * time.Second
	case p.Spec.TerminationGracePeriodSeconds != nil:
		return time.Duration(*p.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

// terminate stops a pod marked for deletion: hooks and drain, then the
// containers and the sandbox.
func (a *Agent) terminate(ctx context.Context, p *corev1.Pod) error {
	a.probes.StopRestarting(p.UID)
	grace := podGrace(p)
	if grace > 0 {
		deadline := p.DeletionTimestamp.Add(grace)
		hctx, cancel := context.WithDeadline(ctx, deadline)
		var wg sync.WaitGroup
		for i := range p.Spec.Containers {
			c := &p.Spec.Containers[i]
			if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || !running(p, c.Name) {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				a.preStop(hctx, p, c, deadline)
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.drain(hctx, p)
		}()
		wg.Wait()
		cancel()
		if err := ctx.Err(); err != nil {
			return err
		}
		grace = max(time.Until(deadline), minKillGrace)
	}
	if err := a.cfg.Runtime.Kill(ctx, p.UID, grace); err != nil {
		return err
	}
	a.probes.Remove(p.UID)
	return nil
}

func running(p *corev1.Pod, container string) bool {
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Name == container {
			return cs.State.Running != nil
		}
	}
	return false
}

// preStop runs a container's preStop hook, bounded by deadline. A failing
// hook is logged; termination goes on, as in Kubernetes.
func (a *Agent) preStop(ctx context.Context, p *corev1.Pod, c *corev1.Container, deadline time.Time) {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		return
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	name := p.Namespace + "/" + p.Name
	start := time.Now()
	err := prober.RunHandler(ctx, c.Lifecycle.PreStop, c, a.target(p.UID, p.Status.PodIP))
	if err != nil {
		a.log.Warn("preStop hook failed", "pod", name, "container", c.Name, "err", err)
		return
	}
	a.log.Info("preStop hook done", "pod", name, "container", c.Name, "took", time.Since(start).Round(time.Millisecond))
}

// drain waits until no EndpointSlice of the pod's namespace lists the pod
// as a ready endpoint (list, then watch), then DrainDelay if any slice
// listed it. It returns early when ctx ends (the grace period).
func (a *Agent) drain(ctx context.Context, p *corev1.Pod) {
	if p.Status.PodIP == "" && len(p.Status.PodIPs) == 0 {
		return // never reachable
	}
	name := p.Namespace + "/" + p.Name
	start := time.Now()
	listed := false
	for ctx.Err() == nil {
		objs, rev, err := a.cfg.Store.List(ctx, a.sliceKind, p.Namespace)
		if err != nil {
			a.log.Warn("drain: cannot list EndpointSlices; retrying", "pod", name, "err", err)
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		slices := map[string]*discoveryv1.EndpointSlice{}
		for _, o := range objs {
			s := o.(*discoveryv1.EndpointSlice)
			slices[s.Name] = s
		}
		ready, any := endpointOf(slices, p)
		listed = listed || any
		if !ready {
			break
		}
		a.log.Info("draining: waiting until no EndpointSlice lists the pod as ready", "pod", name)
		wctx, cancel := context.WithCancel(ctx)
		for ev := range a.cfg.Store.Watch(wctx, a.sliceKind, p.Namespace, rev) {
			if ev.Err != nil {
				break
			}
			s := ev.Object.(*discoveryv1.EndpointSlice)
			if ev.Type == store.Deleted {
				delete(slices, s.Name)
			} else {
				slices[s.Name] = s
			}
			if ready, _ = endpointOf(slices, p); !ready {
				break
			}
		}
		cancel()
		if !ready {
			break
		}
		sleep(ctx, 100*time.Millisecond) // the watch failed: list again
	}
	if ctx.Err() != nil {
		a.log.Warn("drain: grace period over while the pod is still a ready endpoint", "pod", name)
		return
	}
	if listed && a.cfg.DrainDelay > 0 {
		sleep(ctx, a.cfg.DrainDelay)
	}
	if listed {
		a.log.Info("pod drained", "pod", name, "took", time.Since(start).Round(time.Millisecond))
	}
}

// endpointOf reports whether some slice lists p as a ready endpoint, and
// whether any lists it at all. An endpoint is p's when its targetRef is p,
// or, without a targetRef, when it has p's IP (not for host-network pods,
// whose IP is the node's).
func endpointOf(slices map[string]*discoveryv1.EndpointSlice, p *corev1.Pod) (ready, listed bool) {
	ips := map[string]bool{p.Status.PodIP: p.Status.PodIP != ""}
	for _, ip := range p.Status.PodIPs {
		ips[ip.IP] = true
	}
	for _, s := range slices {
		for _, ep := range s.Endpoints {
			mine := false
			if r := ep.TargetRef; r != nil {
				mine = (r.Kind == "" || r.Kind == "Pod") && (r.UID == p.UID || r.UID == "" && r.Name == p.Name && (r.Namespace == "" || r.Namespace == p.Namespace))
			} else if !p.Spec.HostNetwork {
				for _, addr := range ep.Addresses {
					mine = mine || ips[addr]
				}
			}
			if !mine {
				continue
			}
			listed = true
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				ready = true
			}
		}
	}
	return ready, listed
}
