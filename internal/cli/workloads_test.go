package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/testutil"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// must runs the CLI and fails the test unless it succeeds and prints want.
func must(t *testing.T, ep string, want string, args ...string) string {
	t.Helper()
	out, err := podnet(t, ep, "", args...)
	if err != nil || !strings.Contains(out, want) {
		t.Fatalf("podnet %s: err=%v, want %q in:\n%s", strings.Join(args, " "), err, want, out)
	}
	return out
}

// eventuallyMust runs the CLI until its output holds want (a status the
// controllers write a moment after the condition the test waited for).
func eventuallyMust(t *testing.T, ep string, want string, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := podnet(t, ep, "", args...)
		if err == nil && strings.Contains(out, want) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("podnet %s: err=%v, want %q in:\n%s", strings.Join(args, " "), err, want, out)
		}
		time.Sleep(50 * time.Millisecond) // polling a status the controllers will reach
	}
}

// fails runs the CLI and fails the test unless it fails with want in its error.
func fails(t *testing.T, ep string, want string, args ...string) {
	t.Helper()
	out, err := podnet(t, ep, "", args...)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("podnet %s: err=%v, want an error with %q\n%s", strings.Join(args, " "), err, want, out)
	}
}

func TestCreateDeploymentAndScale(t *testing.T) {
	_, cfg := testutil.Store(t)
	ep := cfg.ClientURL
	must(t, ep, "deployment.apps/web created", "create", "deployment", "web", "--replicas", "3", "--port", "8080", "--", "podnet", "echo-server", "--listen", ":8080")
	y := must(t, ep, "kind: Deployment", "get", "deploy", "web", "-o", "yaml")
	for _, want := range []string{"replicas: 3", "containerPort: 8080", "app: web", "- echo-server", "matchLabels:", "type: RollingUpdate"} {
		if !strings.Contains(y, want) {
			t.Errorf("stored deployment lacks %q:\n%s", want, y)
		}
	}
	must(t, ep, "0/3", "get", "deploy")

	// A client dry run prints the object as built and stores nothing.
	y = must(t, ep, "apiVersion: apps/v1", "create", "deployment", "other", "--dry-run=client", "-o", "yaml", "--", "sleep", "infinity")
	if !strings.Contains(y, "kind: Deployment") || strings.Contains(y, "RollingUpdate") {
		t.Errorf("client dry run should print the undefaulted object:\n%s", y)
	}
	must(t, ep, "deployment.apps/other created (dry run)", "create", "deployment", "other", "--dry-run", "--", "sleep", "infinity")
	must(t, ep, "deployment.apps/other created (server dry run)", "create", "deployment", "other", "--dry-run=server", "--", "sleep", "infinity")
	must(t, ep, "deployment.apps/other\n", "create", "deployment", "other", "--dry-run", "-o", "name", "--", "sleep", "infinity")
	fails(t, ep, `deployments.apps "other" not found`, "get", "deploy", "other")

	// Bad input: precise errors, nothing stored.
	fails(t, ep, "--replicas -1: must be greater than or equal to 0", "create", "deployment", "bad", "--replicas", "-1", "--", "sleep", "1")
	fails(t, ep, `invalid argument "x" for "--replicas"`, "create", "deployment", "bad", "--replicas", "x", "--", "sleep", "1")
	fails(t, ep, "--port 70000: want a port number 1-65535", "create", "deployment", "bad", "--port", "70000", "--", "sleep", "1")
	fails(t, ep, "usage: podnet create deployment NAME", "create", "deployment", "bad")
	fails(t, ep, `Deployment "Bad_Name" is invalid: metadata.name`, "create", "deployment", "Bad_Name", "--", "sleep", "1")
	fails(t, ep, `invalid --dry-run value "maybe"`, "create", "deployment", "bad", "--dry-run=maybe", "--", "sleep", "1")
	fails(t, ep, `deployments.apps "web" already exists`, "create", "deployment", "web", "--", "sleep", "1")
	out := must(t, ep, "web", "get", "deploy", "-o", "name")
	if out != "deployment.apps/web\n" {
		t.Fatalf("something else was stored:\n%s", out)
	}

	must(t, ep, "deployment.apps/web scaled", "scale", "deployment", "web", "--replicas", "5")
	must(t, ep, "replicas: 5", "get", "deploy", "web", "-o", "yaml")
	must(t, ep, "deployment.apps/web scaled", "scale", "deployment/web", "--replicas=0", "--current-replicas=5")
	must(t, ep, "replicas: 0", "get", "deploy", "web", "-o", "yaml")
	fails(t, ep, "expected replicas to be 5, was 0", "scale", "deploy/web", "--replicas=2", "--current-replicas=5")
	fails(t, ep, "the --replicas=COUNT flag is required", "scale", "deployment", "web")
	fails(t, ep, "the --replicas=COUNT flag is required", "scale", "deployment", "web", "--replicas", "-2")
	fails(t, ep, "cannot scale services", "scale", "svc", "web", "--replicas", "2")
	fails(t, ep, `deployments.apps "nope" not found`, "scale", "deployment", "nope", "--replicas", "2")
	fails(t, ep, `the server doesn't have a resource type "deplyment"`, "scale", "deplyment/web", "--replicas", "2")
	must(t, ep, "replicas: 0", "get", "deploy", "web", "-o", "yaml")

	// A ReplicaSet scales too.
	rs := `apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web-abc}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, command: [sleep, infinity]}]
`
	if out, err := podnet(t, ep, rs, "apply", "-f", "-"); err != nil || !strings.Contains(out, "replicaset.apps/web-abc created") {
		t.Fatalf("apply rs: %v\n%s", err, out)
	}
	must(t, ep, "replicaset.apps/web-abc scaled", "scale", "rs/web-abc", "--replicas", "4")
	must(t, ep, "web-abc   4 ", "get", "rs")
}

func TestExpose(t *testing.T) {
	_, cfg := testutil.Store(t)
	ep := cfg.ClientURL
	must(t, ep, "deployment.apps/web created", "create", "deployment", "web", "--port", "8080", "--", "podnet", "echo-server", "--listen", ":8080")
	must(t, ep, "service/web exposed", "expose", "deployment", "web", "--port", "80", "--target-port", "8080", "--type", "NodePort")
	y := must(t, ep, "kind: Service", "get", "svc", "web", "-o", "yaml")
	for _, want := range []string{"selector:\n    app: web", "port: 80\n", "targetPort: 8080", "nodePort: 3", "type: NodePort", "labels:\n    app: web"} {
		if !strings.Contains(y, want) {
			t.Errorf("exposed service lacks %q:\n%s", want, y)
		}
	}
	must(t, ep, "80:3", "get", "svc", "web")

	// Without --port, the container ports; --target-port defaults to --port.
	must(t, ep, "service/web2 exposed", "expose", "deploy/web", "--name", "web2")
	must(t, ep, "8080/TCP", "get", "svc", "web2")
	y = must(t, ep, "targetPort: 9090", "expose", "deployment", "web", "--name", "web3", "--port", "9090", "--protocol", "UDP", "--dry-run", "-o", "yaml")
	if !strings.Contains(y, "protocol: UDP") {
		t.Errorf("dry run:\n%s", y)
	}

	// A pod: its labels are the selector.
	if out, err := podnet(t, ep, goodPod, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply pod: %v\n%s", err, out)
	}
	must(t, ep, "service/websvc exposed", "expose", "pod", "web", "--port", "80", "--name", "websvc", "--type", "LoadBalancer")
	must(t, ep, "<pending>", "get", "svc", "websvc")
	must(t, ep, "app: web", "get", "svc", "websvc", "-o", "yaml")
	// A service: its selector and ports.
	must(t, ep, "service/again exposed", "expose", "svc", "websvc", "--name", "again", "--selector", "app=web,tier=front")
	y = must(t, ep, "tier: front", "get", "svc", "again", "-o", "yaml")
	if !strings.Contains(y, "type: ClusterIP") {
		t.Errorf("expose svc should default to ClusterIP:\n%s", y)
	}

	before := must(t, ep, "service/", "get", "svc", "-o", "name")
	fails(t, ep, `--type "Foo": want ClusterIP, NodePort or LoadBalancer`, "expose", "deployment", "web", "--port", "80", "--name", "bad", "--type", "Foo")
	fails(t, ep, `--port: "0" is not a port number 1-65535`, "expose", "deployment", "web", "--port", "0", "--name", "bad")
	fails(t, ep, `--target-port: "-1" is not a port number`, "expose", "deployment", "web", "--port", "80", "--target-port", "-1", "--name", "bad")
	fails(t, ep, `--target-port: "Not_A_Name" is not a port number or a valid port name`, "expose", "deployment", "web", "--port", "80", "--target-port", "Not_A_Name", "--name", "bad")
	fails(t, ep, `--selector "app in (a,b)"`, "expose", "deployment", "web", "--port", "80", "--name", "bad", "--selector", "app in (a,b)")
	fails(t, ep, `--protocol "tcp": want TCP, UDP or SCTP`, "expose", "deployment", "web", "--port", "80", "--name", "bad", "--protocol", "tcp")
	fails(t, ep, `services "web" already exists`, "expose", "deployment", "web", "--port", "80")
	fails(t, ep, `Service "Bad" is invalid: metadata.name`, "expose", "deployment", "web", "--port", "80", "--name", "Bad")
	fails(t, ep, `cannot expose nodes`, "expose", "node", "x")
	fails(t, ep, `deployments.apps "nope" not found`, "expose", "deployment", "nope", "--port", "80")
	if after := must(t, ep, "service/", "get", "svc", "-o", "name"); after != before {
		t.Fatalf("a refused expose stored something:\n%s\nthen:\n%s", before, after)
	}
}

func TestExposeIntrospection(t *testing.T) {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: "default", Labels: map[string]string{"team": "a"}},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "d"}},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "a", Ports: []corev1.ContainerPort{{ContainerPort: 80, Protocol: corev1.ProtocolTCP}, {ContainerPort: 53, Protocol: corev1.ProtocolUDP}}},
			}}},
		},
	}
	svc, err := exposeService(d, &exposeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.Selector["app"] != "d" || svc.Labels["team"] != "a" || len(svc.Spec.Ports) != 2 ||
		svc.Spec.Ports[1].Name != "port-2" || svc.Spec.Ports[1].Protocol != corev1.ProtocolUDP || svc.Spec.Ports[1].TargetPort.IntVal != 53 {
		t.Fatalf("introspected service: %+v", svc)
	}
	d.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "x", Operator: metav1.LabelSelectorOpExists}}
	if _, err := exposeService(d, &exposeOptions{}); err == nil || !strings.Contains(err.Error(), "matchExpressions") {
		t.Fatalf("matchExpressions selector: %v", err)
	}
	if svc, err := exposeService(d, &exposeOptions{selector: "app=x"}); err != nil || svc.Spec.Selector["app"] != "x" {
		t.Fatalf("--selector overrides: %v", err)
	}
	d.Spec.Template.Spec.Containers[0].Ports = nil
	if _, err := exposeService(d, &exposeOptions{selector: "app=x"}); err == nil || !strings.Contains(err.Error(), "couldn't find port") {
		t.Fatalf("no ports: %v", err)
	}
}

func TestCreateService(t *testing.T) {
	_, cfg := testutil.Store(t)
	ep := cfg.ClientURL
	must(t, ep, "service/np created", "create", "service", "nodeport", "np", "--tcp=80:8080", "--node-port", "30099")
	out := must(t, ep, "80:30099/TCP", "get", "svc", "np")
	if !strings.Contains(out, "NodePort") {
		t.Errorf("get:\n%s", out)
	}
	y := must(t, ep, "name: 80-8080", "get", "svc", "np", "-o", "yaml")
	if !strings.Contains(y, "app: np") || !strings.Contains(y, "targetPort: 8080") {
		t.Errorf("service:\n%s", y)
	}
	must(t, ep, "service/h created", "create", "svc", "clusterip", "h", "--clusterip", "None")
	must(t, ep, "None", "get", "svc", "h")
	must(t, ep, "service/lb created", "create", "service", "loadbalancer", "lb", "--tcp=443:https", "--tcp", "80")
	must(t, ep, "443:", "get", "svc", "lb")
	must(t, ep, "service/ext created", "create", "service", "externalname", "ext", "--external-name", "db.example.com")
	must(t, ep, "ext    ExternalName   <none>", "get", "svc")
	fails(t, ep, "--external-name is required", "create", "service", "externalname", "x")
	fails(t, ep, "spec.externalName", "create", "service", "externalname", "x", "--external-name", "not a name")
	fails(t, ep, "at least one --tcp", "create", "service", "clusterip", "x")
	fails(t, ep, `--tcp "80:": target port: empty`, "create", "service", "clusterip", "x", "--tcp=80:")
	fails(t, ep, `--tcp "0:80": port: "0" is not a port number`, "create", "service", "clusterip", "x", "--tcp=0:80")
	fails(t, ep, "nodePort: Invalid value", "create", "service", "nodeport", "x", "--tcp=80", "--node-port", "30099")
	fails(t, ep, `services "x" not found`, "get", "svc", "x")
}

func TestParseTCPSpec(t *testing.T) {
	cases := map[string]string{
		"80":                  "80/80",
		"80:8080":             "80-8080/8080",
		"443:https":           "443-https/https",
		"80:":                 "target port: empty",
		":80":                 `port: "" is not`,
		"70000:80":            `"70000" is not a port number`,
		"80:70000":            `"70000" is not a port number`,
		"80:-1":               `"-1" is not a port number`,
		"80:a:b":              `"a:b" is not a port number or a valid port name`,
		"80:toolongportname1": "not a port number or a valid port name",
	}
	for in, want := range cases {
		p, err := parseTCPSpec(in)
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = p.Name + "/" + p.TargetPort.String()
		}
		if !strings.Contains(got, want) {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

func FuzzParseTCPSpec(f *testing.F) {
	for _, s := range []string{"80", "80:8080", "443:https", "80:", "0:0", "65535:a-b", "1:+1", "80:a:b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		p, err := parseTCPSpec(spec)
		if err != nil {
			return
		}
		if p.Port < 1 || p.Port > 65535 || p.Protocol != corev1.ProtocolTCP || strings.Contains(p.Name, ":") {
			t.Fatalf("%q: accepted a bad port %+v", spec, p)
		}
		if p.TargetPort.String() == "" || p.TargetPort.IntVal < 0 || p.TargetPort.IntVal > 65535 {
			t.Fatalf("%q: bad target port %+v", spec, p.TargetPort)
		}
	})
}

const allKinds = `apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: team}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-manual
  namespace: team
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.244.9.9], conditions: {ready: true}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: team}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, command: [podnet, echo-server], ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: other, namespace: team}
spec:
  replicas: 1
  selector: {matchLabels: {app: other}}
  template:
    metadata: {labels: {app: other}}
    spec:
      containers: [{name: c, command: [sleep, infinity]}]
`

// TestApplyAllKinds: one multi-document apply takes every kind, says
// created, unchanged or configured per object in kubectl's words, and a
// bad document anywhere stores nothing.
func TestApplyAllKinds(t *testing.T) {
	_, cfg := testutil.Store(t)
	ep := cfg.ClientURL
	bad := strings.Replace(allKinds, "addressType: IPv4", "addressType: IPv4\nendpoint: []", 1)
	out, err := podnet(t, ep, bad, "apply", "-f", "-")
	if err == nil || !strings.Contains(err.Error(), `unknown field "endpoint"`) {
		t.Fatalf("bad apply: %v\n%s", err, out)
	}
	fails(t, ep, `namespaces "team" not found`, "get", "ns", "team")
	bad = strings.Replace(allKinds, "replicas: 2", "replicas: -2", 1)
	if out, err = podnet(t, ep, bad, "apply", "-f", "-"); err == nil || !strings.Contains(err.Error(), "spec.replicas: Invalid value: -2") {
		t.Fatalf("bad replicas: %v\n%s", err, out)
	}
	fails(t, ep, `namespaces "team" not found`, "get", "ns", "team")

	out, err = podnet(t, ep, allKinds, "apply", "-f", "-")
	want := "namespace/team created\nservice/web created\nendpointslice.discovery.k8s.io/web-manual created\ndeployment.apps/web created\nreplicaset.apps/other created\n"
	if err != nil || out != want {
		t.Fatalf("apply: %v\n%s\nwant:\n%s", err, out, want)
	}
	out, err = podnet(t, ep, allKinds, "apply", "-f", "-")
	if err != nil || strings.Count(out, " unchanged\n") != 5 {
		t.Fatalf("re-apply: %v\n%s", err, out)
	}
	out, err = podnet(t, ep, strings.Replace(allKinds, "replicas: 2", "replicas: 3", 1), "apply", "-f", "-")
	if err != nil || !strings.Contains(out, "deployment.apps/web configured\n") || strings.Count(out, " unchanged\n") != 4 {
		t.Fatalf("apply a change: %v\n%s", err, out)
	}
	must(t, ep, "web-manual   IPv4          8080    10.244.9.9", "get", "endpointslices", "-n", "team")
	must(t, ep, "Endpoints:                10.244.9.9:8080\n", "describe", "svc/web", "-n", "team")
	must(t, ep, "3 desired", "describe", "deploy/web", "-n", "team")
	out = must(t, ep, "NAME          TYPE", "get", "svc,endpointslices,deploy,rs", "-n", "team")
	for _, want := range []string{"service/web   ", "\n\nNAME                                        ADDRESSTYPE", "endpointslice.discovery.k8s.io/web-manual   IPv4", "\ndeployment.apps/web   0/3", "\nreplicaset.apps/other   1 "} {
		if !strings.Contains(out, want) {
			t.Errorf("get of several kinds lacks %q:\n%s", want, out)
		}
	}
	out = must(t, ep, "service/web\n", "get", "svc,deploy,rs,pods", "-n", "team", "-o", "name")
	if out != "service/web\ndeployment.apps/web\nreplicaset.apps/other\n" {
		t.Errorf("get -o name of several kinds:\n%s", out)
	}
	must(t, ep, "No resources found in default namespace.", "get", "svc,deploy")
	fails(t, ep, `the server doesn't have a resource type "nope"`, "get", "svc,nope")
	fails(t, ep, "watch is only supported on one resource type", "get", "svc,deploy", "-w")
	must(t, ep, `deployment.apps "web" deleted`, "delete", "deployment/web", "-n", "team")
	must(t, ep, `replicaset.apps "other" deleted`, "delete", "rs", "other", "-n", "team")
	fails(t, ep, "podnet pods run commands on the node, not images", "create", "deployment", "x", "--image", "nginx")
}
