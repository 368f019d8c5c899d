package sandbox

import (
	"errors"
	"io/fs"
	"time"

	"github.com/podnet/podnet/internal/shim"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Status is a pod's observed state on this node.
type Status struct {
	UID       types.UID
	Namespace string
	Name      string
	Mode      Mode
	NetNS     string
	Phase     corev1.PodPhase
	PodIPs    []string
	// CreatedAt is when the sandbox was set up (the pod's startTime).
	CreatedAt time.Time
	// Ready is true when every container runs.
	Ready      bool
	Containers []corev1.ContainerStatus
}

// ContainerID is the containerID reported for a pod's container.
func ContainerID(uid types.UID, name string) string {
	return "podnet://" + string(uid) + "/" + name
}

// containerStatus maps a shim's state to a ContainerStatus. st is the zero
// State when the shim never wrote one; alive says whether the shim runs.
func containerStatus(uid types.UID, name string, st shim.State, alive bool) corev1.ContainerStatus {
	cs := corev1.ContainerStatus{Name: name, ContainerID: ContainerID(uid, name), RestartCount: int32(st.RestartCount)}
	if lt := st.LastTermination; lt != nil && st.State != shim.Terminated {
		cs.LastTerminationState.Terminated = termination(*lt)
	}
	switch {
	case st.State == "":
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	case st.State == shim.Terminated:
		cs.State.Terminated = &corev1.ContainerStateTerminated{
			ExitCode: int32(st.ExitCode), Reason: st.Reason, Message: st.Message,
			StartedAt: metav1.NewTime(st.StartedAt), FinishedAt: metav1.NewTime(st.FinishedAt),
		}
		if st.LastTermination != nil {
			cs.LastTerminationState.Terminated = termination(*st.LastTermination)
		}
	case !alive:
		// Running or waiting per the file, but nobody supervises it: the
		// next Ensure starts a new shim.
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ShimNotRunning", Message: "the container's shim is not running"}
	case st.State == shim.Running:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(st.StartedAt)}
		cs.Ready = true
	default:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: st.Reason, Message: st.Message}
	}
	started := cs.State.Running != nil
	cs.Started = &started
	return cs
}

func termination(t shim.Termination) *corev1.ContainerStateTerminated {
	return &corev1.ContainerStateTerminated{
		ExitCode: int32(t.ExitCode), Signal: int32(t.Signal), Reason: t.Reason, Message: t.Message,
		StartedAt: metav1.NewTime(t.StartedAt), FinishedAt: metav1.NewTime(t.FinishedAt),
	}
}

// PodPhase computes a pod's phase from its containers the way the kubelet
// does: any container waiting to start for the first time → Pending; any
// running → Running; all stopped → Succeeded if all exited 0, else Failed
// under restartPolicy Never and Running otherwise (they will restart).
func PodPhase(policy corev1.RestartPolicy, cs []corev1.ContainerStatus) corev1.PodPhase {
	if len(cs) == 0 {
		return corev1.PodPending
	}
	var waiting, running, stopped, succeeded int
	for _, c := range cs {
		switch {
		case c.State.Running != nil:
			running++
		case c.State.Terminated != nil:
			stopped++
			if c.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case c.State.Waiting != nil && c.LastTerminationState.Terminated != nil:
			stopped++ // restarting after a termination
		default:
			waiting++
		}
	}
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case policy == corev1.RestartPolicyAlways || policy == "":
		return corev1.PodRunning
	case stopped == succeeded:
		return corev1.PodSucceeded
	case policy == corev1.RestartPolicyNever:
		return corev1.PodFailed
	default:
		return corev1.PodRunning
	}
}

// statusOf reads the shims' states of a recorded pod.
func (m *Manager) statusOf(rec *Record) Status {
	s := Status{UID: rec.UID, Namespace: rec.Namespace, Name: rec.Name, Mode: rec.Mode, NetNS: rec.NetNS,
		PodIPs: append([]string(nil), rec.IPs...), CreatedAt: rec.CreatedAt}
	s.Ready = rec.Ready
	for _, name := range rec.Containers {
		st, alive, err := shim.Alive(m.containerDir(rec.UID, name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			m.log.Warn("unreadable shim state", "pod", rec.Namespace+"/"+rec.Name, "container", name, "err", err)
		}
		cs := containerStatus(rec.UID, name, st, alive)
		s.Ready = s.Ready && cs.Ready
		s.Containers = append(s.Containers, cs)
	}
	s.Phase = PodPhase(rec.RestartPolicy, s.Containers)
	if !rec.Ready && s.Phase != corev1.PodSucceeded && s.Phase != corev1.PodFailed {
		s.Phase = corev1.PodPending
	}
	return s
}
