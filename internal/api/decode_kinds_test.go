package api

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

const (
	svcManifest = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http, nodePort: 30080}
  - {name: dns, port: 53, protocol: UDP}
`
	sliceManifest = `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints:
- addresses: [10.244.1.5]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: node1
ports:
- {name: http, port: 8080, protocol: TCP}
`
	deployManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        command: [podnet, echo-server]
        ports: [{name: http, containerPort: 8080}]
`
	rsManifest = `apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web-abc}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, command: [sleep, infinity]}]
`
)

func TestDecodeNewKinds(t *testing.T) {
	docs, err := Decode("in.yaml", "team", strings.NewReader(svcManifest+"---\n"+sliceManifest+"---\n"+deployManifest+"---\n"+rsManifest))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 4 {
		t.Fatalf("%d docs", len(docs))
	}
	s := docs[0].Object.(*corev1.Service)
	if s.Namespace != "team" || s.Spec.Ports[1].TargetPort.IntVal != 53 || s.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster {
		t.Errorf("service: %+v", s.Spec)
	}
	if sl := docs[1].Object.(*discoveryv1.EndpointSlice); *sl.Endpoints[0].Conditions.Ready != true {
		t.Errorf("slice: %+v", sl)
	}
	if d := docs[2].Object.(*appsv1.Deployment); *d.Spec.Replicas != 3 || *d.Spec.RevisionHistoryLimit != 10 {
		t.Errorf("deployment: %+v", d.Spec)
	}
	if r := docs[3].Object.(*appsv1.ReplicaSet); *r.Spec.Replicas != 1 {
		t.Errorf("replicaset: %+v", r.Spec)
	}
}

func TestDecodeNewKindsErrors(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"service unknown field", strings.Replace(svcManifest, "  selector:", "  selectr: {a: b}\n  selector:", 1), `Service "web": unknown field "spec.selectr"`},
		{"service port unknown field", strings.Replace(svcManifest, "nodePort: 30080}", "nodePort: 30080, nodeport: 1}", 1), `unknown field "spec.ports[0].nodeport"`},
		{"slice unknown field", strings.Replace(sliceManifest, "nodeName: node1", "nodeName: node1\n  node: x", 1), `EndpointSlice "web-1": unknown field "endpoints[0].node"`},
		{"deployment unknown field", strings.Replace(deployManifest, "  replicas: 3", "  replicas: 3\n  replica: 3", 1), `Deployment "web": unknown field "spec.replica"`},
		{"deployment template unknown field", strings.Replace(deployManifest, "        command:", "        commands: [x]\n        command:", 1), `unknown field "spec.template.spec.containers[0].commands"`},
		{"replicaset unknown field", strings.Replace(rsManifest, "  selector:", "  selecter: {}\n  selector:", 1), `ReplicaSet "web-abc": unknown field "spec.selecter"`},
		{"wrong apiVersion for Deployment", strings.Replace(deployManifest, "apps/v1", "extensions/v1beta1", 1), `apiVersion "extensions/v1beta1" is not served; use "apps/v1"`},
		{"wrong apiVersion for EndpointSlice", strings.Replace(sliceManifest, "discovery.k8s.io/v1", "discovery.k8s.io/v1beta1", 1), `use "discovery.k8s.io/v1"`},
		{"service port out of range", strings.Replace(svcManifest, "port: 80,", "port: 80000,", 1), `Service "web" is invalid: spec.ports[0].port: Invalid value: 80000`},
		{"service duplicate port names", strings.Replace(svcManifest, "name: dns", "name: http", 1), `spec.ports[1].name: Duplicate value: "http"`},
		{"deployment selector mismatch", strings.Replace(deployManifest, "matchLabels: {app: web}", "matchLabels: {app: db}", 1), "`selector` does not match template `labels`"},
		{"bad selector", strings.Replace(svcManifest, "selector: {app: web}", "selector: {app: \"a b\"}", 1), `spec.selector[app]: Invalid value: "a b"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode("in.yaml", "", strings.NewReader(c.in))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v\nwant it to contain %q", err, c.want)
			}
		})
	}
}

// FuzzDecode feeds arbitrary manifests to the decoder: it must never
// panic, and whatever it accepts must be valid and survive a round trip
// through its stored (JSON) form.
func FuzzDecode(f *testing.F) {
	for _, m := range []string{svcManifest, sliceManifest, deployManifest, rsManifest,
		"apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, command: [x]}]}\n",
		"apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n",
		"apiVersion: v1\nkind: Node\nmetadata: {name: n}\n",
		"apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: Namespace, metadata: {name: a}}]\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {type: ExternalName, externalName: a.b}\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: h}\nspec: {clusterIP: None}\n",
		ingressManifest,
		"apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: c}\nspec: {controller: a.io/b, parameters: {kind: K, name: n}}\n",
		"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\nstringData: {tls.crt: '', tls.key: ''}\n",
	} {
		f.Add([]byte(m))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		docs, err := Decode("fuzz", "", bytes.NewReader(in))
		if err != nil {
			return
		}
		for _, d := range docs {
			if err := Prepare(d.Object); err != nil {
				t.Fatalf("accepted %s then refused it on a second Prepare: %v", d.Kind.GVK.Kind, err)
			}
			b, err := encodeForTest(d.Object)
			if err != nil {
				t.Fatalf("marshal %s: %v", d.Kind.GVK.Kind, err)
			}
			o, k, err := DecodeObject(b)
			if err != nil || k != d.Kind {
				t.Fatalf("stored form of %s does not decode: %v\n%s", d.Kind.GVK.Kind, err, b)
			}
			if err := Prepare(o); err != nil {
				t.Fatalf("stored form of %s is invalid: %v\n%s", d.Kind.GVK.Kind, err, b)
			}
		}
	})
}

func encodeForTest(o Object) ([]byte, error) { return json.Marshal(o) }
