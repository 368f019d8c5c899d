package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/testutil"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"
)

func pathOf(host, path string, pt networkingv1.PathType, svc, port string) networkingv1.IngressRule {
	r := networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{}}}
	r.HTTP.Paths = append(r.HTTP.Paths, networkingv1.HTTPIngressPath{Path: path, PathType: &pt, Backend: serviceBackend(svc, port)})
	return r
}

// TestBuildIngress: kubectl create ingress's documented examples give
// kubectl's objects.
func TestBuildIngress(t *testing.T) {
	exact, prefix := networkingv1.PathTypeExact, networkingv1.PathTypePrefix
	cases := []struct {
		name                  string
		rules                 []string
		defaultBackend, class string
		wantRules             []networkingv1.IngressRule
		wantTLS               []networkingv1.IngressTLS
		wantErr               string
	}{
		{name: "simple", rules: []string{"foo.com/bar=svc1:8080,tls=my-cert"},
			wantRules: []networkingv1.IngressRule{pathOf("foo.com", "/bar", exact, "svc1", "8080")},
			wantTLS:   []networkingv1.IngressTLS{{Hosts: []string{"foo.com"}, SecretName: "my-cert"}}},
		{name: "catch-all", rules: []string{"/path=svc:port"}, class: "otheringress",
			wantRules: []networkingv1.IngressRule{pathOf("", "/path", exact, "svc", "port")}},
		{name: "multipath", rules: []string{"foo.com/=svc:port", "foo.com/admin/=svcadmin:portadmin"},
			wantRules: func() []networkingv1.IngressRule {
				r := pathOf("foo.com", "/", exact, "svc", "port")
				r.HTTP.Paths = append(r.HTTP.Paths, pathOf("", "/admin/", exact, "svcadmin", "portadmin").HTTP.Paths...)
				return []networkingv1.IngressRule{r}
			}()},
		{name: "prefix", rules: []string{"foo.com/path*=svc:8080", "bar.com/admin*=svc2:http"},
			wantRules: []networkingv1.IngressRule{pathOf("foo.com", "/path", prefix, "svc", "8080"), pathOf("bar.com", "/admin", prefix, "svc2", "http")}},
		{name: "tls default cert", rules: []string{"foo.com/=svc:https,tls", "foo.com/path/subpath*=othersvc:8080"},
			wantRules: func() []networkingv1.IngressRule {
				r := pathOf("foo.com", "/", exact, "svc", "https")
				r.HTTP.Paths = append(r.HTTP.Paths, pathOf("", "/path/subpath", prefix, "othersvc", "8080").HTTP.Paths...)
				return []networkingv1.IngressRule{r}
			}(),
			wantTLS: []networkingv1.IngressTLS{{Hosts: []string{"foo.com"}}}},
		{name: "root prefix with secret and default backend", rules: []string{"foo.com/*=svc:8080,tls=secret1"}, defaultBackend: "defaultsvc:http",
			wantRules: []networkingv1.IngressRule{pathOf("foo.com", "/", prefix, "svc", "8080")},
			wantTLS:   []networkingv1.IngressTLS{{Hosts: []string{"foo.com"}, SecretName: "secret1"}}},
		{name: "hosts share a secret, a host only once", rules: []string{"a.com/=s:80,tls=c", "b.com/=s:80,tls=c", "a.com/x=s:80,tls=d", "/y=s:80,tls"},
			wantRules: func() []networkingv1.IngressRule {
				a := pathOf("a.com", "/", exact, "s", "80")
				a.HTTP.Paths = append(a.HTTP.Paths, pathOf("", "/x", exact, "s", "80").HTTP.Paths...)
				return []networkingv1.IngressRule{a, pathOf("b.com", "/", exact, "s", "80"), pathOf("", "/y", exact, "s", "80")}
			}(),
			wantTLS: []networkingv1.IngressTLS{{Hosts: []string{"a.com", "b.com"}, SecretName: "c"}}},
		{name: "wildcard host", rules: []string{"*.foo.com/*=svc:80"},
			wantRules: []networkingv1.IngressRule{pathOf("*.foo.com", "/", prefix, "svc", "80")}},
		{name: "default backend only", defaultBackend: "svc:80"},
		{name: "nothing", wantErr: "not enough information provided"},
		{name: "no path", rules: []string{"foo.com=svc:80"}, wantErr: "rule foo.com=svc:80 is invalid and should be in format host/path=svcname:svcport[,tls[=secret]]"},
		{name: "no port", rules: []string{"foo.com/=svc"}, wantErr: "is invalid"},
		{name: "bad tls", rules: []string{"foo.com/=svc:80,tsl=x"}, wantErr: "is invalid"},
		{name: "bad default backend", defaultBackend: "svc", wantErr: "default-backend should be in format servicename:serviceport"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ing, err := buildIngress("x", "default", c.class, c.defaultBackend, c.rules, nil)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(ing.Spec.Rules, c.wantRules) {
				got, _ := yaml.Marshal(ing.Spec.Rules)
				want, _ := yaml.Marshal(c.wantRules)
				t.Errorf("rules\n%s\nwant\n%s", got, want)
			}
			if !reflect.DeepEqual(ing.Spec.TLS, c.wantTLS) {
				t.Errorf("tls %+v, want %+v", ing.Spec.TLS, c.wantTLS)
			}
			if (c.class == "") != (ing.Spec.IngressClassName == nil) || c.class != "" && *ing.Spec.IngressClassName != c.class {
				t.Errorf("class %v", ing.Spec.IngressClassName)
			}
			if (c.defaultBackend == "") != (ing.Spec.DefaultBackend == nil) {
				t.Errorf("default backend %+v", ing.Spec.DefaultBackend)
			}
		})
	}
	ing, err := buildIngress("x", "default", "", "", []string{"/=s:80"}, []string{"a.io/k=v=w", "b.io/empty="})
	if err != nil || ing.Annotations["a.io/k"] != "v=w" || ing.Annotations["b.io/empty"] != "" {
		t.Fatalf("annotations %v %v", ing.Annotations, err)
	}
	if _, err := buildIngress("x", "default", "", "", []string{"/=s:80"}, []string{"novalue"}); err == nil || !strings.Contains(err.Error(), "annotation novalue is invalid and should be in format key=[value]") {
		t.Fatalf("bad annotation: %v", err)
	}
}

// FuzzParseIngressRule: any --rule is parsed or refused, never a panic,
// and a parsed rule's path starts with "/".
func FuzzParseIngressRule(f *testing.F) {
	for _, s := range []string{"foo.com/bar=svc1:8080,tls=my-cert", "/path=svc:port", "*.a/*=s:80,tls", "a/=b:c,tls=", "/==:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseIngressRule(s)
		if err == nil && !strings.HasPrefix(r.path.Path, "/") {
			t.Fatalf("%q: path %q", s, r.path.Path)
		}
	})
}

// writePair writes a self-signed certificate for host and its key to dir.
func writePair(t *testing.T, dir, host string) (crtFile, keyFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	crtFile, keyFile = filepath.Join(dir, host+".crt"), filepath.Join(dir, host+".key")
	if err := os.WriteFile(crtFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
	return crtFile, keyFile
}

func TestCreateSecretTLS(t *testing.T) {
	dir := t.TempDir()
	crt, key := writePair(t, dir, "a.example.com")
	_, otherKey := writePair(t, dir, "b.example.com")
	// Client dry run: no store needed; the manifest is printed in full.
	out, err := podnet(t, "http://127.0.0.1:1", "", "create", "secret", "tls", "web-tls", "--cert", crt, "--key", key, "--dry-run=client", "-o", "yaml")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	crtPEM, _ := os.ReadFile(crt)
	if !strings.Contains(out, "type: kubernetes.io/tls") || !strings.Contains(out, "tls.crt: "+base64.StdEncoding.EncodeToString(crtPEM)) {
		t.Fatalf("dry run manifest:\n%s", out)
	}
	_, err = podnet(t, "http://127.0.0.1:1", "", "create", "secret", "tls", "web-tls", "--cert", crt, "--key", otherKey, "--dry-run=client")
	if err == nil || !strings.Contains(err.Error(), "failed to load key pair") || !strings.Contains(err.Error(), "private key does not match public key") {
		t.Fatalf("mismatched pair: %v", err)
	}
	_, err = podnet(t, "http://127.0.0.1:1", "", "create", "secret", "tls", "web-tls", "--cert", crt)
	if err == nil || !strings.Contains(err.Error(), "key and cert must be specified") {
		t.Fatalf("no key: %v", err)
	}

	_, cfg := testutil.Store(t)
	ep := cfg.ClientURL
	must(t, ep, "secret/web-tls created", "create", "secret", "tls", "web-tls", "--cert", crt, "--key", key)
	keyPEM, _ := os.ReadFile(key)
	out = must(t, ep, "web-tls   kubernetes.io/tls   2      ", "get", "secrets")
	// get -o yaml, json, jsonpath: values redacted, never the PEM.
	for _, o := range []string{"yaml", "json", "jsonpath={.data}", "custom-columns=CRT:.data.tls\\.crt"} {
		out = must(t, ep, "(redacted, ", "get", "secret", "web-tls", "-o", o)
		if strings.Contains(out, base64.StdEncoding.EncodeToString(crtPEM)[:40]) || strings.Contains(out, "PRIVATE KEY") {
			t.Fatalf("-o %s printed a value:\n%s", o, out)
		}
	}
	out = must(t, ep, "kind: List", "get", "secrets", "-o", "yaml")
	if !strings.Contains(out, "tls.key: (redacted, "+fmt.Sprint(len(keyPEM))+" bytes)") {
		t.Fatalf("list:\n%s", out)
	}
	out = must(t, ep, "", "get", "secret", "web-tls", "-o", "json")
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil || m["kind"] != "Secret" || m["type"] != "kubernetes.io/tls" {
		t.Fatalf("json: %v\n%s", err, out)
	}
	out = must(t, ep, "Type:  kubernetes.io/tls", "describe", "secret", "web-tls")
	for _, want := range []string{"Name:         web-tls\n", "Data\n====\n", "tls.crt:  " + fmt.Sprint(len(crtPEM)) + " bytes\n", "tls.key:  " + fmt.Sprint(len(keyPEM)) + " bytes\n", "DNS Names:   a.example.com\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "BEGIN") {
		t.Errorf("describe printed a value:\n%s", out)
	}
	// A manifest saved from get is refused rather than stored redacted.
	saved := must(t, ep, "", "get", "secret", "web-tls", "-o", "yaml")
	if out, err := podnet(t, ep, saved, "apply", "-f", "-"); err == nil || !strings.Contains(err.Error(), "illegal base64 data") {
		t.Fatalf("apply of a redacted manifest: %v\n%s", err, out)
	}
	// A mismatched pair applied as a manifest: stored, with a warning.
	otherKeyPEM, _ := os.ReadFile(otherKey)
	bad := "apiVersion: v1\nkind: Secret\nmetadata: {name: odd}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: " + base64.StdEncoding.EncodeToString(crtPEM) + "\n  tls.key: " + base64.StdEncoding.EncodeToString(otherKeyPEM) + "\n"
	out, err = podnet(t, ep, bad, "apply", "-f", "-")
	if err != nil || !strings.Contains(out, "secret/odd created") || !strings.Contains(out, `Warning: secret "odd": tls.crt and tls.key are not a usable key pair`) {
		t.Fatalf("apply mismatched pair: %v\n%s", err, out)
	}
	must(t, ep, `secret "odd" deleted`, "delete", "secret", "odd")
}

const ingressYAML = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  annotations:
    nginx.ingress.kubernetes.io/rewrite-target: /
spec:
  tls:
  - hosts: [a.example.com]
    secretName: web-tls
  rules:
  - host: a.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /missing, pathType: Exact, backend: {service: {name: nosuch, port: {name: http}}}}
  - http:
      paths:
      - {path: /any, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}
`

const ingressBackendsYAML = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
endpoints:
- addresses: [10.244.1.5]
  conditions: {ready: true}
- addresses: [10.244.2.7]
  conditions: {ready: true}
- addresses: [10.244.3.9]
  conditions: {ready: false}
ports: [{name: http, port: 8080, protocol: TCP}]
`

func TestIngressApplyGetDescribe(t *testing.T) {
	s, cfg := testutil.Store(t)
	ep := cfg.ClientURL
	out, err := podnet(t, ep, ingressBackendsYAML, "apply", "-f", "-")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err = podnet(t, ep, ingressYAML, "apply", "-f", "-")
	if err != nil || !strings.Contains(out, "ingress.networking.k8s.io/web created") || strings.Contains(out, "Warning") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	out, err = podnet(t, ep, ingressYAML, "apply", "-f", "-")
	if err != nil || !strings.Contains(out, "ingress.networking.k8s.io/web unchanged") {
		t.Fatalf("re-apply: %v\n%s", err, out)
	}
	must(t, ep, "NAME   CLASS    HOSTS             ADDRESS   PORTS     AGE\nweb    <none>   a.example.com,*             80, 443   ", "get", "ingress")
	must(t, ep, "ingress.networking.k8s.io/web", "get", "ing", "-o", "name")
	out = must(t, ep, "Name:             web\n", "describe", "ingress", "web")
	for _, want := range []string{
		"Namespace:        default\n",
		"Address:          \n",
		"Ingress Class:    <none>\n",
		"Default backend:  <default>\n",
		"TLS:\n  web-tls terminates a.example.com\n",
		// Cells as kubectl's tabwriter aligns them, block by block.
		"Rules:\n  Host           Path  Backends\n  ----           ----  --------\n",
		"  a.example.com  \n",
		"                 /          web:80 (10.244.1.5:8080,10.244.2.7:8080)\n",
		"                 /missing   nosuch:http (<error: service default/nosuch not found>)\n",
		"  *              \n",
		"                 /any   web:http (10.244.1.5:8080,10.244.2.7:8080)\n",
		"Annotations:     nginx.ingress.kubernetes.io/rewrite-target: /\n",
		"Events:          <none>\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}

	// Bad annotation values and snippets are refused, naming the
	// annotation; an unknown one is a warning.
	bad := strings.Replace(ingressYAML, "rewrite-target: /", `proxy-body-size: "abc"`, 1)
	out, err = podnet(t, ep, bad, "apply", "-f", "-")
	if err == nil || !strings.Contains(err.Error(), `Ingress "web" is invalid: metadata.annotations[nginx.ingress.kubernetes.io/proxy-body-size]: Invalid value: "abc": must be a size such as 8m, 1g, 512k or 0`) {
		t.Fatalf("bad proxy-body-size: %v\n%s", err, out)
	}
	snippet := strings.Replace(ingressYAML, "rewrite-target: /", `server-snippet: "location / { return 200; }"`, 1)
	out, err = podnet(t, ep, snippet, "apply", "-f", "-")
	if err == nil || !strings.Contains(err.Error(), "metadata.annotations[nginx.ingress.kubernetes.io/server-snippet]") || !strings.Contains(err.Error(), "snippet annotations are not supported: podnet never executes configuration text") {
		t.Fatalf("snippet: %v\n%s", err, out)
	}
	unknown := strings.Replace(ingressYAML, "rewrite-target: /", `mirror-target: "http://m"`, 1)
	out, err = podnet(t, ep, unknown, "apply", "-f", "-")
	if err != nil || !strings.Contains(out, "Warning: annotation nginx.ingress.kubernetes.io/mirror-target is not supported by podnet and is ignored\n") || !strings.Contains(out, "ingress.networking.k8s.io/web configured") {
		t.Fatalf("unknown annotation: %v\n%s", err, out)
	}

	// Problems and address written by the status controller show up.
	ingKind, _ := api.ResourceFor("ingress")
	if _, err := s.Mutate(context.Background(), ingKind, "default", "web", func(o api.Object) error {
		ing := o.(*networkingv1.Ingress)
		ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "192.168.50.2"}, {IP: "192.168.50.3"}}
		ing.Annotations[api.AnnotationIngressProblems] = "secret default/web-tls not found\nservice default/nosuch not found"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	must(t, ep, "web    <none>   a.example.com,*   192.168.50.2,192.168.50.3   80, 443   ", "get", "ingress")
	out = must(t, ep, "Address:          192.168.50.2,192.168.50.3\n", "describe", "ing", "web")
	if !strings.Contains(out, "Problems (from the ingress-status controller, annotation ingress.podnet.io/problems):\n  secret default/web-tls not found\n  service default/nosuch not found\n") {
		t.Fatalf("describe problems:\n%s", out)
	}
	if strings.Contains(out, "Annotations:      ingress.podnet.io") || strings.Count(out, "ingress.podnet.io/problems") != 1 {
		t.Fatalf("the problems annotation is listed twice:\n%s", out)
	}

	// create ingress, dry run and for real; warnings there too.
	out = must(t, ep, "pathType: Prefix", "create", "ingress", "simple", "--rule", "foo.com/bar*=web:80,tls=web-tls", "--class", "podnet", "--dry-run=client", "-o", "yaml")
	if !strings.Contains(out, "ingressClassName: podnet") || !strings.Contains(out, "secretName: web-tls") {
		t.Fatalf("dry run:\n%s", out)
	}
	out = must(t, ep, "ingress.networking.k8s.io/simple created", "create", "ingress", "simple", "--rule", "foo.com/bar*=web:80", "--annotation", "nginx.ingress.kubernetes.io/x-unknown=1")
	if !strings.Contains(out, "Warning: annotation nginx.ingress.kubernetes.io/x-unknown is not supported") {
		t.Fatalf("create warning:\n%s", out)
	}
	fails(t, ep, `metadata.annotations[nginx.ingress.kubernetes.io/limit-rps]: Invalid value: "-1"`, "create", "ingress", "other", "--rule", "/=web:80", "--annotation", "nginx.ingress.kubernetes.io/limit-rps=-1")
	fails(t, ep, `spec.rules[0].host: Invalid value: "Foo_.com"`, "create", "ingress", "other", "--rule", "Foo_.com/=web:80")
	must(t, ep, `ingress.networking.k8s.io "simple" deleted`, "delete", "ing", "simple")
	out, err = podnet(t, ep, ingressYAML, "delete", "-f", "-")
	if err != nil || !strings.Contains(out, `ingress.networking.k8s.io "web" deleted`) {
		t.Fatalf("delete -f: %v\n%s", err, out)
	}
}
