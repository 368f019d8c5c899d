package cli

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// syncBuffer is the output of a command running in the background: safe
// to write and read at once, and waitable.
type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{})} }

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.changed)
	s.changed = make(chan struct{})
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor waits until the output contains want.
func (s *syncBuffer) waitFor(t *testing.T, want string) {
	t.Helper()
	s.waitForN(t, want, 1)
}

// waitForN waits until the output contains want n times.
func (s *syncBuffer) waitForN(t *testing.T, want string, n int) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		s.mu.Lock()
		got, ch := s.b.String(), s.changed
		s.mu.Unlock()
		if strings.Count(got, want) >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("waiting for %q; output so far:\n%s", want, got)
		}
	}
}

// bgCommand is a CLI command running in the background.
type bgCommand struct {
	done chan struct{}
	err  error
}

// background runs the CLI until it returns or the test ends.
func background(t *testing.T, ep string, args ...string) (*syncBuffer, *bgCommand) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := newSyncBuffer()
	root := NewRoot(out, out)
	root.SetArgs(append([]string{"--etcd-endpoints", ep}, args...))
	c := &bgCommand{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.err = root.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Errorf("podnet %v did not stop", args)
		}
	})
	return out, c
}

func wait(t *testing.T, c *bgCommand) error {
	t.Helper()
	select {
	case <-c.done:
		return c.err
	case <-time.After(20 * time.Second):
		t.Fatal("command did not finish")
		return nil
	}
}

func kindOf(t *testing.T, o api.Object) *api.Kind {
	k, err := api.KindOf(o)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// setDeploymentStatus writes a deployment's status as the controller would.
func setDeploymentStatus(t *testing.T, s *store.Store, name string, fn func(d *appsv1.Deployment)) {
	t.Helper()
	_, err := s.Mutate(context.Background(), kindOf(t, &appsv1.Deployment{}), "default", name, func(o api.Object) error {
		fn(o.(*appsv1.Deployment))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func getDeployment(t *testing.T, s *store.Store, name string) *appsv1.Deployment {
	t.Helper()
	o, err := s.Get(context.Background(), kindOf(t, &appsv1.Deployment{}), "default", name)
	if err != nil {
		t.Fatal(err)
	}
	return o.(*appsv1.Deployment)
}

// addReplicaSet stores the ReplicaSet the controller would make for the
// deployment's current template, at a revision.
func addReplicaSet(t *testing.T, s *store.Store, d *appsv1.Deployment, hash string, rev string, replicas int32) *appsv1.ReplicaSet {
	t.Helper()
	tmpl := *d.Spec.Template.DeepCopy()
	tmpl.Labels[api.LabelPodTemplateHash] = hash
	sel := d.Spec.Selector.DeepCopy()
	sel.MatchLabels[api.LabelPodTemplateHash] = hash
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: d.Name + "-" + hash, Namespace: d.Namespace, Labels: tmpl.Labels,
			Annotations:     map[string]string{api.AnnotationRevision: rev},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(d, appsv1.SchemeGroupVersion.WithKind("Deployment"))},
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: &replicas, Selector: sel, Template: tmpl},
	}
	if err := s.Create(context.Background(), rs); err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestRolloutStatus(t *testing.T) {
	s, cfg := testutil.Store(t)
	ep := cfg.ClientURL
	must(t, ep, "created", "create", "deployment", "web", "--replicas", "3", "--", "sleep", "infinity")
	must(t, ep, "Waiting for deployment spec update to be observed...\n", "rollout", "status", "deployment/web", "--watch=false")

	out, done := background(t, ep, "rollout", "status", "deploy/web", "--timeout", "30s")
	out.waitFor(t, "Waiting for deployment spec update to be observed...")
	setDeploymentStatus(t, s, "web", func(d *appsv1.Deployment) {
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 1, UpdatedReplicas: 1}
	})
	out.waitFor(t, `Waiting for deployment "web" rollout to finish: 1 out of 3 new replicas have been updated...`)
	setDeploymentStatus(t, s, "web", func(d *appsv1.Deployment) {
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 4, UpdatedReplicas: 3}
	})
	out.waitFor(t, `Waiting for deployment "web" rollout to finish: 1 old replicas are pending termination...`)
	setDeploymentStatus(t, s, "web", func(d *appsv1.Deployment) {
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 3, UpdatedReplicas: 3, AvailableReplicas: 1, ReadyReplicas: 1}
	})
	out.waitFor(t, `Waiting for deployment "web" rollout to finish: 1 of 3 updated replicas are available...`)
	setDeploymentStatus(t, s, "web", func(d *appsv1.Deployment) {
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 3, UpdatedReplicas: 3, AvailableReplicas: 3, ReadyReplicas: 3}
	})
	if err := wait(t, done); err != nil {
		t.Fatalf("rollout status: %v\n%s", err, out)
	}
	want := "Waiting for deployment spec update to be observed...\n" +
		"Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...\n" +
		"Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...\n" +
		"Waiting for deployment \"web\" rollout to finish: 1 of 3 updated replicas are available...\n" +
		"deployment \"web\" successfully rolled out\n"
	if out.String() != want {
		t.Fatalf("rollout status printed:\n%s\nwant:\n%s", out, want)
	}
	must(t, ep, "3/3", "get", "deploy", "web")

	// A spec change not yet observed is not done, whatever the status says.
	must(t, ep, "deployment.apps/web scaled", "scale", "deploy/web", "--replicas", "2")
	must(t, ep, "Waiting for deployment spec update to be observed...", "rollout", "status", "deploy/web", "--watch=false")
	fails(t, ep, "timed out waiting for the condition", "rollout", "status", "deploy/web", "--timeout", "300ms")

	setDeploymentStatus(t, s, "web", func(d *appsv1.Deployment) {
		d.Status.ObservedGeneration = d.Generation
		d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded"}}
	})
	fails(t, ep, `deployment "web" exceeded its progress deadline`, "rollout", "status", "deploy/web")
	fails(t, ep, "rollout works on deployments, not services", "rollout", "status", "svc/web")
	fails(t, ep, `deployments.apps "nope" not found`, "rollout", "status", "deployment", "nope")
}

func TestRolloutRestartUndoHistory(t *testing.T) {
	s, cfg := testutil.Store(t)
	ep := cfg.ClientURL
	must(t, ep, "created", "create", "deployment", "web", "--replicas", "2", "--port", "8080", "--", "sleep", "infinity")
	fails(t, ep, `no rollout history found for deployment "web"`, "rollout", "undo", "deployment/web")
	must(t, ep, `No rollout history found in deployment "web"`, "rollout", "history", "deployment/web")
	v1 := getDeployment(t, s, "web")
	rs1 := addReplicaSet(t, s, v1, "aaaaa", "1", 2)

	must(t, ep, "deployment.apps/web restarted", "rollout", "restart", "deployment/web")
	v2 := getDeployment(t, s, "web")
	at := v2.Spec.Template.Annotations[api.AnnotationRestartedAt]
	if _, err := time.Parse(time.RFC3339, at); err != nil || v2.Generation != v1.Generation+1 {
		t.Fatalf("restart: annotation %q (%v), generation %d -> %d", at, err, v1.Generation, v2.Generation)
	}
	rs1.Spec.Replicas = ptr.To[int32](0)
	if err := s.Update(context.Background(), rs1); err != nil {
		t.Fatal(err)
	}
	rs2 := addReplicaSet(t, s, v2, "bbbbb", "2", 2)
	rs2.Annotations[AnnotationChangeCause] = "restart for the new config"
	if err := s.Update(context.Background(), rs2); err != nil {
		t.Fatal(err)
	}
	setDeploymentStatus(t, s, "web", func(d *appsv1.Deployment) {
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2, ReadyReplicas: 2,
			Conditions: []appsv1.DeploymentCondition{
				{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"},
				{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable"},
			}}
	})

	out := must(t, ep, "REVISION  CHANGE-CAUSE\n", "rollout", "history", "deployment/web")
	if want := "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n2         restart for the new config\n\n"; out != want {
		t.Fatalf("history:\n%q\nwant\n%q", out, want)
	}
	out = must(t, ep, "deployment.apps/web with revision #2\nPod Template:\n", "rollout", "history", "deployment/web", "--revision", "2")
	if !strings.Contains(out, api.AnnotationRestartedAt+": "+at) || strings.Contains(out, api.LabelPodTemplateHash) {
		t.Fatalf("history --revision 2:\n%s", out)
	}
	fails(t, ep, "unable to find the specified revision", "rollout", "history", "deployment/web", "--revision", "7")

	// describe: replicas line, strategy, template, conditions, the RSs.
	out = must(t, ep, "Name:                   web\n", "describe", "deployment", "web")
	for _, want := range []string{
		"Replicas:               2 desired | 2 updated | 2 total | 2 available | 0 unavailable\n",
		"StrategyType:           RollingUpdate\n",
		"RollingUpdateStrategy:  25% max unavailable, 25% max surge\n",
		"Selector:               app=web\n",
		"Pod Template:\n  Labels:       app=web\n  Annotations:  " + api.AnnotationRestartedAt + ": " + at + "\n",
		"   web:\n    Port:       8080/TCP\n    Host Port:  0/TCP\n    Command:\n      sleep\n      infinity\n",
		"  Type           Status  Reason\n  ----           ------  ------\n  Available      True    MinimumReplicasAvailable\n  Progressing    True    NewReplicaSetAvailable\n",
		"OldReplicaSets:  <none>\nNewReplicaSet:   web-bbbbb (0/2 replicas created)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe deployment lacks %q:\n%s", want, out)
		}
	}
	out = must(t, ep, "Name:           web-bbbbb\n", "describe", "rs", "web-bbbbb")
	for _, want := range []string{"Controlled By:  Deployment/web\n", "Replicas:       0 current / 2 desired\n",
		"Pods Status:    0 Running / 0 Waiting / 0 Succeeded / 0 Failed\n", "Selector:       app=web,pod-template-hash=bbbbb\n",
		"Annotations:    deployment.kubernetes.io/revision: 2\n                kubernetes.io/change-cause: restart for the new config\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe rs lacks %q:\n%s", want, out)
		}
	}

	// undo goes back to revision 1's template, without its hash label.
	must(t, ep, "deployment.apps/web rolled back", "rollout", "undo", "deployment/web")
	v3 := getDeployment(t, s, "web")
	if _, ok := v3.Spec.Template.Annotations[api.AnnotationRestartedAt]; ok || v3.Spec.Template.Labels[api.LabelPodTemplateHash] != "" ||
		!sameTemplate(rs1, v3) || v3.Generation != v2.Generation+1 || *v3.Spec.Replicas != 2 {
		t.Fatalf("undo: template %+v, generation %d", v3.Spec.Template, v3.Generation)
	}
	must(t, ep, "OldReplicaSets:  web-bbbbb (0/2 replicas created)\nNewReplicaSet:   web-aaaaa (0/0 replicas created)\n", "describe", "deploy", "web")
	// The previous revision is now what runs: nothing to do.
	must(t, ep, "deployment.apps/web skipped rollback (current template already matches revision 1)", "rollout", "undo", "deployment/web")
	must(t, ep, "deployment.apps/web rolled back", "rollout", "undo", "deployment/web", "--to-revision", "2")
	if v4 := getDeployment(t, s, "web"); v4.Spec.Template.Annotations[api.AnnotationRestartedAt] != at {
		t.Fatalf("undo --to-revision 2: %+v", v4.Spec.Template)
	}
	fails(t, ep, "unable to find specified revision 9 in history", "rollout", "undo", "deployment/web", "--to-revision", "9")

	must(t, ep, "deployment.apps/web paused", "rollout", "pause", "deployment/web")
	fails(t, ep, `deployments.apps "web" is already paused`, "rollout", "pause", "deployment/web")
	fails(t, ep, "you cannot rollback a paused deployment", "rollout", "undo", "deployment/web")
	fails(t, ep, "can't restart paused deployment", "rollout", "restart", "deployment/web")
	must(t, ep, "deployment.apps/web resumed", "rollout", "resume", "deployment/web")
	must(t, ep, "deployment.apps/web restarted", "rollout", "restart", "deployment/web")
}

func TestDescribeService(t *testing.T) {
	s, cfg := testutil.Store(t)
	ep := cfg.ClientURL
	must(t, ep, "created", "create", "deployment", "web", "--port", "8080", "--", "sleep", "infinity")
	must(t, ep, "exposed", "expose", "deployment", "web", "--port", "80", "--target-port", "8080", "--type", "NodePort")
	out := must(t, ep, "Endpoints:                <none>\n", "describe", "svc", "web")
	o, err := s.Get(context.Background(), kindOf(t, &corev1.Service{}), "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	svc := o.(*corev1.Service)
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-x1y2z", Namespace: "default", Labels: map[string]string{api.LabelServiceName: "web", api.LabelManagedBy: "test"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Port: ptr.To[int32](8080)}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"10.244.1.5"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}},
			{Addresses: []string{"10.244.2.6"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(false)}},
			{Addresses: []string{"10.244.3.7"}},
		},
	}
	if err := s.Create(context.Background(), slice); err != nil {
		t.Fatal(err)
	}
	out = must(t, ep, "Name:                     web\n", "describe", "svc", "web")
	np := svc.Spec.Ports[0].NodePort
	for _, want := range []string{
		"Namespace:                default\n",
		"Labels:                   app=web\n",
		"Selector:                 app=web\n",
		"Type:                     NodePort\n",
		"IP:                       " + svc.Spec.ClusterIP + "\n",
		"IPs:                      " + svc.Spec.ClusterIP + "\n",
		"Port:                     <unset>  80/TCP\n",
		"TargetPort:               8080/TCP\n",
		"NodePort:                 <unset>  " + itoa(np) + "/TCP\n",
		"Endpoints:                10.244.1.5:8080,10.244.3.7:8080\n",
		"Session Affinity:         None\n",
		"External Traffic Policy:  Cluster\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe svc lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "LoadBalancer Ingress") {
		t.Errorf("a NodePort has no LoadBalancer Ingress:\n%s", out)
	}
	_, err = s.Mutate(context.Background(), kindOf(t, svc), "default", "web", func(o api.Object) error {
		sv := o.(*corev1.Service)
		sv.Spec.Type = corev1.ServiceTypeLoadBalancer
		sv.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.168.250.240"}}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	must(t, ep, "LoadBalancer Ingress:     192.168.250.240\n", "describe", "svc", "web")
	out = must(t, ep, "Name:         web-x1y2z\n", "describe", "endpointslice", "web-x1y2z")
	for _, want := range []string{
		"AddressType:  IPv4\n",
		"Ports:\n  Name     Port  Protocol\n  ----     ----  --------\n  <unset>  8080  TCP\n",
		"Endpoints:\n  - Addresses:  10.244.1.5\n    Conditions:\n      Ready:        true\n      Serving:      <unset>\n",
		"10.244.2.6\n    Conditions:\n      Ready:        false\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe endpointslice lacks %q:\n%s", want, out)
		}
	}
	must(t, ep, "192.168.250.240", "get", "svc", "web")
}
