package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func pod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "c", Command: []string{"sleep", "infinity"},
		}}},
	}
}

var podKind, _ = api.KindOf(&corev1.Pod{})

func TestCreateGetUpdateConflict(t *testing.T) {
	s, _ := testutil.Store(t)
	ctx := context.Background()
	p := pod("web")
	if err := s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	if p.UID == "" || p.ResourceVersion == "" || p.CreationTimestamp.IsZero() {
		t.Fatalf("create did not set uid/rv/timestamp: %+v", p.ObjectMeta)
	}
	if err := s.Create(ctx, pod("web")); !apierrors.IsAlreadyExists(err) {
		t.Fatalf("second create: want AlreadyExists, got %v", err)
	}
	got, err := s.Get(ctx, podKind, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	if got.GetUID() != p.UID || got.GetResourceVersion() != p.ResourceVersion {
		t.Fatalf("get: %v/%v, want %v/%v", got.GetUID(), got.GetResourceVersion(), p.UID, p.ResourceVersion)
	}
	if got.GetObjectKind().GroupVersionKind().Kind != "Pod" {
		t.Fatalf("get: type meta not set")
	}
	// A status update with the current rv succeeds; a second one with the
	// old rv is a Conflict and changes nothing.
	stale := got.DeepCopyObject().(*corev1.Pod)
	gp := got.(*corev1.Pod)
	gp.Status.PodIP = "10.0.0.2"
	if err := s.Update(ctx, gp); err != nil {
		t.Fatal(err)
	}
	stale.Status.PodIP = "10.0.0.99"
	err = s.Update(ctx, stale)
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "has been modified") {
		t.Fatalf("stale update: want Conflict, got %v", err)
	}
	now, _ := s.Get(ctx, podKind, "default", "web")
	if now.(*corev1.Pod).Status.PodIP != "10.0.0.2" {
		t.Fatalf("stale write was stored: %s", now.(*corev1.Pod).Status.PodIP)
	}
	// Spec is immutable.
	gp = now.(*corev1.Pod)
	gp.Spec.Containers[0].Command = []string{"true"}
	if err := s.Update(ctx, gp); !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), "spec") {
		t.Fatalf("spec update: want BadRequest naming spec, got %v", err)
	}
}

func TestCreateInMissingNamespace(t *testing.T) {
	s, _ := testutil.Store(t)
	p := pod("x")
	p.Namespace = "nope"
	err := s.Create(context.Background(), p)
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), `namespaces "nope" not found`) {
		t.Fatalf("want namespace NotFound, got %v", err)
	}
}

func TestApply(t *testing.T) {
	s, _ := testutil.Store(t)
	ctx := context.Background()
	res, err := s.Apply(ctx, pod("a"))
	if err != nil || res != store.Created {
		t.Fatalf("first apply: %v %v", res, err)
	}
	res, err = s.Apply(ctx, pod("a"))
	if err != nil || res != store.Unchanged {
		t.Fatalf("second apply: %v %v", res, err)
	}
	p := pod("a")
	p.Labels["tier"] = "front"
	res, err = s.Apply(ctx, p)
	if err != nil || res != store.Configured {
		t.Fatalf("label apply: %v %v", res, err)
	}
	p = pod("a")
	p.ResourceVersion = "1"
	if _, err := s.Apply(ctx, p); !apierrors.IsConflict(err) {
		t.Fatalf("stale rv apply: want Conflict, got %v", err)
	}
}

func TestGracefulPodDelete(t *testing.T) {
	s, _ := testutil.Store(t)
	ctx := context.Background()
	p := pod("bound")
	p.Spec.NodeName = "n1"
	if err := s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	gone, err := s.Delete(ctx, podKind, "default", "bound", store.DeleteOptions{})
	if err != nil || gone {
		t.Fatalf("graceful delete: gone=%v err=%v", gone, err)
	}
	o, err := s.Get(ctx, podKind, "default", "bound")
	if err != nil || o.GetDeletionTimestamp() == nil {
		t.Fatalf("pod not marked for deletion: %v", err)
	}
	gone, err = s.Delete(ctx, podKind, "default", "bound", store.DeleteOptions{Force: true, UID: p.UID})
	if err != nil || !gone {
		t.Fatalf("force delete: gone=%v err=%v", gone, err)
	}
	if _, err := s.Get(ctx, podKind, "default", "bound"); !apierrors.IsNotFound(err) {
		t.Fatalf("want NotFound after delete, got %v", err)
	}
}

func TestWatch(t *testing.T) {
	s, _ := testutil.Store(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, rev, err := s.List(ctx, podKind, "")
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx, podKind, "", rev)
	if err := s.Create(ctx, pod("w")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Delete(ctx, podKind, "default", "w", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var types []store.EventType
	timeout := time.After(10 * time.Second)
	for len(types) < 2 {
		select {
		case e := <-ch:
			if e.Err != nil {
				t.Fatal(e.Err)
			}
			if e.Object.GetName() != "w" {
				t.Fatalf("event for %q", e.Object.GetName())
			}
			types = append(types, e.Type)
		case <-timeout:
			t.Fatalf("watch: got %v", types)
		}
	}
	if types[0] != store.Added || types[1] != store.Deleted {
		t.Fatalf("watch events %v", types)
	}
}

func TestEmbeddedSurvivesRestart(t *testing.T) {
	cfg := testutil.EtcdConfig(t)
	ctx := context.Background()
	start := func() (*store.Embedded, *store.Store) {
		e, err := store.StartEmbedded(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		cli, err := store.Connect(store.ClientConfig{Endpoints: e.Endpoints()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		return e, store.New(cli)
	}
	e, s := start()
	if err := s.EnsureNamespaces(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	var uids []string
	for _, n := range []string{"p1", "p2", "p3"} {
		p := pod(n)
		if err := s.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		uids = append(uids, string(p.UID))
	}
	e.Close()
	e2, s2 := start()
	defer e2.Close()
	objs, _, err := s2.List(ctx, podKind, "default")
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 3 {
		t.Fatalf("after restart: %d pods, want 3", len(objs))
	}
	for i, o := range objs {
		if string(o.GetUID()) != uids[i] || o.(*corev1.Pod).Spec.Containers[0].Command[0] != "sleep" {
			t.Fatalf("pod %s changed across restart", o.GetName())
		}
	}
}
