package cli

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/controller"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// runControllers runs the real ReplicaSet, Deployment and EndpointSlice
// controllers against the test's store, and a stand-in for the agents:
// every pod turns Running with an IP and Ready, and a pod marked for
// deletion is removed.
func runControllers(t *testing.T, s *store.Store) {
	t.Helper()
	log := testutil.Logger(t)
	resync := 200 * time.Millisecond
	m := controller.NewManager(controller.Config{Store: s, Logger: log, Identity: "cli-test", SessionTTL: 2 * time.Second, Resync: resync,
		Loops: []controller.Loop{
			controller.NewReplicaSets(s, log, resync),
			controller.NewDeployments(s, log, resync),
			controller.NewEndpointSlices(s, log, resync),
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { m.Run(ctx); done <- struct{}{} }()
	go func() { fakeAgents(ctx, s); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
}

func fakeAgents(ctx context.Context, s *store.Store) {
	k := podKindOf()
	n := 0
	for ctx.Err() == nil {
		list, rev, err := s.List(ctx, k, "")
		if err != nil {
			return
		}
		for _, o := range list {
			p := o.(*corev1.Pod)
			if p.DeletionTimestamp != nil {
				s.Delete(ctx, k, p.Namespace, p.Name, store.DeleteOptions{Force: true, UID: p.UID})
				continue
			}
			if p.Status.Phase == corev1.PodRunning {
				continue
			}
			n++
			ip := fmt.Sprintf("10.244.%d.%d", n/200, n%200+2)
			s.Mutate(ctx, k, p.Namespace, p.Name, func(o api.Object) error {
				cur := o.(*corev1.Pod)
				if cur.UID != p.UID {
					return nil
				}
				now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
				cur.Spec.NodeName = "n1"
				cur.Status.Phase = corev1.PodRunning
				cur.Status.PodIP, cur.Status.PodIPs = ip, []corev1.PodIP{{IP: ip}}
				cur.Status.Conditions = []corev1.PodCondition{
					{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
					{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
				}
				cur.Status.ContainerStatuses = nil
				for _, c := range cur.Spec.Containers {
					cur.Status.ContainerStatuses = append(cur.Status.ContainerStatuses, corev1.ContainerStatus{
						Name: c.Name, Ready: true, Started: new(true), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}})
				}
				return nil
			})
		}
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		for range s.Watch(wctx, k, "", rev) {
			break // something changed: pass again
		}
		cancel()
	}
}

// TestRolloutWithControllers drives the CLI against the real controllers:
// create, rollout status to the end, restart, history, undo (which the
// controller answers by reusing revision 1's ReplicaSet as revision 3),
// scale, expose and the Service's ready endpoints in describe.
func TestRolloutWithControllers(t *testing.T) {
	s, cfg := testutil.Store(t)
	ep := cfg.ClientURL
	runControllers(t, s)
	must(t, ep, "deployment.apps/web created", "create", "deployment", "web", "--replicas", "3", "--port", "8080", "--", "podnet", "echo-server", "--listen", ":8080")
	must(t, ep, `deployment "web" successfully rolled out`, "rollout", "status", "deployment/web", "--timeout", "30s")
	eventuallyMust(t, ep, "3/3     3            3", "get", "deploy", "web")
	rs1 := strings.TrimPrefix(strings.TrimSpace(must(t, ep, "replicaset.apps/web-", "get", "rs", "-o", "name")), "replicaset.apps/")
	eventuallyMust(t, ep, rs1+"   3         3         3", "get", "rs")
	must(t, ep, "NewReplicaSet:   "+rs1+" (3/3 replicas created)", "describe", "deploy", "web")
	must(t, ep, "Controlled By:  ReplicaSet/"+rs1, "describe", "pod", strings.TrimPrefix(strings.Fields(must(t, ep, "pod/", "get", "pods", "-o", "name"))[0], "pod/"))

	must(t, ep, "deployment.apps/web restarted", "rollout", "restart", "deploy/web")
	must(t, ep, `deployment "web" successfully rolled out`, "rollout", "status", "deployment/web", "--timeout", "30s")
	must(t, ep, "REVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n", "rollout", "history", "deployment/web")
	must(t, ep, "OldReplicaSets:  <none>", "describe", "deploy", "web")

	must(t, ep, "deployment.apps/web rolled back", "rollout", "undo", "deployment/web")
	must(t, ep, `deployment "web" successfully rolled out`, "rollout", "status", "deployment/web", "--timeout", "30s")
	must(t, ep, "REVISION  CHANGE-CAUSE\n2         <none>\n3         <none>\n", "rollout", "history", "deployment/web")
	must(t, ep, "NewReplicaSet:   "+rs1+" (3/3 replicas created)", "describe", "deploy", "web")
	if y := must(t, ep, "kind: Deployment", "get", "deploy", "web", "-o", "yaml"); strings.Contains(y, api.AnnotationRestartedAt) {
		t.Fatalf("undo kept the restart annotation:\n%s", y)
	}

	must(t, ep, "deployment.apps/web scaled", "scale", "deployment", "web", "--replicas", "2")
	must(t, ep, `deployment "web" successfully rolled out`, "rollout", "status", "deployment/web", "--timeout", "30s")
	must(t, ep, "service/web exposed", "expose", "deployment", "web", "--port", "80", "--target-port", "8080")
	two := regexp.MustCompile(`Endpoints:\s+10\.244\.\d+\.\d+:8080,10\.244\.\d+\.\d+:8080\n`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		out := must(t, ep, "Name:", "describe", "svc", "web")
		if two.MatchString(out) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("describe svc never showed the 2 ready endpoints:\n%s", out)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition the controller will reach
	}
	must(t, ep, "web-", "get", "endpointslices", "-l", "kubernetes.io/service-name=web")
}
