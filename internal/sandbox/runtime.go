package sandbox

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// The agent's PodRuntime interface (internal/agent) is Sync, Kill and Pods.

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
