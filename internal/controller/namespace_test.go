package controller

import (
	"context"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestNamespaceDeletion: deleting a namespace deletes what is in it (a
// bound pod gracefully, through its node), then the namespace.
func TestNamespaceDeletion(t *testing.T) {
	s := clusterStore(t, "10.244.0.0/16", time.Hour)
	ctx := context.Background()
	if err := s.EnsureNamespaces(ctx, "team"); err != nil {
		t.Fatal(err)
	}
	startManager(t, s, "m", []Loop{NewNamespaces(s, testutil.Logger(t), 200*time.Millisecond)})
	bound := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bound", Namespace: "team"},
		Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Command: []string{"sleep", "1"}}}}}
	loose := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "loose", Namespace: "team"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Command: []string{"sleep", "1"}}}}}
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "team"},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}
	for _, o := range []api.Object{bound, loose, svc} {
		if err := s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Delete(ctx, nsKind, "", "team", store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the bound pod marked for deletion, the rest gone", func() bool {
		o, err := s.Get(ctx, podKind, "team", "bound")
		_, e1 := s.Get(ctx, podKind, "team", "loose")
		_, e2 := s.Get(ctx, svcKind, "team", "web")
		return err == nil && o.GetDeletionTimestamp() != nil && apierrors.IsNotFound(e1) && apierrors.IsNotFound(e2)
	})
	if _, err := s.Get(ctx, nsKind, "", "team"); err != nil {
		t.Fatalf("namespace removed while a pod is stopping: %v", err)
	}
	// The node's agent finishes the pod: then the namespace goes.
	if _, err := s.Delete(ctx, podKind, "team", "bound", store.DeleteOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "namespace gone", func() bool {
		_, err := s.Get(ctx, nsKind, "", "team")
		return apierrors.IsNotFound(err)
	})
}
