package route

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the generated sections of testdata/*.txtar")

// A golden file is a txtar-like archive: sections start with a line
// "-- name --". The test reads "input.yaml" (Kubernetes objects, "---"
// between them) and "requests" (lines "host path"; the path "-" is ""),
// and compares "table" (Table.String), "problems" and "matches" with what
// Build and Match give. -update rewrites those three.

type section struct{ name, body string }

func parseArchive(data string) []section {
	var out []section
	for _, line := range strings.SplitAfter(data, "\n") {
		t := strings.TrimRight(line, "\n")
		if strings.HasPrefix(t, "-- ") && strings.HasSuffix(t, " --") && len(t) > 6 {
			out = append(out, section{name: t[3 : len(t)-3]})
			continue
		}
		if len(out) > 0 {
			out[len(out)-1].body += line
		}
	}
	return out
}

func formatArchive(ss []section) string {
	var b strings.Builder
	for _, s := range ss {
		fmt.Fprintf(&b, "-- %s --\n%s", s.name, s.body)
		if s.body != "" && !strings.HasSuffix(s.body, "\n") {
			b.WriteString("\n")
		}
	}
	return b.String()
}

// decodeInput decodes YAML documents into Build's input. Secrets'
// stringData is folded into data, as the API server does.
func decodeInput(t *testing.T, src string) Input {
	t.Helper()
	var in Input
	for i, doc := range strings.Split(src, "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		var err error
		strict := func(v any) { err = yaml.UnmarshalStrict([]byte(doc), v) }
		switch tm.Kind {
		case "Ingress":
			o := &networkingv1.Ingress{}
			strict(o)
			in.Ingresses = append(in.Ingresses, o)
		case "IngressClass":
			o := &networkingv1.IngressClass{}
			strict(o)
			in.IngressClasses = append(in.IngressClasses, o)
		case "Service":
			o := &corev1.Service{}
			strict(o)
			in.Services = append(in.Services, o)
		case "EndpointSlice":
			o := &discoveryv1.EndpointSlice{}
			strict(o)
			in.EndpointSlices = append(in.EndpointSlices, o)
		case "Secret":
			o := &corev1.Secret{}
			strict(o)
			for k, v := range o.StringData {
				if o.Data == nil {
					o.Data = map[string][]byte{}
				}
				o.Data[k] = []byte(v)
			}
			in.Secrets = append(in.Secrets, o)
		default:
			t.Fatalf("document %d: unknown kind %q", i, tm.Kind)
		}
		if err != nil {
			t.Fatalf("document %d (%s): %v", i, tm.Kind, err)
		}
	}
	return in
}

func describeMatch(tab *Table, host, path string) string {
	m := tab.Match(host, path)
	q := fmt.Sprintf("%s %s", host, path)
	if path == "" {
		q = host + " -"
	}
	if m.Route == nil {
		if d := tab.DefaultBackend(); d != nil {
			return fmt.Sprintf("%s => default %s\n", q, backendString(d))
		}
		return q + " => 404\n"
	}
	r := m.Route
	s := fmt.Sprintf("%s => %s %s %s (%s)", q, r.PathType, r.Path, backendString(r.Backend), r.Ingress)
	if r.Path == "" {
		s = fmt.Sprintf("%s => fallback %s (%s)", q, backendString(r.Backend), r.Ingress)
	}
	if m.Groups != nil {
		s += fmt.Sprintf(" groups=%q", m.Groups)
		if r.Config != nil && r.Config.RewriteTarget != "" {
			s += fmt.Sprintf(" rewrite=%s", Rewrite(r.Config.RewriteTarget, m.Groups))
		}
	}
	if len(r.Canaries) > 0 {
		s += fmt.Sprintf(" canaries=%d", len(r.Canaries))
	}
	if r.TLS {
		s += " tls"
	}
	if e := tab.lookupCert(host); e != nil {
		s += " cert=" + e.secret.String()
	}
	return s + "\n"
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			ss := parseArchive(string(data))
			get := func(name string) string {
				for _, s := range ss {
					if s.name == name {
						return s.body
					}
				}
				return ""
			}
			tab, problems := Build(decodeInput(t, get("input.yaml")))
			var pb strings.Builder
			for _, p := range problems {
				fmt.Fprintf(&pb, "%s: %s\n", p.Ingress, p.Message)
			}
			var mb strings.Builder
			for _, line := range strings.Split(get("requests"), "\n") {
				f := strings.Fields(line)
				if len(f) != 2 {
					continue
				}
				if f[1] == "-" {
					f[1] = ""
				}
				mb.WriteString(describeMatch(tab, f[0], f[1]))
			}
			got := map[string]string{"table": tab.String(), "problems": pb.String(), "matches": mb.String()}
			if *update {
				var out []section
				for _, s := range ss {
					if _, gen := got[s.name]; !gen {
						out = append(out, s)
					}
				}
				for _, name := range []string{"table", "problems", "matches"} {
					out = append(out, section{name, got[name]})
				}
				if err := os.WriteFile(file, []byte(formatArchive(out)), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			for _, name := range []string{"table", "problems", "matches"} {
				if want := get(name); want != got[name] {
					t.Errorf("%s differs (go test -update to accept):\n--- want\n%s--- got\n%s", name, want, got[name])
				}
			}
		})
	}
}

func TestArchiveRoundTrip(t *testing.T) {
	src := "-- a --\nx\n-- not a section\n-- b --\n-- c --\ny\nz\n"
	ss := parseArchive(src)
	if len(ss) != 3 || ss[0].body != "x\n-- not a section\n" || ss[1].body != "" || ss[2].body != "y\nz\n" {
		t.Fatalf("%q", ss)
	}
	if got := formatArchive(ss); !bytes.Equal([]byte(got), []byte(src)) {
		t.Errorf("%q", got)
	}
}
