package controller

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestFenceposts(t *testing.T) {
	ru := func(surge, unavail intstr.IntOrString) *appsv1.RollingUpdateDeployment {
		return &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavail}
	}
	pct := intstr.FromString
	num := intstr.FromInt32
	cases := []struct {
		ru                *appsv1.RollingUpdateDeployment
		replicas          int32
		surge, unavailabe int32
	}{
		{ru(pct("25%"), pct("25%")), 3, 1, 0}, // surge rounds up, unavailable down
		{ru(pct("25%"), pct("25%")), 4, 1, 1},
		{ru(pct("25%"), pct("25%")), 10, 3, 2},
		{ru(pct("50%"), pct("0%")), 3, 2, 0},
		{ru(num(0), num(0)), 3, 0, 1}, // both zero: one may be unavailable
		{ru(pct("0%"), pct("10%")), 5, 0, 1},
		{ru(num(2), num(5)), 3, 2, 3}, // unavailable at most replicas
		{ru(pct("100%"), pct("100%")), 1, 1, 1},
	}
	for _, tc := range cases {
		s, u := Fenceposts(tc.ru, tc.replicas)
		if s != tc.surge || u != tc.unavailabe {
			t.Errorf("surge %s unavailable %s of %d: got %d/%d, want %d/%d", tc.ru.MaxSurge.String(), tc.ru.MaxUnavailable.String(), tc.replicas, s, u, tc.surge, tc.unavailabe)
		}
	}
}

func TestTemplateHash(t *testing.T) {
	a := podTemplate("web")
	h := TemplateHash(&a, nil)
	if h == "" || strings.ContainsAny(h, "aeiou013") {
		t.Fatalf("hash %q", h)
	}
	b := a.DeepCopy()
	b.Labels[api.LabelPodTemplateHash] = h
	if TemplateHash(b, nil) != h {
		t.Fatal("the hash label changes the hash")
	}
	b.Spec.Containers[0].Image = "other"
	if TemplateHash(b, nil) == h {
		t.Fatal("another template, the same hash")
	}
	one := int32(1)
	if TemplateHash(&a, &one) == h {
		t.Fatal("collisionCount does not change the hash")
	}
}

func newDeployment(name string, replicas int32, mutate ...func(*appsv1.Deployment)) *appsv1.Deployment {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}, Template: podTemplate(name)}}
	for _, m := range mutate {
		m(d)
	}
	return d
}

func rollingUpdate(surge, unavail intstr.IntOrString) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) {
		d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
			RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavail}}
	}
}

func getDeploy(t *testing.T, s *store.Store, name string) *appsv1.Deployment {
	t.Helper()
	o, err := s.Get(context.Background(), deployKind, "default", name)
	if err != nil {
		t.Fatal(err)
	}
	return o.(*appsv1.Deployment)
}

func mutateDeploy(t *testing.T, s *store.Store, name string, f func(*appsv1.Deployment)) {
	t.Helper()
	if _, err := s.Mutate(context.Background(), deployKind, "default", name, func(o api.Object) error {
		f(o.(*appsv1.Deployment))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// setVersion changes the template (a new rollout).
func setVersion(v string) func(*appsv1.Deployment) {
	return func(d *appsv1.Deployment) {
		d.Spec.Template.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "VERSION", Value: v}}
	}
}

// complete reports whether a Deployment finished rolling out n replicas.
func complete(d *appsv1.Deployment, n int32) bool {
	st := d.Status
	p := deployCondition(st.Conditions, appsv1.DeploymentProgressing)
	a := deployCondition(st.Conditions, appsv1.DeploymentAvailable)
	return st.ObservedGeneration == d.Generation && st.Replicas == n && st.UpdatedReplicas == n && st.ReadyReplicas == n &&
		st.AvailableReplicas == n && st.UnavailableReplicas == 0 && p != nil && p.Reason == ReasonNewRSAvailable &&
		a != nil && a.Status == corev1.ConditionTrue
}

func waitComplete(t *testing.T, s *store.Store, name string, n int32) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	eventually(t, fmt.Sprintf("deployment %s complete with %d replicas", name, n), func() bool {
		d = getDeploy(t, s, name)
		return complete(d, n)
	})
	return d
}

// ownedRS lists a Deployment's ReplicaSets by revision.
func ownedRS(t *testing.T, s *store.Store, d *appsv1.Deployment) []*appsv1.ReplicaSet {
	t.Helper()
	objs, _, err := s.List(context.Background(), rsKind, "default")
	if err != nil {
		t.Fatal(err)
	}
	var out []*appsv1.ReplicaSet
	for _, o := range objs {
		if ref := metav1.GetControllerOf(o); ref != nil && ref.UID == d.UID {
			out = append(out, o.(*appsv1.ReplicaSet))
		}
	}
	sort.Slice(out, func(i, j int) bool { return revisionOf(out[i]) < revisionOf(out[j]) })
	return out
}

func rsSummary(rss []*appsv1.ReplicaSet) string {
	var parts []string
	for _, rs := range rss {
		parts = append(parts, fmt.Sprintf("r%d:%d", revisionOf(rs), replicasOf(rs)))
	}
	return strings.Join(parts, " ")
}

// podMonitor follows every pod change through a watch and checks a
// predicate on each state of the store's pods.
type podMonitor struct {
	mu     sync.Mutex
	pods   map[string]*corev1.Pod
	errs   []string
	cancel func()
	done   chan struct{}
}

func watchPods(t *testing.T, s *store.Store, check func(pods map[string]*corev1.Pod) string) *podMonitor {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	objs, rev, err := s.List(ctx, podKind, "default")
	if err != nil {
		t.Fatal(err)
	}
	m := &podMonitor{pods: map[string]*corev1.Pod{}, cancel: cancel, done: make(chan struct{})}
	for _, o := range objs {
		m.pods[o.GetName()] = o.(*corev1.Pod)
	}
	go func() {
		defer close(m.done)
		for ev := range s.Watch(ctx, podKind, "default", rev) {
			if ev.Err != nil {
				m.mu.Lock()
				if ctx.Err() == nil {
					m.errs = append(m.errs, "watch: "+ev.Err.Error())
				}
				m.mu.Unlock()
				return
			}
			m.mu.Lock()
			if ev.Type == store.Deleted {
				delete(m.pods, ev.Object.GetName())
			} else {
				m.pods[ev.Object.GetName()] = ev.Object.(*corev1.Pod)
			}
			if msg := check(m.pods); msg != "" && len(m.errs) < 10 {
				m.errs = append(m.errs, fmt.Sprintf("at revision %d: %s", ev.Revision, msg))
			}
			m.mu.Unlock()
		}
	}()
	t.Cleanup(m.stop)
	return m
}

func (m *podMonitor) stop() {
	m.cancel()
	<-m.done
}

func (m *podMonitor) failures() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.errs...)
}

func deploymentLoops(t *testing.T, s *store.Store) (*ReplicaSets, *Deployments) {
	return NewReplicaSets(s, testutil.Logger(t), 200*time.Millisecond), NewDeployments(s, testutil.Logger(t), 200*time.Millisecond)
}

// TestRollingUpdate: with pods turning Ready after a delay, a rollout
// never has more than replicas+maxSurge pods nor fewer than
// replicas-maxUnavailable available, and ends with the new ReplicaSet at
// replicas and the old one at 0; for integers and for percentages with
// minReadySeconds.
func TestRollingUpdate(t *testing.T) {
	cases := []struct {
		name              string
		replicas          int32
		surge, unavail    intstr.IntOrString
		minReady          int32
		maxPods, minAvail int
	}{
		{"ints", 4, intstr.FromInt32(1), intstr.FromInt32(1), 0, 5, 3},
		{"percent, minReadySeconds", 3, intstr.FromString("25%"), intstr.FromString("25%"), 1, 4, 3},
		{"surge only", 2, intstr.FromString("100%"), intstr.FromInt32(0), 0, 4, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := clusterStore(t, "10.244.0.0/16", time.Hour)
			startKubelet(t, s, 150*time.Millisecond, "n1", "n2")
			rc, dc := deploymentLoops(t, s)
			startManager(t, s, "m", []Loop{rc, dc})
			d := newDeployment("web", tc.replicas, rollingUpdate(tc.surge, tc.unavail), func(d *appsv1.Deployment) { d.Spec.MinReadySeconds = tc.minReady })
			if err := s.Create(context.Background(), d); err != nil {
				t.Fatal(err)
			}
			waitComplete(t, s, "web", tc.replicas)
			now := time.Now
			mon := watchPods(t, s, func(pods map[string]*corev1.Pod) string {
				active, avail := 0, 0
				for _, p := range pods {
					if p.DeletionTimestamp != nil {
						continue
					}
					active++
					if ok, _ := podAvailable(p, tc.minReady, now()); ok {
						avail++
					}
				}
				if active > tc.maxPods || avail < tc.minAvail {
					return fmt.Sprintf("%d pods (max %d), %d available (min %d)", active, tc.maxPods, avail, tc.minAvail)
				}
				return ""
			})
			mutateDeploy(t, s, "web", setVersion("2"))
			d = waitComplete(t, s, "web", tc.replicas)
			mon.stop()
			for _, f := range mon.failures() {
				t.Error(f)
			}
			rss := ownedRS(t, s, d)
			if got := rsSummary(rss); got != fmt.Sprintf("r1:0 r2:%d", tc.replicas) {
				t.Fatalf("replica sets %s", got)
			}
			hash := TemplateHash(&d.Spec.Template, nil)
			if rss[1].Name != "web-"+hash || rss[1].Spec.Selector.MatchLabels[api.LabelPodTemplateHash] != hash || rss[1].Spec.Template.Labels[api.LabelPodTemplateHash] != hash {
				t.Fatalf("new replica set %s, selector %v", rss[1].Name, rss[1].Spec.Selector)
			}
			if d.Annotations[api.AnnotationRevision] != "2" {
				t.Fatalf("deployment revision %q", d.Annotations[api.AnnotationRevision])
			}
			for _, p := range podsOwnedBy(t, s, rss[1].UID) {
				if p.Labels[api.LabelPodTemplateHash] != hash {
					t.Fatalf("pod %s labels %v", p.Name, p.Labels)
				}
			}
		})
	}
}

// TestRecreate: no new pod exists while an old one does.
func TestRecreate(t *testing.T) {
	s := clusterStore(t, "10.244.0.0/16", time.Hour)
	startKubelet(t, s, 50*time.Millisecond, "n1", "n2")
	rc, dc := deploymentLoops(t, s)
	startManager(t, s, "m", []Loop{rc, dc})
	d := newDeployment("web", 3, func(d *appsv1.Deployment) { d.Spec.Strategy.Type = appsv1.RecreateDeploymentStrategyType })
	if err := s.Create(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	d = waitComplete(t, s, "web", 3)
	oldHash := TemplateHash(&d.Spec.Template, nil)
	mon := watchPods(t, s, func(pods map[string]*corev1.Pod) string {
		var old, nu int
		for _, p := range pods {
			if p.Labels[api.LabelPodTemplateHash] == oldHash {
				old++
			} else {
				nu++
			}
		}
		if old > 0 && nu > 0 {
			return fmt.Sprintf("%d old and %d new pods at once", old, nu)
		}
		return ""
	})
	mutateDeploy(t, s, "web", setVersion("2"))
	d = waitComplete(t, s, "web", 3)
	mon.stop()
	for _, f := range mon.failures() {
		t.Error(f)
	}
	if got := rsSummary(ownedRS(t, s, d)); got != "r1:0 r2:3" {
		t.Fatalf("replica sets %s", got)
	}
}

// TestScaleDeployment: 3 -> 10 -> 1 with one ReplicaSet, then idle passes
// write nothing.
func TestScaleDeployment(t *testing.T) {
	s := clusterStore(t, "10.244.0.0/16", time.Hour)
	ctx := context.Background()
	startKubelet(t, s, 0, "n1", "n2")
	rc, dc := deploymentLoops(t, s)
	_, stop := startManager(t, s, "m", []Loop{rc, dc})
	if err := s.Create(ctx, newDeployment("web", 3)); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, s, "web", 3)
	for _, n := range []int32{10, 1} {
		mutateDeploy(t, s, "web", func(d *appsv1.Deployment) { d.Spec.Replicas = &n })
		d := waitComplete(t, s, "web", n)
		if got := rsSummary(ownedRS(t, s, d)); got != fmt.Sprintf("r1:%d", n) {
			t.Fatalf("scaled to %d: replica sets %s", n, got)
		}
		eventually(t, fmt.Sprintf("%d pods, the others gone, the replica set's status current", n), func() bool {
			rs := ownedRS(t, s, d)[0]
			return len(podsOwnedBy(t, s, rs.UID)) == int(n) && rsStatus(rs) == fmt.Sprintf("replicas=%d ready=%d available=%d observed=%d/%d", n, n, n, rs.Generation, rs.Generation)
		})
	}
	stop()
	before := revision(t, s)
	for range 2 {
		if err := dc.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		if err := rc.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if after := revision(t, s); after != before {
		t.Fatalf("converged passes wrote: revision %d -> %d", before, after)
	}
}

// TestRevisionHistoryAndUndo: old ReplicaSets beyond revisionHistoryLimit
// are deleted oldest first; an old template coming back reuses its
// ReplicaSet with the next revision.
func TestRevisionHistoryAndUndo(t *testing.T) {
	s := clusterStore(t, "10.244.0.0/16", time.Hour)
	startKubelet(t, s, 0, "n1")
	rc, dc := deploymentLoops(t, s)
	startManager(t, s, "m", []Loop{rc, dc})
	d := newDeployment("web", 2, func(d *appsv1.Deployment) { d.Spec.RevisionHistoryLimit = ptr(int32(2)) })
	if err := s.Create(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, s, "web", 2)
	for v := 2; v <= 5; v++ {
		mutateDeploy(t, s, "web", setVersion(fmt.Sprint(v)))
		d = waitComplete(t, s, "web", 2)
	}
	eventually(t, "history trimmed to 2 old replica sets", func() bool { return rsSummary(ownedRS(t, s, d)) == "r3:0 r4:0 r5:2" })
	r4 := ownedRS(t, s, d)[1]
	// Undo to revision 4, as `podnet rollout undo` does: its template back.
	mutateDeploy(t, s, "web", func(d *appsv1.Deployment) {
		d.Spec.Template = *r4.Spec.Template.DeepCopy()
		delete(d.Spec.Template.Labels, api.LabelPodTemplateHash)
	})
	d = waitComplete(t, s, "web", 2)
	rss := ownedRS(t, s, d)
	if got := rsSummary(rss); got != "r3:0 r5:0 r6:2" {
		t.Fatalf("after undo: %s", got)
	}
	if rss[2].UID != r4.UID || d.Annotations[api.AnnotationRevision] != "6" {
		t.Fatalf("undo made a new replica set %s (had %s), deployment revision %q", rss[2].Name, r4.Name, d.Annotations[api.AnnotationRevision])
	}
}

// TestProgressDeadline: pods that never turn Ready make Progressing False,
// ProgressDeadlineExceeded, after progressDeadlineSeconds; Available
// stays False.
func TestProgressDeadline(t *testing.T) {
	s := clusterStore(t, "10.244.0.0/16", time.Hour)
	startKubelet(t, s, 0, "n1")
	rc, dc := deploymentLoops(t, s)
	startManager(t, s, "m", []Loop{rc, dc})
	d := newDeployment("stuck", 2, func(d *appsv1.Deployment) {
		d.Spec.ProgressDeadlineSeconds = ptr(int32(2))
		d.Spec.Template.Labels[holdLabel] = "yes"
	})
	if err := s.Create(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ProgressDeadlineExceeded", func() bool {
		d := getDeploy(t, s, "stuck")
		p := deployCondition(d.Status.Conditions, appsv1.DeploymentProgressing)
		a := deployCondition(d.Status.Conditions, appsv1.DeploymentAvailable)
		return p != nil && p.Status == corev1.ConditionFalse && p.Reason == ReasonDeadlineExceeded &&
			a != nil && a.Status == corev1.ConditionFalse && d.Status.UnavailableReplicas == 2 && d.Status.UpdatedReplicas == 2
	})
}

// TestDeploymentBehindService runs the default loops together, as `podnet
// server` does: a Deployment's pods are scheduled on two nodes and listed
// by its Service's slices; scaling 3 -> 10 -> 1 shows in the slices within
// a second of the pods' readiness; deleting the Deployment empties them.
func TestDeploymentBehindService(t *testing.T) {
	s := clusterStore(t, "10.244.0.0/16", time.Hour)
	ctx := context.Background()
	startNode(t, s, "n1", map[string]string{LabelZone: "a"})
	startNode(t, s, "n2", map[string]string{LabelZone: "b"})
	startKubelet(t, s, 100*time.Millisecond)
	startManager(t, s, "m", nil)
	d := newDeployment("web", 3)
	d.Spec.Template.Spec.Containers[0].Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	if err := s.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	svc := webService()
	svc.UID = ""
	if err := s.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	readyPods := func() int {
		objs, _, _ := s.List(ctx, podKind, "default")
		n := 0
		for _, o := range objs {
			if p := o.(*corev1.Pod); p.DeletionTimestamp == nil && podReadyCondition(p).Status == corev1.ConditionTrue {
				n++
			}
		}
		return n
	}
	for _, n := range []int32{3, 10, 1} {
		mutateDeploy(t, s, "web", func(d *appsv1.Deployment) { d.Spec.Replicas = &n })
		eventually(t, fmt.Sprintf("%d ready pods", n), func() bool { return readyPods() == int(n) })
		start := time.Now()
		eventually(t, fmt.Sprintf("%d ready endpoints", n), func() bool { return len(readyAddrs(t, s, "default", "web")) == int(n) })
		if d := time.Since(start); d > time.Second {
			t.Fatalf("scaled to %d: the slices took %s to follow", n, d)
		}
		waitComplete(t, s, "web", n)
	}
	for _, sl := range slicesOf(t, s, "default", "web") {
		for _, ep := range sl.Endpoints {
			if ep.Zone == nil || ep.NodeName == nil || *ep.Zone != map[string]string{"n1": "a", "n2": "b"}[*ep.NodeName] {
				t.Fatalf("endpoint %+v", ep)
			}
		}
	}
	if _, err := s.Delete(ctx, deployKind, "default", "web", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "no endpoints, one placeholder slice", func() bool {
		sl := slicesOf(t, s, "default", "web")
		return len(sl) == 1 && len(sl[0].Endpoints) == 0
	})
	eventually(t, "no pods and no replica sets", func() bool {
		p, _, _ := s.List(ctx, podKind, "default")
		r, _, _ := s.List(ctx, rsKind, "default")
		return len(p) == 0 && len(r) == 0
	})
}

// FuzzFenceposts: any maxSurge/maxUnavailable that passes validation
// resolves without panicking to values a rollout can use: never negative,
// unavailable at most replicas, never both zero with replicas > 0.
func FuzzFenceposts(f *testing.F) {
	f.Add("25%", "25%", int32(3))
	f.Add("0", "0", int32(1))
	f.Add("100%", "0%", int32(10))
	f.Fuzz(func(t *testing.T, surge, unavail string, replicas int32) {
		if replicas < 0 || replicas > 1<<20 {
			return
		}
		parse := func(s string) intstr.IntOrString { return intstr.Parse(s) }
		d := newDeployment("web", replicas, rollingUpdate(parse(surge), parse(unavail)))
		api.DefaultDeployment(d)
		if len(api.ValidateDeployment(d)) > 0 {
			return
		}
		s, u := Fenceposts(d.Spec.Strategy.RollingUpdate, replicas)
		if s < 0 || u < 0 || u > replicas || (replicas > 0 && s == 0 && u == 0) {
			t.Fatalf("surge %q unavailable %q of %d: %d/%d", surge, unavail, replicas, s, u)
		}
	})
}

// TestPausedDeployment: a paused Deployment is scaled but not rolled out;
// resuming rolls the new template out.
func TestPausedDeployment(t *testing.T) {
	s := clusterStore(t, "10.244.0.0/16", time.Hour)
	startKubelet(t, s, 0, "n1")
	rc, dc := deploymentLoops(t, s)
	startManager(t, s, "m", []Loop{rc, dc})
	if err := s.Create(context.Background(), newDeployment("web", 2)); err != nil {
		t.Fatal(err)
	}
	d := waitComplete(t, s, "web", 2)
	mutateDeploy(t, s, "web", func(d *appsv1.Deployment) {
		d.Spec.Paused = true
		d.Spec.Replicas = ptr(int32(3))
		setVersion("2")(d)
	})
	eventually(t, "paused: scaled, Progressing Unknown", func() bool {
		d := getDeploy(t, s, "web")
		p := deployCondition(d.Status.Conditions, appsv1.DeploymentProgressing)
		return d.Status.ObservedGeneration == d.Generation && d.Status.AvailableReplicas == 3 && p != nil && p.Reason == ReasonPaused
	})
	if got := rsSummary(ownedRS(t, s, d)); got != "r1:3" {
		t.Fatalf("paused: replica sets %s", got)
	}
	mutateDeploy(t, s, "web", func(d *appsv1.Deployment) { d.Spec.Paused = false })
	d = waitComplete(t, s, "web", 3)
	if got := rsSummary(ownedRS(t, s, d)); got != "r1:0 r2:3" {
		t.Fatalf("resumed: replica sets %s", got)
	}
}
