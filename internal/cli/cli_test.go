package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/podnet/podnet/internal/testutil"
)

// podnet runs the CLI in-process against the test's store.
func podnet(t *testing.T, endpoint string, stdin string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := NewRoot(&out, &errOut)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"--etcd-endpoints", endpoint}, args...))
	err := root.ExecuteContext(context.Background())
	return out.String() + errOut.String(), err
}

const goodPod = `apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: web
    command: [sleep, infinity]
    ports: [{containerPort: 80, hostPort: 8080}]
`

func TestApplyGetDelete(t *testing.T) {
	_, cfg := testutil.Store(t)
	ep := cfg.ClientURL
	out, err := podnet(t, ep, goodPod, "apply", "-f", "-")
	if err != nil || !strings.Contains(out, "pod/web created") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	out, err = podnet(t, ep, goodPod, "apply", "-f", "-")
	if err != nil || !strings.Contains(out, "pod/web unchanged") {
		t.Fatalf("re-apply: %v\n%s", err, out)
	}
	out, err = podnet(t, ep, "", "get", "pods", "-o", "wide")
	if err != nil || !strings.Contains(out, "web") || !strings.Contains(out, "Pending") || !strings.Contains(out, "NODE") {
		t.Fatalf("get: %v\n%s", err, out)
	}
	out, err = podnet(t, ep, "", "get", "pod", "web", "-o", "yaml")
	if err != nil || !strings.Contains(out, "kind: Pod") || !strings.Contains(out, "resourceVersion:") || !strings.Contains(out, "hostPort: 8080") {
		t.Fatalf("get -o yaml: %v\n%s", err, out)
	}
	out, err = podnet(t, ep, "", "get", "pods", "-l", "app=other")
	if err != nil || !strings.Contains(out, "No resources found") {
		t.Fatalf("get -l: %v\n%s", err, out)
	}
	out, err = podnet(t, ep, "", "describe", "pod", "web")
	if err != nil || !strings.Contains(out, "host port 8080") {
		t.Fatalf("describe: %v\n%s", err, out)
	}
	out, err = podnet(t, ep, "", "delete", "pod", "web")
	if err != nil || !strings.Contains(out, `pod "web" deleted`) {
		t.Fatalf("delete: %v\n%s", err, out)
	}
	out, err = podnet(t, ep, "", "get", "pod", "web")
	if err == nil || !strings.Contains(err.Error(), `pods "web" not found`) {
		t.Fatalf("get deleted: %v\n%s", err, out)
	}
}

// TestApplyRejectsAndStoresNothing: every bad manifest is refused with a
// precise error, and nothing from it (or from the good documents beside it)
// is stored.
func TestApplyRejectsAndStoresNothing(t *testing.T) {
	_, cfg := testutil.Store(t)
	ep := cfg.ClientURL
	cases := []struct{ name, manifest, want string }{
		{"unknown field", strings.Replace(goodPod, "    command:", "    comand: [x]\n    command:", 1), `unknown field "spec.containers[0].comand"`},
		{"invalid", strings.Replace(goodPod, "hostPort: 8080", "hostPort: 99999", 1), `spec.containers[0].ports[0].hostPort: Invalid value: 99999`},
		{"invalid second doc", goodPod + "---\n" + strings.Replace(goodPod, "name: web\n  labels", "name: Bad_Name\n  labels", 1), `(document 2)`},
		{"missing namespace", strings.Replace(goodPod, "name: web\n", "name: web\n  namespace: nowhere\n", 1), `namespaces "nowhere" not found`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, err := podnet(t, ep, c.manifest, "apply", "-f", "-")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("apply: err=%v, want %q\n%s", err, c.want, out)
			}
			out, err = podnet(t, ep, "", "get", "pods", "-A")
			if err != nil || !strings.Contains(out, "No resources found") {
				t.Fatalf("something was stored: %v\n%s", err, out)
			}
		})
	}
}

func TestApplyStaleResourceVersion(t *testing.T) {
	_, cfg := testutil.Store(t)
	ep := cfg.ClientURL
	if out, err := podnet(t, ep, goodPod, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	cur, err := podnet(t, ep, "", "get", "pod", "web", "-o", "yaml")
	if err != nil {
		t.Fatal(err)
	}
	// Change the labels twice: the first write moves the revision on, so the
	// second, still carrying the old resourceVersion, must be refused.
	first := strings.Replace(cur, "app: web", "app: web2", 1)
	if out, err := podnet(t, ep, first, "apply", "-f", "-"); err != nil || !strings.Contains(out, "configured") {
		t.Fatalf("apply with current rv: %v\n%s", err, out)
	}
	stale := strings.Replace(cur, "app: web", "app: web3", 1)
	out, err := podnet(t, ep, stale, "apply", "-f", "-")
	if err == nil || !strings.Contains(err.Error(), "the object has been modified") {
		t.Fatalf("stale apply: want conflict, got %v\n%s", err, out)
	}
	now, _ := podnet(t, ep, "", "get", "pod", "web", "-o", "yaml")
	if !strings.Contains(now, "app: web2") {
		t.Fatalf("stale write changed the object:\n%s", now)
	}
}

func TestApplyDirectory(t *testing.T) {
	_, cfg := testutil.Store(t)
	dir := t.TempDir()
	ns := "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n"
	os.WriteFile(filepath.Join(dir, "b-pod.yaml"), []byte(strings.Replace(goodPod, "name: web\n", "name: web\n  namespace: team\n", 1)), 0o644)
	os.WriteFile(filepath.Join(dir, "a-ns.yml"), []byte(ns), 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("ignored"), 0o644)
	out, err := podnet(t, cfg.ClientURL, "", "apply", "-f", dir)
	if err != nil || !strings.Contains(out, "namespace/team created") || !strings.Contains(out, "pod/web created") {
		t.Fatalf("apply dir: %v\n%s", err, out)
	}
	out, err = podnet(t, cfg.ClientURL, "", "get", "pods", "-n", "team")
	if err != nil || !strings.Contains(out, "web") {
		t.Fatalf("get -n team: %v\n%s", err, out)
	}
}

func TestParsePublish(t *testing.T) {
	cases := map[string]string{
		"8080:80":           "8080->80/TCP",
		"9090:91/udp":       "9090->91/UDP",
		"127.0.0.1:8080:80": "127.0.0.1:8080->80/TCP",
		"80":                "0->80/TCP",
		"80/sctp":           `protocol "sctp"`,
		"0:80":              `host port "0"`,
		"a:b:c:d":           "want [HOSTIP:]HOSTPORT:PORT",
		"8080:70000":        `container port "70000"`,
	}
	for in, want := range cases {
		p, err := parsePublish(in)
		var got string
		if err != nil {
			got = err.Error()
		} else {
			got = p.HostIP
			if got != "" {
				got += ":"
			}
			got += itoa(p.HostPort) + "->" + itoa(p.ContainerPort) + "/" + string(p.Protocol)
		}
		if !strings.Contains(got, want) {
			t.Errorf("%s: got %q, want %q", in, got, want)
		}
	}
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

const svcAndDeploy = `apiVersion: v1
kind: Service
metadata: {name: web, labels: {app: web}}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, command: [podnet, echo-server]}]
`

// TestGetNewKinds: the new kinds apply, print by their columns, and
// delete; a bad one stores nothing.
func TestGetNewKinds(t *testing.T) {
	_, cfg := testutil.Store(t)
	ep := cfg.ClientURL
	out, err := podnet(t, ep, svcAndDeploy, "apply", "-f", "-")
	if err != nil || !strings.Contains(out, "service/web created") || !strings.Contains(out, "deployment.apps/web created") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	out, err = podnet(t, ep, "", "get", "svc", "-o", "wide", "--show-labels")
	if err != nil || !strings.Contains(out, "NAME   TYPE       CLUSTER-IP") || !strings.Contains(out, "80:30080/TCP") ||
		!strings.Contains(out, "SELECTOR") || !strings.Contains(out, "LABELS") {
		t.Fatalf("get svc: %v\n%s", err, out)
	}
	out, err = podnet(t, ep, "", "get", "deploy")
	if err != nil || !strings.Contains(out, "READY   UP-TO-DATE   AVAILABLE") || !strings.Contains(out, "0/2") {
		t.Fatalf("get deploy: %v\n%s", err, out)
	}
	out, err = podnet(t, ep, "", "get", "rs")
	if err != nil || !strings.Contains(out, "No resources found") {
		t.Fatalf("get rs: %v\n%s", err, out)
	}
	out, err = podnet(t, ep, strings.Replace(svcAndDeploy, "matchLabels: {app: web}", "matchLabels: {app: db}", 1), "apply", "-f", "-")
	if err == nil || !strings.Contains(err.Error(), "`selector` does not match template `labels`") {
		t.Fatalf("mismatched selector: %v\n%s", err, out)
	}
	out, err = podnet(t, ep, svcAndDeploy, "delete", "-f", "-")
	if err != nil || !strings.Contains(out, `service "web" deleted`) || !strings.Contains(out, `deployment.apps "web" deleted`) {
		t.Fatalf("delete: %v\n%s", err, out)
	}
}
