package controller

import (
	"context"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func evictionStore(t *testing.T, timeout time.Duration) *store.Store {
	t.Helper()
	s, _ := testutil.Store(t)
	c := api.ClusterConfig{ClusterCIDR: "10.244.0.0/16", NodeCIDRMaskSize: 24}
	c.NodeGracePeriod.Duration = time.Hour
	c.PodEvictionTimeout.Duration = timeout
	if _, err := s.EnsureClusterConfig(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestPodEviction: when a node's agent dies its pods turn not ready at
// once, are evicted after the pod eviction timeout (not before), are
// replaced on the live node, and are removed after their grace period.
func TestPodEviction(t *testing.T) {
	const timeout = 2 * time.Second
	s := evictionStore(t, timeout)
	ctx := context.Background()
	log := testutil.Logger(t)
	_, stopN1 := startNode(t, s, "n1", nil)
	startNode(t, s, "n2", nil)
	kl := startKubelet(t, s, 0) // the scheduler binds
	startManager(t, s, "m", []Loop{NewNodeLifecycle(s, log, 200*time.Millisecond), NewScheduler(s, log, 200*time.Millisecond),
		NewReplicaSets(s, log, 200*time.Millisecond), NewPodGC(s, log, 200*time.Millisecond)})
	rs := newRS("web", 4, 0)
	rs.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr(int64(1))
	if err := s.Create(ctx, rs); err != nil {
		t.Fatal(err)
	}
	byNode := func() map[string][]*corev1.Pod {
		out := map[string][]*corev1.Pod{}
		for _, p := range podsOwnedBy(t, s, rs.UID) {
			out[p.Spec.NodeName] = append(out[p.Spec.NodeName], p)
		}
		return out
	}
	eventually(t, "4 ready pods on 2 nodes", func() bool {
		n := byNode()
		return rsStatus(getRS(t, s, "web")) == "replicas=4 ready=4 available=4 observed=1/1" && len(n["n1"]) == 2 && len(n["n2"]) == 2
	})
	doomed := byNode()["n1"]
	kl.stopNode("n1")
	stopN1() // revokes the lease: n1 turns NotReady
	dead := time.Now()
	eventually(t, "n1's pods not ready", func() bool {
		for _, p := range byNode()["n1"] {
			if c := podReadyCondition(p); c.Status != corev1.ConditionFalse || c.Reason != ReasonNodeNotReady {
				return false
			}
		}
		return true
	})
	if d := time.Since(dead); d > timeout {
		t.Fatalf("pods marked not ready after %s, past the eviction timeout", d)
	}
	for _, p := range byNode()["n1"] {
		if p.DeletionTimestamp != nil {
			t.Fatalf("pod %s evicted before the timeout (%s after the node died)", p.Name, time.Since(dead))
		}
	}
	eventually(t, "replacements ready on n2", func() bool {
		n := byNode()
		ready := 0
		for _, p := range n["n2"] {
			if p.DeletionTimestamp == nil && podReadyCondition(p).Status == corev1.ConditionTrue {
				ready++
			}
		}
		return ready == 4 && getRS(t, s, "web").Status.ReadyReplicas == 4
	})
	if d := time.Since(dead); d < timeout {
		t.Fatalf("replaced after %s, before the eviction timeout %s", d, timeout)
	}
	eventually(t, "evicted pods removed after their grace period", func() bool {
		for _, p := range doomed {
			if _, err := s.Get(ctx, podKind, "default", p.Name); !apierrors.IsNotFound(err) {
				return false
			}
		}
		return true
	})
}

// TestOrphanPods: a pod bound to a node that does not exist is removed
// once the node has been missing for OrphanDelay; pods of live nodes and
// unbound pods stay.
func TestOrphanPods(t *testing.T) {
	s := evictionStore(t, time.Hour)
	ctx := context.Background()
	startNode(t, s, "n1", nil)
	c := NewPodGC(s, testutil.Logger(t), time.Hour)
	now := time.Now()
	c.now = func() time.Time { return now }
	for _, p := range []*corev1.Pod{mkPod("ghost", onNode("gone")), mkPod("live", onNode("n1")), mkPod("loose", onNode(""))} {
		createPod(t, s, p)
	}
	if err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, podKind, "default", "ghost"); err != nil {
		t.Fatalf("removed before OrphanDelay: %v", err)
	}
	now = now.Add(DefaultOrphanDelay)
	if err := c.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, podKind, "default", "ghost"); !apierrors.IsNotFound(err) {
		t.Fatalf("orphan pod: %v", err)
	}
	for _, n := range []string{"live", "loose"} {
		if p := pod(t, s, n); p.DeletionTimestamp != nil || podReadyCondition(p).Status != corev1.ConditionTrue {
			t.Fatalf("pod %s touched: %+v", n, p.Status)
		}
	}
}

// TestGarbageCollection: deleting a Deployment deletes its ReplicaSets and
// their pods; deleting a ReplicaSet deletes its pods; an object owned by
// a kind podnet does not know, or by an owner that exists, stays.
func TestGarbageCollection(t *testing.T) {
	s := clusterStore(t, "10.244.0.0/16", time.Hour)
	ctx := context.Background()
	log := testutil.Logger(t)
	startKubelet(t, s, 0, "n1")
	rc, dc := deploymentLoops(t, s)
	startManager(t, s, "m", []Loop{rc, dc, NewGarbageCollector(s, log, time.Hour)})
	d := newDeployment("web", 2)
	if err := s.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	rs := newRS("solo", 2, 0)
	if err := s.Create(ctx, rs); err != nil {
		t.Fatal(err)
	}
	foreign := mkPod("foreign")
	foreign.OwnerReferences = []metav1.OwnerReference{{APIVersion: "example.com/v1", Kind: "Widget", Name: "w", UID: "w-uid", Controller: ptr(true)}}
	createPod(t, s, foreign)
	waitComplete(t, s, "web", 2)
	eventually(t, "solo's pods", func() bool { return getRS(t, s, "solo").Status.ReadyReplicas == 2 })
	webRS := ownedRS(t, s, d)[0]
	if _, err := s.Delete(ctx, rsKind, "default", "solo", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "solo's pods gone", func() bool { return len(podsOwnedBy(t, s, rs.UID)) == 0 })
	if got := len(podsOwnedBy(t, s, webRS.UID)); got != 2 {
		t.Fatalf("web's pods: %d", got)
	}
	if _, err := s.Delete(ctx, deployKind, "default", "web", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "web's replica set and pods gone", func() bool {
		_, err := s.Get(ctx, rsKind, "default", webRS.Name)
		return apierrors.IsNotFound(err) && len(podsOwnedBy(t, s, webRS.UID)) == 0
	})
	if p := pod(t, s, "foreign"); p.DeletionTimestamp != nil {
		t.Fatal("pod owned by an unknown kind deleted")
	}
}

// TestDeploymentRecreatedByName: a Deployment deleted and created again at
// once gets its ReplicaSet under the same hash name once the garbage
// collector has removed the earlier one (no collision count).
func TestDeploymentRecreatedByName(t *testing.T) {
	s := clusterStore(t, "10.244.0.0/16", time.Hour)
	ctx := context.Background()
	startKubelet(t, s, 0, "n1")
	rc, dc := deploymentLoops(t, s)
	startManager(t, s, "m", []Loop{rc, dc})
	gc := NewGarbageCollector(s, testutil.Logger(t), time.Hour)
	if err := s.Create(ctx, newDeployment("web", 2)); err != nil {
		t.Fatal(err)
	}
	first := waitComplete(t, s, "web", 2)
	if _, err := s.Delete(ctx, deployKind, "default", "web", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, newDeployment("web", 2)); err != nil {
		t.Fatal(err)
	}
	// The earlier ReplicaSet still holds the name: no collision, a wait.
	if err := dc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if d := getDeploy(t, s, "web"); d.Status.CollisionCount != nil || len(ownedRS(t, s, d)) != 0 {
		t.Fatalf("collisionCount %v, replica sets %v", d.Status.CollisionCount, sliceNamesRS(ownedRS(t, s, d)))
	}
	for range 2 { // the ReplicaSet, then its pods
		if err := gc.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	d := waitComplete(t, s, "web", 2)
	rss := ownedRS(t, s, d)
	if d.UID == first.UID || len(rss) != 1 || rss[0].Name != "web-"+TemplateHash(&d.Spec.Template, nil) || d.Status.CollisionCount != nil {
		t.Fatalf("replica sets %v, collisionCount %v", sliceNamesRS(rss), d.Status.CollisionCount)
	}
}

func sliceNamesRS(rss []*appsv1.ReplicaSet) []string {
	var out []string
	for _, rs := range rss {
		out = append(out, rs.Name)
	}
	return out
}
