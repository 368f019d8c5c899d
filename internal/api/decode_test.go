package api

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestDecodeErrors(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"unknown field", `
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: c
    command: [sleep, "1"]
    imagee: nginx
`, `unknown field "spec.containers[0].imagee"`},
		{"no kind", "apiVersion: v1\nmetadata: {name: x}\n", "kind not set"},
		{"bad kind", "apiVersion: v1\nkind: Gizmo\nmetadata: {name: x}\n", `kind "Gizmo" is not supported`},
		{"wrong apiVersion", "apiVersion: apps/v1\nkind: Pod\nmetadata: {name: x}\n", `apiVersion "apps/v1" is not served`},
		{"bad yaml", "apiVersion: v1\nkind: Pod\n  metadata: [\n", "invalid YAML"},
		{"no containers", "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {}\n", `Pod "web" is invalid: spec.containers: Required value`},
		{"bad name", "apiVersion: v1\nkind: Pod\nmetadata: {name: Web_1}\nspec: {containers: [{name: c, command: [x]}]}\n", `metadata.name: Invalid value: "Web_1"`},
		{"no command", "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec: {containers: [{name: c, image: nginx}]}\n", "spec.containers[0].command: Required value"},
		{"bad port", `
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: c
    command: [x]
    ports: [{containerPort: 80, hostPort: 70000}]
`, "spec.containers[0].ports[0].hostPort: Invalid value: 70000"},
		{"sctp", `
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: c
    command: [x]
    ports: [{containerPort: 80, protocol: SCTP}]
`, `spec.containers[0].ports[0].protocol: Unsupported value: "SCTP"`},
		{"dup hostPort", `
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: c
    command: [x]
    ports: [{containerPort: 80, hostPort: 8080}, {containerPort: 81, hostPort: 8080}]
`, "spec.containers[0].ports[1].hostPort: Duplicate value"},
		{"bad network annotation", `
apiVersion: v1
kind: Pod
metadata: {name: web, annotations: {podnet.io/network: macvlan}}
spec: {containers: [{name: c, command: [x]}]}
`, `Unsupported value: "macvlan"`},
		{"second doc", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, command: [x], bogus: 1}]}\n", `(document 2): Pod "p": unknown field "spec.containers[0].bogus"`},
		{"namespaced namespace", "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, namespace: b}\n", "metadata.namespace: Forbidden"},
		{"empty", "# nothing\n", "no objects found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode("in.yaml", "", strings.NewReader(c.in))
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, c.want)
			}
			if !strings.HasPrefix(err.Error(), "in.yaml") {
				t.Fatalf("error %q does not name the source", err)
			}
		})
	}
}

func TestDecodeDefaults(t *testing.T) {
	docs, err := Decode("in.yaml", "", strings.NewReader(`
# a comment
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers:
  - name: c
    command: [sleep, infinity]
    ports: [{containerPort: 80, hostPort: 8080}]
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: team}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 {
		t.Fatalf("got %d docs", len(docs))
	}
	p := docs[0].Object.(*corev1.Pod)
	if p.Namespace != "default" || p.Spec.RestartPolicy != corev1.RestartPolicyAlways ||
		p.Spec.DNSPolicy != corev1.DNSClusterFirst || p.Spec.Containers[0].Ports[0].Protocol != corev1.ProtocolTCP {
		t.Fatalf("defaults not applied: %+v", p.Spec)
	}
	if NetworkMode(p) != NetworkBridge {
		t.Fatalf("mode %s", NetworkMode(p))
	}
	if docs[1].Object.GetName() != "team" || docs[1].Kind.Resource != "namespaces" {
		t.Fatalf("list item: %+v", docs[1])
	}
}

func TestResourceFor(t *testing.T) {
	for _, n := range []string{"po", "pod", "pods", "Pod"} {
		if k, err := ResourceFor(n); err != nil || k.Resource != "pods" {
			t.Fatalf("%s: %v", n, err)
		}
	}
	if _, err := ResourceFor("gadgets"); err == nil || !strings.Contains(err.Error(), `"gadgets"`) {
		t.Fatalf("unknown resource: %v", err)
	}
}
