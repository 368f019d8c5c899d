package sandbox

import (
	"context"
	"fmt"
	"time"

	"github.com/podnet/podnet/internal/shim"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The agent's PodRuntime interface (internal/agent) is Sync, Kill, Pods,
// Exec and RestartContainer.

// Sync is Ensure returning a corev1.PodStatus.
func (m *Manager) Sync(ctx context.Context, pod *corev1.Pod) (corev1.PodStatus, error) {
	st, err := m.Ensure(ctx, pod)
	if err != nil {
		return corev1.PodStatus{}, err
	}
	return st.PodStatus(), nil
}

// Kill is Remove with gracePeriod (the deletion's) replacing the pod's
// terminationGracePeriodSeconds; 0 or less keeps the pod's own.
func (m *Manager) Kill(ctx context.Context, uid types.UID, gracePeriod time.Duration) error {
	return m.remove(ctx, uid, gracePeriod)
}

// Pods returns the UIDs of the pods recorded on this node.
func (m *Manager) Pods() ([]types.UID, error) {
	recs, err := m.List()
	if err != nil {
		return nil, err
	}
	out := make([]types.UID, 0, len(recs))
	for _, r := range recs {
		out = append(out, r.UID)
	}
	return out, nil
}

// PodStatus renders the status as the pod's .status (without hostIP, which
// the agent knows): phase, conditions, pod IPs and container statuses.
func (s Status) PodStatus() corev1.PodStatus {
	ps := corev1.PodStatus{Phase: s.Phase, ContainerStatuses: s.Containers}
	for _, ip := range s.PodIPs {
		ps.PodIPs = append(ps.PodIPs, corev1.PodIP{IP: ip})
	}
	if len(s.PodIPs) > 0 {
		ps.PodIP = s.PodIPs[0]
	}
	cond := func(t corev1.PodConditionType, ok bool) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse}
		if ok {
			c.Status = corev1.ConditionTrue
		}
		return c
	}
	sandboxReady := s.Phase == corev1.PodRunning || s.Phase == corev1.PodPending && len(s.Containers) > 0
	ps.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, sandboxReady),
		cond(corev1.PodInitialized, true),
		cond(corev1.ContainersReady, s.Ready),
		cond(corev1.PodReady, s.Ready),
	}
	if ps.StartTime == nil && !s.CreatedAt.IsZero() {
		t := metav1.NewTime(s.CreatedAt)
		ps.StartTime = &t
	}
	return ps
}

// RestartContainer kills a container's current run (SIGTERM, then SIGKILL
// after grace; 0 means the pod's terminationGracePeriodSeconds) so that its
// shim restarts it per the restart policy. The agent uses it when a
// liveness probe fails.
func (m *Manager) RestartContainer(ctx context.Context, uid types.UID, container string, grace time.Duration) error {
	if err := validUID(uid); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	rec, err := m.readRecord(uid)
	if err != nil {
		return fmt.Errorf("sandbox: restart container %s of pod %s: %w", container, uid, err)
	}
	if !contains(rec.Containers, container) {
		return fmt.Errorf("sandbox: pod %s has no container %q", recRef(rec), container)
	}
	if grace <= 0 {
		grace = rec.GracePeriod
	}
	if err := shim.KillContainer(ctx, m.containerDir(uid, container), grace); err != nil {
		return fmt.Errorf("sandbox: restart container %s of pod %s: %w", container, recRef(rec), err)
	}
	m.log.Info("container killed for a restart", "pod", recRef(rec), "container", container)
	return nil
}
