package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

var rsKind, _ = api.KindOf(&appsv1.ReplicaSet{})

// maxBurst bounds the pods one pass creates for one ReplicaSet.
const maxBurst = 500

// ReplicaSets keeps spec.replicas pods of every ReplicaSet's template:
//
//   - its pods are those whose controller ownerReference is the ReplicaSet
//     (it adopts no orphans); pods marked for deletion or finished
//     (Succeeded, Failed) do not count, so a failed, deleted or evicted pod
//     is replaced at once;
//   - missing pods are created as <rs>-<5 random characters> with the
//     template's labels, annotations and spec and a controller
//     ownerReference;
//   - surplus pods are deleted through the store's graceful path (their
//     agents drain and stop them), unscheduled before scheduled, pending
//     before running, not ready before ready, the most recently ready,
//     the most restarted, then the newest first;
//   - status: replicas, fullyLabeledReplicas, readyReplicas,
//     availableReplicas (Ready for minReadySeconds) and observedGeneration,
//     written only when they change; the loop wakes when a pod is due to
//     become available.
type ReplicaSets struct {
	s      *store.Store
	log    *slog.Logger
	resync time.Duration
	now    func() time.Time
}

// NewReplicaSets returns the ReplicaSet controller.
func NewReplicaSets(s *store.Store, log *slog.Logger, resync time.Duration) *ReplicaSets {
	return &ReplicaSets{s: s, log: log.With("controller", "replicaset"), resync: resync, now: time.Now}
}

func (c *ReplicaSets) Name() string { return "replicaset" }

// Run reconciles every resync and at once when a ReplicaSet or pod changes.
func (c *ReplicaSets) Run(ctx context.Context) error {
	runLoop(ctx, c.s.Client(), c.log, c.resync, c.pass, store.ListKey(rsKind, ""), store.ListKey(podKind, ""))
	return nil
}

// Reconcile runs one pass over all ReplicaSets.
func (c *ReplicaSets) Reconcile(ctx context.Context) error {
	_, err := c.pass(ctx)
	return err
}

func (c *ReplicaSets) pass(ctx context.Context) (time.Time, error) {
	lists, err := listKinds(ctx, c.s, rsKind, podKind)
	if err != nil {
		return time.Time{}, err
	}
	owned := podsByController(lists[1])
	return reconcileEach(lists[0], c.log, "reconcile replica set", "replicaset", func(rs *appsv1.ReplicaSet) (time.Time, error) {
		return c.replicaSet(ctx, rs, owned[rs.UID])
	})
}

// podsByController indexes pods by the UID of their controller.
func podsByController(objs []api.Object) map[types.UID][]*corev1.Pod {
	out := map[types.UID][]*corev1.Pod{}
	for _, o := range objs {
		p := o.(*corev1.Pod)
		if ref := metav1.GetControllerOf(p); ref != nil {
			out[ref.UID] = append(out[ref.UID], p)
		}
	}
	return out
}

// activePods are the pods that count towards replicas: not being deleted
// and not finished.
func activePods(pods []*corev1.Pod) []*corev1.Pod {
	var out []*corev1.Pod
	for _, p := range pods {
		if p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			out = append(out, p)
		}
	}
	return out
}

// podAvailable reports whether p has been Ready for minReady, and if it
// is Ready but not yet available, when it will be.
func podAvailable(p *corev1.Pod, minReady int32, now time.Time) (bool, time.Time) {
	c := podReadyCondition(p)
	if c.Status != corev1.ConditionTrue {
		return false, time.Time{}
	}
	if minReady <= 0 {
		return true, time.Time{}
	}
	at := c.LastTransitionTime.Add(time.Duration(minReady) * time.Second)
	if !now.Before(at) {
		return true, time.Time{}
	}
	return false, at
}

// podCounts are the counts of a set of pods a status reports.
type podCounts struct {
	active, ready, available int32
	due                      time.Time // when the next pod becomes available
}

func countPods(pods []*corev1.Pod, minReady int32, now time.Time) podCounts {
	var n podCounts
	for _, p := range activePods(pods) {
		n.active++
		if podReadyCondition(p).Status == corev1.ConditionTrue {
			n.ready++
		}
		ok, at := podAvailable(p, minReady, now)
		if ok {
			n.available++
		}
		n.due = soonest(n.due, at)
	}
	return n
}

func (c *ReplicaSets) replicaSet(ctx context.Context, rs *appsv1.ReplicaSet, pods []*corev1.Pod) (time.Time, error) {
	now := c.now()
	name := rs.Namespace + "/" + rs.Name
	active := activePods(pods)
	want := int32(1)
	if rs.Spec.Replicas != nil {
		want = *rs.Spec.Replicas
	}
	var err error
	switch diff := int(want) - len(active); {
	case diff > 0:
		err = c.create(ctx, rs, min(diff, maxBurst))
	case diff < 0:
		err = c.scaleDown(ctx, rs, active, -diff)
	}
	n := countPods(pods, rs.Spec.MinReadySeconds, now)
	labelled := int32(0)
	for _, p := range active {
		if labelsContain(p.Labels, rs.Spec.Template.Labels) {
			labelled++
		}
	}
	st := rs.Status
	st.Replicas, st.FullyLabeledReplicas, st.ReadyReplicas, st.AvailableReplicas = n.active, labelled, n.ready, n.available
	st.ObservedGeneration = rs.Generation
	if serr := c.writeStatus(ctx, rs, st); serr != nil && err == nil {
		err = serr
	}
	if err != nil {
		return n.due, fmt.Errorf("replica set %s: %w", name, err)
	}
	return n.due, nil
}

func labelsContain(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

func (c *ReplicaSets) writeStatus(ctx context.Context, rs *appsv1.ReplicaSet, st appsv1.ReplicaSetStatus) error {
	if sameJSON(rs.Status, st) {
		return nil
	}
	_, err := c.s.Mutate(ctx, rsKind, rs.Namespace, rs.Name, func(o api.Object) error {
		cur := o.(*appsv1.ReplicaSet)
		if cur.UID != rs.UID {
			return nil
		}
		cur.Status = st
		return nil
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	return nil
}

func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// create adds n pods from the template.
func (c *ReplicaSets) create(ctx context.Context, rs *appsv1.ReplicaSet, n int) error {
	for range n {
		p := podFromTemplate(rs)
		var err error
		for attempt := 0; ; attempt++ {
			p.Name = randomName(rs.Name)
			err = c.s.Create(ctx, p)
			if !apierrors.IsAlreadyExists(err) || attempt >= 5 {
				break
			}
			p.UID, p.ResourceVersion = "", ""
		}
		if err != nil {
			return fmt.Errorf("create pod: %w", err)
		}
		c.log.Info("pod created", "replicaset", rs.Namespace+"/"+rs.Name, "pod", p.Name)
	}
	return nil
}

func podFromTemplate(rs *appsv1.ReplicaSet) *corev1.Pod {
	t := rs.Spec.Template.DeepCopy()
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   rs.Namespace,
			Labels:      t.Labels,
			Annotations: t.Annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID,
				Controller: ptr(true), BlockOwnerDeletion: ptr(true)}},
		},
		Spec: t.Spec,
	}
}

// scaleDown deletes the n pods least worth keeping.
func (c *ReplicaSets) scaleDown(ctx context.Context, rs *appsv1.ReplicaSet, active []*corev1.Pod, n int) error {
	pods := append([]*corev1.Pod(nil), active...)
	sort.SliceStable(pods, func(i, j int) bool { return deleteFirst(pods[i], pods[j]) })
	for _, p := range pods[:n] {
		_, err := c.s.Delete(ctx, podKind, p.Namespace, p.Name, store.DeleteOptions{UID: p.UID})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete surplus pod %s: %w", p.Name, err)
		}
		c.log.Info("surplus pod deleted", "replicaset", rs.Namespace+"/"+rs.Name, "pod", p.Name)
	}
	return nil
}

// deleteFirst orders pods for a scale-down: a before b if a is worth less.
func deleteFirst(a, b *corev1.Pod) bool {
	if (a.Spec.NodeName == "") != (b.Spec.NodeName == "") {
		return a.Spec.NodeName == ""
	}
	phase := map[corev1.PodPhase]int{corev1.PodPending: 0, corev1.PodUnknown: 1, corev1.PodRunning: 2}
	if pa, pb := phase[a.Status.Phase], phase[b.Status.Phase]; pa != pb {
		return pa < pb
	}
	ra, rb := podReadyCondition(a), podReadyCondition(b)
	aReady, bReady := ra.Status == corev1.ConditionTrue, rb.Status == corev1.ConditionTrue
	if aReady != bReady {
		return !aReady
	}
	if aReady && !ra.LastTransitionTime.Equal(&rb.LastTransitionTime) {
		return ra.LastTransitionTime.After(rb.LastTransitionTime.Time) // ready for less time
	}
	if ca, cb := restarts(a), restarts(b); ca != cb {
		return ca > cb
	}
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.After(b.CreationTimestamp.Time)
	}
	return a.Name > b.Name
}

func restarts(p *corev1.Pod) int32 {
	var n int32
	for _, cs := range p.Status.ContainerStatuses {
		n += cs.RestartCount
	}
	return n
}
