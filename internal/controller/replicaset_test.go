package controller

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func podTemplate(app string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Command: []string{"sleep", "100"}}}},
	}
}

func newRS(name string, replicas, minReady int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: appsv1.ReplicaSetSpec{Replicas: &replicas, MinReadySeconds: minReady,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}, Template: podTemplate(name)}}
}

// podsOwnedBy lists the pods whose controller is uid, by name.
func podsOwnedBy(t *testing.T, s *store.Store, uid types.UID) []*corev1.Pod {
	t.Helper()
	objs, _, err := s.List(context.Background(), podKind, "default")
	if err != nil {
		t.Fatal(err)
	}
	var out []*corev1.Pod
	for _, o := range objs {
		if ref := metav1.GetControllerOf(o); ref != nil && ref.UID == uid {
			out = append(out, o.(*corev1.Pod))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func getRS(t *testing.T, s *store.Store, name string) *appsv1.ReplicaSet {
	t.Helper()
	o, err := s.Get(context.Background(), rsKind, "default", name)
	if err != nil {
		t.Fatal(err)
	}
	return o.(*appsv1.ReplicaSet)
}

func scaleRS(t *testing.T, s *store.Store, name string, n int32) {
	t.Helper()
	if _, err := s.Mutate(context.Background(), rsKind, "default", name, func(o api.Object) error {
		o.(*appsv1.ReplicaSet).Spec.Replicas = &n
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func rsStatus(rs *appsv1.ReplicaSet) string {
	st := rs.Status
	return fmt.Sprintf("replicas=%d ready=%d available=%d observed=%d/%d", st.Replicas, st.ReadyReplicas, st.AvailableReplicas, st.ObservedGeneration, rs.Generation)
}

func TestDeleteFirst(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Minute))
	mk := func(name, node string, phase corev1.PodPhase, ready bool, readySince metav1.Time, restarts int32, created metav1.Time) *corev1.Pod {
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: created}, Spec: corev1.PodSpec{NodeName: node},
			Status: corev1.PodStatus{Phase: phase, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st, LastTransitionTime: readySince}},
				ContainerStatuses: []corev1.ContainerStatus{{RestartCount: restarts}}}}
	}
	pods := []*corev1.Pod{
		mk("old-ready", "n1", corev1.PodRunning, true, t0, 0, t0),
		mk("new-ready", "n1", corev1.PodRunning, true, t1, 0, t0),
		mk("restarted-ready", "n1", corev1.PodRunning, true, t0, 3, t0),
		mk("not-ready", "n1", corev1.PodRunning, false, t0, 0, t0),
		mk("pending", "n1", corev1.PodPending, false, t0, 0, t0),
		mk("unscheduled", "", corev1.PodPending, false, t0, 0, t0),
		mk("newest-not-ready", "n1", corev1.PodRunning, false, t0, 0, t1),
	}
	sort.SliceStable(pods, func(i, j int) bool { return deleteFirst(pods[i], pods[j]) })
	var got []string
	for _, p := range pods {
		got = append(got, p.Name)
	}
	want := "unscheduled pending newest-not-ready not-ready new-ready restarted-ready old-ready"
	if strings.Join(got, " ") != want {
		t.Fatalf("deletion order\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}

// TestReplicaSetController: pods from the template with owner references;
// status; scaling up and down (the not-ready pod goes first); deleted and
// failed pods are replaced; a converged pass writes nothing.
func TestReplicaSetController(t *testing.T) {
	s := clusterStore(t, "10.244.0.0/16", time.Hour)
	ctx := context.Background()
	kl := startKubelet(t, s, 0, "n1", "n2")
	c := NewReplicaSets(s, testutil.Logger(t), 200*time.Millisecond)
	_, stop := startManager(t, s, "m", []Loop{c})
	rs := newRS("web", 3, 0)
	if err := s.Create(ctx, rs); err != nil {
		t.Fatal(err)
	}
	eventually(t, "3 ready pods", func() bool {
		return rsStatus(getRS(t, s, "web")) == "replicas=3 ready=3 available=3 observed=1/1"
	})
	for _, p := range podsOwnedBy(t, s, rs.UID) {
		ref := metav1.GetControllerOf(p)
		if !strings.HasPrefix(p.Name, "web-") || len(p.Name) != len("web-")+5 || p.Labels["app"] != "web" ||
			ref.Kind != "ReplicaSet" || ref.Name != "web" || ref.APIVersion != "apps/v1" {
			t.Fatalf("pod %s: labels %v owner %+v", p.Name, p.Labels, ref)
		}
	}
	scaleRS(t, s, "web", 5)
	eventually(t, "5 ready pods", func() bool {
		return rsStatus(getRS(t, s, "web")) == "replicas=5 ready=5 available=5 observed=2/2"
	})
	victim := podsOwnedBy(t, s, rs.UID)[2].Name
	kl.holdNotReady(victim, true)
	eventually(t, "one pod not ready", func() bool { return getRS(t, s, "web").Status.ReadyReplicas == 4 })
	scaleRS(t, s, "web", 4)
	eventually(t, "4 ready pods, the not-ready one gone", func() bool {
		if rsStatus(getRS(t, s, "web")) != "replicas=4 ready=4 available=4 observed=3/3" {
			return false
		}
		for _, p := range podsOwnedBy(t, s, rs.UID) {
			if p.Name == victim {
				return false
			}
		}
		return true
	})
	// A deleted pod and a failed one are replaced.
	pods := podsOwnedBy(t, s, rs.UID)
	if _, err := s.Delete(ctx, podKind, "default", pods[0].Name, store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mutate(ctx, podKind, "default", pods[1].Name, func(o api.Object) error {
		o.(*corev1.Pod).Status.Phase = corev1.PodFailed
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "replacements", func() bool {
		n := 0
		for _, p := range podsOwnedBy(t, s, rs.UID) {
			if p.Name == pods[0].Name {
				return false
			}
			if p.Status.Phase == corev1.PodRunning && podReadyCondition(p).Status == corev1.ConditionTrue && p.DeletionTimestamp == nil {
				n++
			}
		}
		return n == 4 && rsStatus(getRS(t, s, "web")) == "replicas=4 ready=4 available=4 observed=3/3"
	})
	stop()
	// Converged: passes write nothing (and are idempotent).
	before := revision(t, s)
	for range 2 {
		if err := c.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if after := revision(t, s); after != before {
		t.Fatalf("converged passes wrote: revision %d -> %d", before, after)
	}
}

// TestReplicaSetMinReadySeconds: a Ready pod is available only after
// minReadySeconds, which the loop notices without any event or resync.
func TestReplicaSetMinReadySeconds(t *testing.T) {
	s := clusterStore(t, "10.244.0.0/16", time.Hour)
	ctx := context.Background()
	startKubelet(t, s, 0, "n1")
	startManager(t, s, "m", []Loop{NewReplicaSets(s, testutil.Logger(t), time.Hour)})
	if err := s.Create(ctx, newRS("slow", 2, 2)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ready, not yet available", func() bool {
		return rsStatus(getRS(t, s, "slow")) == "replicas=2 ready=2 available=0 observed=1/1"
	})
	eventually(t, "available after minReadySeconds", func() bool {
		return rsStatus(getRS(t, s, "slow")) == "replicas=2 ready=2 available=2 observed=1/1"
	})
}
