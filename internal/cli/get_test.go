package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	corev1 "k8s.io/api/core/v1"
)

func pod(name, labels string) string {
	return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: " + name + "\n  labels: {" + labels + "}\nspec:\n  containers: [{name: c, command: [sleep, infinity], ports: [{containerPort: 80}]}]\n"
}

var threePods = pod("a1", "app: a, tier: x") + "---\n" + pod("a2", "app: a") + "---\n" + pod("b1", "app: b, tier: \"y\"")

func TestGetSelectorsAndTemplates(t *testing.T) {
	s, cfg := testutil.Store(t)
	ep := cfg.ClientURL
	if out, err := podnet(t, ep, threePods, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	_, err := s.Mutate(context.Background(), kindOf(t, &corev1.Pod{}), "default", "a1", func(o api.Object) error {
		p := o.(*corev1.Pod)
		p.Status.Phase = corev1.PodRunning
		p.Status.PodIP = "10.244.1.9"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	names := func(args ...string) string {
		t.Helper()
		out, err := podnet(t, ep, "", append([]string{"get", "pods", "-o", "name"}, args...)...)
		if err != nil {
			t.Fatalf("get %v: %v\n%s", args, err, out)
		}
		return strings.ReplaceAll(strings.TrimSpace(out), "\n", " ")
	}
	for sel, want := range map[string]string{
		"app=a":         "pod/a1 pod/a2",
		"app!=a":        "pod/b1",
		"tier in (x,y)": "pod/a1 pod/b1",
		"!tier":         "pod/a2",
		"tier":          "pod/a1 pod/b1",
		"app=a,tier=x":  "pod/a1",
		"app notin (a)": "pod/b1",
		"app=c":         "",
	} {
		if got := names("-l", sel); got != want {
			t.Errorf("-l %q: got %q, want %q", sel, got, want)
		}
	}
	if got := names("--selector=app=b"); got != "pod/b1" {
		t.Errorf("--selector: %q", got)
	}
	fails(t, ep, `-l "app=(a": unable to parse requirement`, "get", "pods", "-l", "app=(a")
	fails(t, ep, `-l "a b c"`, "get", "pods", "-l", "a b c")
	must(t, ep, "No resources found in default namespace.", "get", "pods", "-l", "app=c")

	// jsonpath, on a list and on one object.
	must(t, ep, "a1 a2 b1", "get", "pods", "-o", "jsonpath={.items[*].metadata.name}")
	out := must(t, ep, "a1", "get", "pods", "-l", "app=a", "-o", `jsonpath={range .items[*]}{.metadata.name}{"\t"}{.status.podIP}{"\n"}{end}`)
	if out != "a1\t10.244.1.9\na2\t\n" {
		t.Errorf("jsonpath range: %q", out)
	}
	if out := must(t, ep, "80", "get", "pod", "a1", "-o", "jsonpath={.spec.containers[0].ports[0].containerPort}"); out != "80" {
		t.Errorf("jsonpath on one object: %q", out)
	}
	if out := must(t, ep, "", "get", "pod/b1", "-o", "jsonpath={.metadata.labels.tier}"); out != "y" {
		t.Errorf("get pod/b1 jsonpath: %q", out)
	}
	// A missing key prints nothing, as kubectl (--allow-missing-template-keys).
	if out := must(t, ep, "", "get", "pod", "a2", "-o", "jsonpath={.metadata.nothere}"); out != "" {
		t.Errorf("missing key: %q", out)
	}
	// a filter on a number compares numbers.
	must(t, ep, "a1", "get", "pods", "-o", `jsonpath={.items[?(@.spec.containers[0].ports[0].containerPort==80)].metadata.name}`)

	out = must(t, ep, "NAME", "get", "pods", "-o", "custom-columns=NAME:.metadata.name,IP:{.status.podIP},APP:metadata.labels.app,PORTS:.spec.containers[*].ports[*].containerPort")
	want := "NAME   IP           APP   PORTS\na1     10.244.1.9   a     80\na2     <none>       a     80\nb1     <none>       b     80\n"
	if out != want {
		t.Errorf("custom-columns:\n%s\nwant:\n%s", out, want)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "cols"), []byte("NAME   TIER\n.metadata.name   .metadata.labels.tier\n"), 0o644)
	out = must(t, ep, "NAME", "get", "pods", "-o", "custom-columns-file="+filepath.Join(dir, "cols"), "-l", "app=a")
	if out != "NAME   TIER\na1     x\na2     <none>\n" {
		t.Errorf("custom-columns-file:\n%s", out)
	}
	os.WriteFile(filepath.Join(dir, "tmpl"), []byte("{.metadata.name}"), 0o644)
	if out := must(t, ep, "b1", "get", "pod", "b1", "-o", "jsonpath-file="+filepath.Join(dir, "tmpl")); out != "b1" {
		t.Errorf("jsonpath-file: %q", out)
	}

	// Bad templates are refused before the store is asked.
	fails(t, ep, "error parsing jsonpath {.items[", "get", "pods", "-o", "jsonpath={.items[")
	fails(t, ep, "unclosed action", "get", "pods", "-o", "jsonpath={.items")
	fails(t, ep, "-o jsonpath: a template is required", "get", "pods", "-o", "jsonpath")
	fails(t, ep, "unexpected custom-columns spec: NAME, expected <header>:<json-path-expr>", "get", "pods", "-o", "custom-columns=NAME")
	fails(t, ep, `custom-columns "X:{.a": unexpected path`, "get", "pods", "-o", "custom-columns=X:{.a")
	fails(t, ep, `custom-columns "X:.a[": error parsing jsonpath {.a[}`, "get", "pods", "-o", "custom-columns=X:.a[")
	fails(t, ep, `unable to match a printer suitable for the output format "tabel"`, "get", "pods", "-o", "tabel")
	fails(t, ep, `the server doesn't have a resource type "pots"`, "get", "pots")
	fails(t, ep, `pods "zz" not found`, "get", "pods", "zz")

	// -o name names the group, as kubectl.
	must(t, ep, "created", "create", "deployment", "web", "--", "sleep", "infinity")
	if out := must(t, ep, "", "get", "deploy", "-o", "name"); out != "deployment.apps/web\n" {
		t.Errorf("get deploy -o name: %q", out)
	}
}

func TestGetWatch(t *testing.T) {
	s, cfg := testutil.Store(t)
	ep := cfg.ClientURL
	if out, err := podnet(t, ep, threePods, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	podKind := kindOf(t, &corev1.Pod{})
	setPhase := func(name string, ph corev1.PodPhase) {
		t.Helper()
		_, err := s.Mutate(context.Background(), podKind, "default", name, func(o api.Object) error {
			o.(*corev1.Pod).Status.Phase = ph
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	out, _ := background(t, ep, "get", "pods", "-w", "-l", "app=a")
	out.waitFor(t, "a2     0/1     Pending")
	if got := out.String(); !strings.HasPrefix(got, "NAME   READY   STATUS    RESTARTS   AGE\na1     0/1     Pending   0          ") || strings.Contains(got, "b1") {
		t.Fatalf("watch's first table:\n%s", got)
	}
	setPhase("b1", corev1.PodRunning) // not selected: no row
	setPhase("a1", corev1.PodRunning)
	out.waitFor(t, "a1     0/1     Running   0")
	if got := out.String(); strings.Count(got, "NAME") != 1 || strings.Contains(got, "b1") {
		t.Fatalf("watch printed a second header or an unselected pod:\n%s", got)
	}
	if _, err := s.Delete(context.Background(), podKind, "default", "a2", store.DeleteOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	out.waitForN(t, "\na2     0/1     Pending   0", 2) // listed, then deleted

	// With event types, and one object by name: its listing comes first
	// (the watch starts from the list's revision, so nothing after it is
	// missed), then only its changes.
	ev, _ := background(t, ep, "get", "pods", "b1", "-w", "--output-watch-events")
	ev.waitFor(t, "ADDED   b1     0/1     Running")
	setPhase("a1", corev1.PodSucceeded)
	setPhase("b1", corev1.PodFailed)
	ev.waitFor(t, "MODIFIED   b1     0/1     Failed")
	if got := ev.String(); !strings.HasPrefix(got, "EVENT   NAME   READY") || strings.Contains(got, "a1") {
		t.Fatalf("-w --output-watch-events:\n%s", got)
	}

	// -o name and jsonpath print one line/document per change.
	jp, _ := background(t, ep, "get", "pods", "-w", "-o", `jsonpath={.metadata.name}={.status.phase}{"\n"}`)
	jp.waitFor(t, "b1=Failed\n")
	setPhase("a1", corev1.PodRunning)
	jp.waitFor(t, "a1=Succeeded\nb1=Failed\na1=Running\n")
}

func TestCustomColumnsSpec(t *testing.T) {
	cases := map[string]string{
		"NAME:.metadata.name":                   "NAME={.metadata.name}",
		"NAME:metadata.name,IP:{.status.podIP}": "NAME={.metadata.name} IP={.status.podIP}",
		"A:.a[0,1],B:.b":                        "A={.a[0,1]} B={.b}",
		`N:.items[?(@.x=="a,b")].y,M:.m`:        `N={.items[?(@.x=="a,b")].y} M={.m}`,
		"NAME":                                  "unexpected custom-columns spec: NAME",
		":.a":                                   "unexpected custom-columns spec: :.a",
		"A:":                                    "unexpected path",
		"A:{.a}{.b}":                            "unexpected path",
		"":                                      "no custom columns given",
		"A:.a,":                                 "unexpected custom-columns spec: ,",
	}
	for in, want := range cases {
		cols, err := parseCustomColumns(in)
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			var parts []string
			for _, c := range cols {
				parts = append(parts, c.Header+"="+c.Path)
			}
			got = strings.Join(parts, " ")
		}
		if !strings.Contains(got, want) {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}

func FuzzParseCustomColumns(f *testing.F) {
	for _, s := range []string{"NAME:.metadata.name", "A:.a[0,1],B:{.b}", `N:.items[?(@.x=="a,b")].y`, "A:", ":", ",,", "A:{", "A:.a[*].b,B:.c..d"} {
		f.Add(s)
	}
	obj, err := toGeneric(map[string]any{"metadata": map[string]any{"name": "x", "labels": map[string]string{"a": "b"}}, "items": []int{1, 2}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		cols, err := parseCustomColumns(spec)
		if err != nil {
			return
		}
		if len(cols) == 0 {
			t.Fatalf("%q: no columns and no error", spec)
		}
		for _, c := range cols {
			if c.Header == "" || !strings.HasPrefix(c.Path, "{.") || !strings.HasSuffix(c.Path, "}") {
				t.Fatalf("%q: bad column %+v", spec, c)
			}
			c.jp.FindResults(obj) // must not panic
		}
	})
}

func TestLabelAnnotate(t *testing.T) {
	_, cfg := testutil.Store(t)
	ep := cfg.ClientURL
	if out, err := podnet(t, ep, threePods, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	must(t, ep, "pod/a2 labeled", "label", "pod", "a2", "tier=z", "canary=yes")
	if got := strings.TrimSpace(must(t, ep, "pod/", "get", "pods", "-l", "tier=z", "-o", "name")); got != "pod/a2" {
		t.Fatalf("-l after label: %q", got)
	}
	fails(t, ep, "'tier' already has a value (z), and --overwrite is false", "label", "pod/a2", "tier=w")
	must(t, ep, "pod/a2 labeled", "label", "pod/a2", "tier=w", "canary-", "--overwrite")
	must(t, ep, "a2     0/1     Pending   0         ", "get", "pods", "-l", "tier=w,!canary")
	fails(t, ep, `"a=b=c": invalid label value "b=c"`, "label", "pod", "a2", "a=b=c")
	fails(t, ep, `"Bad Key=x": invalid key "Bad Key"`, "label", "pod", "a2", "Bad Key=x")
	fails(t, ep, `"tier": want KEY=VALUE to set or KEY- to remove`, "label", "pod", "a2", "tier")
	fails(t, ep, "usage: podnet label TYPE NAME KEY=VALUE", "label", "pod", "a2")
	fails(t, ep, `pods "zz" not found`, "label", "pod", "zz", "a=b")
	must(t, ep, "pod/b1 annotated", "annotate", "pod", "b1", "note=any value, even = signs")
	must(t, ep, "note: any value, even = signs", "describe", "pod", "b1")
	must(t, ep, "tier=w", "get", "pod", "a2", "--show-labels")
}

func FuzzParseMetaChanges(f *testing.F) {
	for _, s := range []string{"a=b", "a-", "example.com/x=y", "a=", "=b", "-", "a=b-", "a/b/c=d"} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, arg string, isLabel bool) {
		cs, err := parseMetaChanges([]string{arg}, isLabel)
		if err != nil {
			return
		}
		if len(cs) != 1 || cs[0].key == "" || strings.Contains(cs[0].key, "=") {
			t.Fatalf("%q: accepted %+v", arg, cs)
		}
	})
}

func TestDeleteBySelectorAndGetAll(t *testing.T) {
	s, cfg := testutil.Store(t)
	ep := cfg.ClientURL
	if out, err := podnet(t, ep, threePods, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	must(t, ep, "created", "create", "deployment", "web", "--", "sleep", "infinity")
	out := must(t, ep, "pod/a1 ", "get", "all")
	if !strings.Contains(out, "\n\nNAME                  READY   UP-TO-DATE") || !strings.Contains(out, "deployment.apps/web   0/1") {
		t.Errorf("get all:\n%s", out)
	}
	// logs and exec take TYPE/NAME and pick one of its pods, as kubectl.
	fails(t, ep, "deployment.apps/web has no pods", "logs", "deploy/web")
	fails(t, ep, "cannot pick a pod of nodes", "logs", "node/x")
	must(t, ep, "service/asvc exposed", "expose", "pod", "a1", "--port", "80", "--name", "asvc", "--selector", "app=a")
	out, err := podnet(t, ep, "", "logs", "svc/asvc")
	if err == nil || !strings.Contains(out, "Found 2 pods, using pod/a1") || !strings.Contains(err.Error(), "pod a1 is not on a node yet") {
		t.Fatalf("logs svc/asvc: %v\n%s", err, out)
	}
	_, err = s.Mutate(context.Background(), kindOf(t, &corev1.Pod{}), "default", "a2", func(o api.Object) error {
		o.(*corev1.Pod).Status.Phase = corev1.PodRunning
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	fails(t, ep, "pod a2 is not on a node yet", "logs", "svc/asvc") // a running one first
	fails(t, ep, "pod b1 is Pending, not Running", "exec", "pod/b1", "--", "true")

	fails(t, ep, `-l "a=(": unable to parse`, "delete", "pods", "-l", "a=(")
	fails(t, ep, "-l and --all take one RESOURCE and no names", "delete", "pods", "a1", "-l", "app=a")
	must(t, ep, "No resources found", "delete", "pods", "-l", "app=zz")
	out = must(t, ep, `pod "a1" deleted`, "delete", "pods", "-l", "app=a")
	if !strings.Contains(out, `pod "a2" deleted`) || strings.Contains(out, "b1") {
		t.Fatalf("delete -l app=a:\n%s", out)
	}
	if got := must(t, ep, "pod/b1", "get", "pods", "-o", "name"); got != "pod/b1\n" {
		t.Fatalf("left after delete -l: %q", got)
	}
	must(t, ep, `pod "b1" deleted`, "delete", "pods", "--all")
	must(t, ep, "No resources found", "get", "pods")
}
