package api

import (
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
)

const ingressManifest = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  annotations:
    nginx.ingress.kubernetes.io/rewrite-target: /$2
spec:
  ingressClassName: podnet
  defaultBackend:
    service: {name: fallback, port: {number: 80}}
  tls:
  - hosts: [a.example.com, "*.b.example.com"]
    secretName: web-tls
  rules:
  - host: a.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /exact, pathType: Exact, backend: {service: {name: web, port: {name: http}}}}
      - {path: "/api(/|$)(.*)", pathType: ImplementationSpecific, backend: {service: {name: api, port: {number: 8080}}}}
  - host: "*.b.example.com"
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {resource: {apiGroup: k8s.example.com, kind: StorageBucket, name: assets}}}
  - http:
      paths:
      - {pathType: ImplementationSpecific, backend: {service: {name: web, port: {number: 80}}}}
`

func TestDecodeIngress(t *testing.T) {
	docs, err := Decode("ing.yaml", "team", strings.NewReader(ingressManifest))
	if err != nil {
		t.Fatal(err)
	}
	ing := docs[0].Object.(*networkingv1.Ingress)
	if ing.Namespace != "team" || len(ing.Spec.Rules) != 3 || *ing.Spec.Rules[0].HTTP.Paths[1].PathType != networkingv1.PathTypeExact {
		t.Errorf("decoded %+v", ing.Spec)
	}
	if w := docs[0].Kind.WarningsFor(ing); len(w) != 0 {
		t.Errorf("warnings %v", w)
	}
	c := cells(t, ing, false)
	if c["CLASS"] != "podnet" || c["HOSTS"] != "a.example.com,*.b.example.com,*" || c["ADDRESS"] != "" || c["PORTS"] != "80, 443" {
		t.Errorf("cells %v", c)
	}
}

// TestValidateIngress: each bad manifest gets exactly the API server's
// (or ingress-nginx's, for annotations) error, naming field or annotation.
func TestValidateIngress(t *testing.T) {
	rule := func(host, path, pathType, backend string) string {
		return `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules:
  - host: "` + host + `"
    http:
      paths:
      - {path: "` + path + `", pathType: ` + pathType + `, backend: ` + backend + `}
`
	}
	svc := `{service: {name: web, port: {number: 80}}}`
	withAnn := func(k, v string) string {
		return strings.Replace(rule("a.com", "/", "Prefix", svc), "metadata: {name: web}", "metadata:\n  name: web\n  annotations: {"+k+": '"+v+"'}", 1)
	}
	cases := []struct {
		name, manifest, want string
	}{
		{"ok", rule("a.com", "/x", "Prefix", svc), ""},
		{"ok wildcard", rule("*.a.com", "/x", "Exact", svc), ""},
		{"empty spec", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec: {}\n",
			`Ingress "web" is invalid: spec: Invalid value: null: either ` + "`defaultBackend` or `rules`" + ` must be specified`},
		{"ip host", rule("10.0.0.1", "/", "Prefix", svc), `spec.rules[0].host: Invalid value: "10.0.0.1": must be a DNS name, not an IP address`},
		{"bad host", rule("A_b.com", "/", "Prefix", svc), `spec.rules[0].host: Invalid value: "A_b.com": a lowercase RFC 1123 subdomain`},
		{"double wildcard", rule("*.*.a.com", "/", "Prefix", svc), `spec.rules[0].host: Invalid value: "*.*.a.com": a wildcard DNS-1123 subdomain must start with '*.'`},
		{"relative", rule("a.com", "x", "Prefix", svc), `spec.rules[0].http.paths[0].path: Invalid value: "x": must be an absolute path`},
		{"relative IS", rule("a.com", "x", "ImplementationSpecific", svc), `spec.rules[0].http.paths[0].path: Invalid value: "x": must be an absolute path`},
		{"double slash", rule("a.com", "/a//b", "Exact", svc), `spec.rules[0].http.paths[0].path: Invalid value: "/a//b": must not contain '//'`},
		{"dot dot", rule("a.com", "/a/..", "Prefix", svc), `spec.rules[0].http.paths[0].path: Invalid value: "/a/..": cannot end with '/..'`},
		{"encoded slash", rule("a.com", "/a%2fb", "Prefix", svc), `must not contain '%2f'`},
		{"regex in prefix", rule("a.com", "/api(/|$)(.*)", "Prefix", svc), `spec.rules[0].http.paths[0].path: Invalid value: "/api(/|$)(.*)": must not contain '(' with pathType Exact or Prefix (a regular expression needs pathType ImplementationSpecific and the annotation nginx.ingress.kubernetes.io/use-regex)`},
		{"no pathType", strings.Replace(rule("a.com", "/", "Prefix", svc), ", pathType: Prefix", "", 1), `spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified`},
		{"bad pathType", rule("a.com", "/", "Regex", svc), `spec.rules[0].http.paths[0].pathType: Unsupported value: "Regex": supported values: "Exact", "ImplementationSpecific", "Prefix"`},
		{"no backend", rule("a.com", "/", "Prefix", "{}"), `spec.rules[0].http.paths[0].backend: Invalid value: "": resource or service backend is required`},
		{"both backends", rule("a.com", "/", "Prefix", `{service: {name: web, port: {number: 80}}, resource: {kind: X, name: bucket}}`), `spec.rules[0].http.paths[0].backend: Invalid value: "": cannot set both resource and service backends`},
		{"no port", rule("a.com", "/", "Prefix", `{service: {name: web}}`), `spec.rules[0].http.paths[0].backend.service.port: Required value: port name or number is required`},
		{"both ports", rule("a.com", "/", "Prefix", `{service: {name: web, port: {number: 80, name: http}}}`), `spec.rules[0].http.paths[0].backend.service.port: Invalid value: `},
		{"bad port", rule("a.com", "/", "Prefix", `{service: {name: web, port: {number: 70000}}}`), `spec.rules[0].http.paths[0].backend.service.port.number: Invalid value: 70000: must be between 1 and 65535, inclusive`},
		{"bad port name", rule("a.com", "/", "Prefix", `{service: {name: web, port: {name: HTTP_1}}}`), `spec.rules[0].http.paths[0].backend.service.port.name: Invalid value: "HTTP_1"`},
		{"bad service", rule("a.com", "/", "Prefix", `{service: {name: 1web, port: {number: 80}}}`), `spec.rules[0].http.paths[0].backend.service.name: Invalid value: "1web": a DNS-1035 label`},
		{"no service name", rule("a.com", "/", "Prefix", `{service: {port: {number: 80}}}`), `spec.rules[0].http.paths[0].backend.service.name: Required value`},
		{"resource without kind", rule("a.com", "/", "Prefix", `{resource: {name: bucket}}`), `spec.rules[0].http.paths[0].backend.resource.kind: Required value: kind is required`},
		{"no paths", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\nspec:\n  rules:\n  - host: a.com\n    http: {paths: []}\n", `spec.rules[0].http.paths: Required value`},
		{"tls host", strings.Replace(rule("a.com", "/", "Prefix", svc), "spec:\n", "spec:\n  tls: [{hosts: [\"1.2.3.4\"], secretName: Bad_Name}]\n", 1),
			`spec.tls[0].hosts[0]: Invalid value: "1.2.3.4": must be a DNS name, not an IP address; spec.tls[0].secretName: Invalid value: "Bad_Name"`},
		{"class name", strings.Replace(rule("a.com", "/", "Prefix", svc), "spec:\n", "spec:\n  ingressClassName: Pod_Net\n", 1), `spec.ingressClassName: Invalid value: "Pod_Net"`},
		{"class mismatch", strings.Replace(withAnn("kubernetes.io/ingress.class", "nginx"), "spec:\n", "spec:\n  ingressClassName: podnet\n", 1),
			`metadata.annotations[kubernetes.io/ingress.class]: Invalid value: "nginx": must match ` + "`ingressClassName`" + ` when both are specified`},
		{"proxy-body-size", withAnn("nginx.ingress.kubernetes.io/proxy-body-size", "abc"),
			`Ingress "web" is invalid: metadata.annotations[nginx.ingress.kubernetes.io/proxy-body-size]: Invalid value: "abc": must be a size such as 8m, 1g, 512k or 0`},
		{"snippet", withAnn("nginx.ingress.kubernetes.io/configuration-snippet", "return 200;"),
			`metadata.annotations[nginx.ingress.kubernetes.io/configuration-snippet]: Invalid value: "return 200;": snippet annotations are not supported: podnet never executes configuration text`},
		{"unknown annotation is fine", withAnn("nginx.ingress.kubernetes.io/mirror-target", "x"), ""},
		{"status ip", rule("a.com", "/", "Prefix", svc) + "status: {loadBalancer: {ingress: [{ip: nope}]}}\n", `status.loadBalancer.ingress[0].ip: Invalid value: "nope": must be a valid IP address`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode("ing.yaml", "default", strings.NewReader(c.manifest))
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want != "" && err == nil:
				t.Fatalf("accepted, want %q", c.want)
			case c.want != "" && !strings.Contains(err.Error(), c.want):
				t.Fatalf("error\n %v\nwant it to contain\n %s", err, c.want)
			}
		})
	}
}

func TestIngressWarnings(t *testing.T) {
	ing := &networkingv1.Ingress{}
	ing.Name = "web"
	ing.Annotations = map[string]string{
		"nginx.ingress.kubernetes.io/mirror-target": "http://x",
		"nginx.ingress.kubernetes.io/ssl-redirect":  "false",
		"example.com/other":                         "not ours",
	}
	k, _ := KindOf(ing)
	w := k.WarningsFor(ing)
	if len(w) != 1 || w[0] != "annotation nginx.ingress.kubernetes.io/mirror-target is not supported by podnet and is ignored" {
		t.Fatalf("warnings %q", w)
	}
	if w := (&Kind{}).WarningsFor(ing); w != nil {
		t.Fatalf("a kind without Warnings: %v", w)
	}
}

func TestIngressColumns(t *testing.T) {
	ing := &networkingv1.Ingress{}
	ing.Name = "many"
	for _, h := range []string{"a.com", "", "c.com", "d.com", "e.com", "f.com"} {
		ing.Spec.Rules = append(ing.Spec.Rules, networkingv1.IngressRule{Host: h})
	}
	ing.Annotations = map[string]string{AnnotationIngressClass: "legacy"}
	ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "192.168.1.10"}, {IP: "192.168.1.11"}, {Hostname: "lb.example.com"}}
	c := cells(t, ing, false)
	want := map[string]string{"NAME": "many", "CLASS": "legacy", "HOSTS": "a.com,*,c.com,d.com + 2 more...", "ADDRESS": "192.168.1.10,192.168.1.11,lb.example.com", "PORTS": "80", "AGE": "<unknown>"}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%s = %q, want %q", k, c[k], v)
		}
	}
	if len(c) != len(want) {
		t.Errorf("columns %v", c)
	}
	none := &networkingv1.Ingress{Spec: networkingv1.IngressSpec{DefaultBackend: &networkingv1.IngressBackend{}}}
	if c := cells(t, none, false); c["CLASS"] != "<none>" || c["HOSTS"] != "*" {
		t.Errorf("defaultBackend-only ingress: %v", c)
	}
}

func TestIngressClass(t *testing.T) {
	good := `apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: podnet
  annotations: {ingressclass.kubernetes.io/is-default-class: "true"}
spec:
  controller: podnet.io/ingress-controller
`
	docs, err := Decode("ic.yaml", "team", strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	ic := docs[0].Object.(*networkingv1.IngressClass)
	if ic.Namespace != "" || !IngressClassIsDefault(ic) {
		t.Fatalf("%+v", ic)
	}
	if c := cells(t, ic, false); c["CONTROLLER"] != "podnet.io/ingress-controller" || c["PARAMETERS"] != "<none>" {
		t.Errorf("cells %v", c)
	}
	params := good + "  parameters: {apiGroup: k8s.example.com, kind: IngressParameters, name: p}\n"
	docs, err = Decode("ic.yaml", "", strings.NewReader(params))
	if err != nil {
		t.Fatal(err)
	}
	ic = docs[0].Object.(*networkingv1.IngressClass)
	if *ic.Spec.Parameters.Scope != "Cluster" {
		t.Errorf("scope not defaulted: %+v", ic.Spec.Parameters)
	}
	if c := cells(t, ic, false); c["PARAMETERS"] != "IngressParameters.k8s.example.com/p" {
		t.Errorf("PARAMETERS %q", c["PARAMETERS"])
	}
	for _, c := range []struct{ manifest, want string }{
		{strings.Replace(good, "podnet.io/ingress-controller", "podnet", 1), `spec.controller: Invalid value: "podnet": must be a domain-prefixed path (such as "acme.io/foo")`},
		{strings.Replace(good, "  controller: podnet.io/ingress-controller\n", "  controller: \"\"\n", 1), `spec.controller: Required value`},
		{strings.Replace(good, `"true"`, `"yes"`, 1), `metadata.annotations[ingressclass.kubernetes.io/is-default-class]: Unsupported value: "yes": supported values: "true", "false"`},
		{good + "  parameters: {kind: X, name: p, scope: Namespace}\n", "spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"},
		{good + "  parameters: {kind: X, name: p, namespace: a}\n", "spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'"},
		{good + "  parameters: {name: p, scope: Galaxy}\n", `spec.parameters.kind: Required value: kind is required; spec.parameters.scope: Unsupported value: "Galaxy"`},
		{strings.Replace(good, "  name: podnet\n", "  name: podnet\n  namespace: team\n", 1), `metadata.namespace: Forbidden: ingressclasses is not namespaced`},
	} {
		_, err := Decode("ic.yaml", "", strings.NewReader(c.manifest))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error %v\nwant %s", err, c.want)
		}
	}
	k, _ := KindOf(ic)
	other := ic.DeepCopy()
	other.Spec.Controller = "example.com/other"
	if errs := k.ValidateUpdate(ic, other); len(errs) != 1 || !strings.Contains(errs[0].Error(), "spec.controller: Invalid value: \"example.com/other\": field is immutable") {
		t.Errorf("controller change: %v", errs)
	}
}

func TestJoinIngressProblems(t *testing.T) {
	if got := JoinIngressProblems([]string{"b", "a", "b", ""}); got != "a\nb" {
		t.Fatalf("%q", got)
	}
	ing := &networkingv1.Ingress{}
	if IngressProblems(ing) != nil {
		t.Fatal("problems of a clean ingress")
	}
	ing.Annotations = map[string]string{AnnotationIngressProblems: "a\nb"}
	if p := IngressProblems(ing); len(p) != 2 || p[1] != "b" {
		t.Fatalf("%q", p)
	}
}
