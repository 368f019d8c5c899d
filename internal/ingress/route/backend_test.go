package route

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestEndpoints(t *testing.T) {
	ext := mkSvc("a", "ext")
	ext.Spec.Type = corev1.ServiceTypeExternalName
	ext.Spec.ExternalName = "example.org"
	udp := mkSvc("a", "udp", "dns:53")
	udp.Spec.Ports[0].Protocol = corev1.ProtocolUDP

	v6 := mkSlice("a", "six", "six-1", "", 8080, epOpt{addr: "fd00::2"}, epOpt{addr: "fd00::1"})
	v6.AddressType = discoveryv1.AddressTypeIPv6
	nilConds := mkSlice("a", "nilcond", "nc", "", 80)
	nilConds.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.1"}}, {Addresses: nil}}
	udpPort := mkSlice("a", "web", "web-udp", "http", 8080, epOpt{addr: "10.9.9.9"})
	proto := corev1.ProtocolUDP
	udpPort.Ports[0].Protocol = &proto
	otherNS := mkSlice("b", "web", "web-b", "http", 8080, epOpt{addr: "10.8.8.8"})
	fqdn := mkSlice("a", "web", "web-fqdn", "http", 8080, epOpt{addr: "x.example"})
	fqdn.AddressType = discoveryv1.AddressTypeFQDN

	in := Input{
		IngressClasses: []*networkingv1.IngressClass{podnetClass(false)},
		Ingresses: []*networkingv1.Ingress{
			mkIng("a", "i", 0, rule("h.com",
				"Exact /num web:80",
				"Exact /name web:metrics",
				"Exact /single single:80",
				"Exact /six six:80",
				"Exact /nilcond nilcond:80",
				"Exact /noport web:81",
				"Exact /noname web:nope",
				"Exact /missing missing:80",
				"Exact /ext ext:80",
				"Exact /udp udp:53",
				"Exact /empty empty:80",
				"Exact /num2 web:http",
			)),
		},
		Services: []*corev1.Service{
			mkSvc("a", "web", "http:80", "metrics:9090"), mkSvc("a", "single", ":80"), mkSvc("a", "six", ":80"),
			mkSvc("a", "nilcond", ":80"), mkSvc("a", "empty", ":80"), ext, udp,
		},
		EndpointSlices: []*discoveryv1.EndpointSlice{
			mkSlice("a", "web", "web-1", "http", 8080,
				epOpt{addr: "10.0.0.2", node: "n2"}, epOpt{addr: "10.0.0.1", node: "n1"},
				epOpt{addr: "10.0.0.3", notReady: true, term: true},
				epOpt{addr: "10.0.0.4", notReady: true, term: true, notServing: true},
				epOpt{addr: "10.0.0.5", notReady: true}),
			mkSlice("a", "web", "web-2", "http", 8080,
				epOpt{addr: "10.0.0.1", node: "n1"}, epOpt{addr: "10.0.0.2", notReady: true, term: true},
				epOpt{addr: "10.0.0.10"}),
			mkSlice("a", "web", "web-m", "metrics", 9100, epOpt{addr: "10.0.0.1"}),
			mkSlice("a", "single", "single-1", "", 8080, epOpt{addr: "10.0.1.1"}),
			v6, nilConds, udpPort, otherNS, fqdn,
			mkSlice("a", "empty", "empty-1", "", 80, epOpt{addr: "10.0.2.1", notReady: true}),
		},
	}
	tab, ps := Build(in)
	eps := func(path string) *Backend { return tab.Match("h.com", path).Route.Backend }

	want := []Endpoint{{Addr: "10.0.0.1:8080", Node: "n1"}, {Addr: "10.0.0.2:8080", Node: "n2"}, {Addr: "10.0.0.10:8080"}, {Addr: "10.0.0.3:8080", Terminating: true}}
	if b := eps("/num"); !reflect.DeepEqual(b.Endpoints, want) || b.Port != "80" || b.Key() != "a-web-80" || b.Err != "" {
		t.Errorf("by number: %+v", b)
	}
	if b := eps("/num2"); !reflect.DeepEqual(b.Endpoints, want) || b.Port != "http" {
		t.Errorf("by name http: %+v", b)
	}
	if b := eps("/name"); !reflect.DeepEqual(b.Endpoints, []Endpoint{{Addr: "10.0.0.1:9100"}}) || b.Port != "metrics" {
		t.Errorf("by name: %+v", b)
	}
	if b := eps("/single"); !reflect.DeepEqual(b.Endpoints, []Endpoint{{Addr: "10.0.1.1:8080"}}) {
		t.Errorf("unnamed port: %+v", b)
	}
	if b := eps("/six"); !reflect.DeepEqual(b.Endpoints, []Endpoint{{Addr: "[fd00::1]:8080"}, {Addr: "[fd00::2]:8080"}}) {
		t.Errorf("IPv6: %+v", b)
	}
	if b := eps("/nilcond"); !reflect.DeepEqual(b.Endpoints, []Endpoint{{Addr: "10.1.0.1:80"}}) {
		t.Errorf("nil conditions: %+v", b)
	}
	if b := eps("/empty"); b.Endpoints != nil || b.Err != "" {
		t.Errorf("no ready endpoint: %+v", b)
	}
	errs := map[string]string{
		"/noport":  "service a/web has no port 81",
		"/noname":  "service a/web has no port nope",
		"/missing": "service a/missing not found",
		"/ext":     "ExternalName services are not supported",
		"/udp":     "service a/udp has no port 53",
	}
	for path, msg := range errs {
		if b := eps(path); b.Err != msg || b.Endpoints != nil {
			t.Errorf("%s: %+v", path, b)
		}
		if !hasProblem(ps, "a/i", msg) {
			t.Errorf("no problem %q: %v", msg, ps)
		}
	}
	if len(ps) != len(errs) {
		t.Errorf("problems %v", ps)
	}
	// Routes to one Service port share the Backend.
	if eps("/num") == eps("/num2") || eps("/num") != tab.Match("h.com", "/num").Route.Backend {
		t.Error("backend sharing")
	}
}

func TestSharedBackend(t *testing.T) {
	tab, _ := Build(withServices(Input{
		IngressClasses: []*networkingv1.IngressClass{podnetClass(false)},
		Ingresses: []*networkingv1.Ingress{
			mkIng("a", "one", 0, rule("a.com", "Prefix / web:80")),
			mkIng("a", "two", 0, rule("b.com", "Prefix / web:80")),
		},
	}))
	if tab.Match("a.com", "/").Route.Backend != tab.Match("b.com", "/").Route.Backend {
		t.Error("not shared")
	}
}

// selfSigned returns PEM certificate and key for the DNS names.
func selfSigned(t testing.TB, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func tlsSecret(ns, name string, crt, key []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key},
	}
}

func TestCertificates(t *testing.T) {
	fooCrt, fooKey := selfSigned(t, "foo.com")
	wildCrt, wildKey := selfSigned(t, "*.wild.com")
	otherCrt, otherKey := selfSigned(t, "other.com")
	opaque := tlsSecret("a", "opaque", fooCrt, fooKey)
	opaque.Type = corev1.SecretTypeOpaque
	in := withServices(Input{
		IngressClasses: []*networkingv1.IngressClass{podnetClass(false)},
		Ingresses: []*networkingv1.Ingress{
			mkIng("a", "i", 0,
				tlsSec("foo", "foo.com", "FOO.com."),
				tlsSec("wild", "*.wild.com"),
				tlsSec("garbage", "bad.com"),
				tlsSec("opaque", "opaque.com"),
				tlsSec("missing", "missing.com"),
				tlsSec("nokey", "nokey.com"),
				tlsSec("other", "mismatch.com"),
				tlsSec("", "nosecret.com"),
				tlsSec("foo"),
				rule("foo.com", "Prefix / foo:80"), rule("x.wild.com", "Prefix / x:80"), rule("*.wild.com", "Prefix / w:80"),
				rule("bad.com", "Prefix / bad:80"), rule("nosecret.com", "Prefix / ns:80"), rule("plain.com", "Prefix / p:80"),
			),
			// Younger: does not take foo.com's certificate.
			mkIng("a", "j", 1, tlsSec("other", "foo.com"), rule("foo.com", "Prefix /j j:80")),
			// Another namespace cannot use a's Secrets.
			mkIng("b", "k", 2, tlsSec("foo", "b.com"), rule("b.com", "Prefix / k:80")),
		},
		Secrets: []*corev1.Secret{
			tlsSecret("a", "foo", fooCrt, fooKey),
			tlsSecret("a", "wild", wildCrt, wildKey),
			tlsSecret("a", "garbage", []byte("junk"), []byte("junk")),
			tlsSecret("a", "nokey", fooCrt, nil),
			tlsSecret("a", "other", otherCrt, otherKey),
			opaque,
		},
	})
	tab, ps := Build(in)
	leaf := func(sni string) string {
		c := tab.Certificate(sni)
		if c == nil {
			return ""
		}
		return c.Leaf.DNSNames[0]
	}
	for sni, want := range map[string]string{
		"foo.com": "foo.com", "FOO.COM": "foo.com", "foo.com.": "foo.com",
		"x.wild.com": "*.wild.com", "y.wild.com": "*.wild.com", "a.b.wild.com": "", "wild.com": "",
		"bad.com": "", "opaque.com": "", "missing.com": "", "nokey.com": "", "mismatch.com": "other.com",
		"nosecret.com": "", "plain.com": "", "b.com": "", "": "",
	} {
		if got := leaf(sni); got != want {
			t.Errorf("Certificate(%q) = %q, want %q", sni, got, want)
		}
	}
	// Parsed once: the same *tls.Certificate for every host of a Secret.
	if tab.Certificate("foo.com") != tab.Certificate("foo.com.") {
		t.Error("certificate parsed twice")
	}
	for _, p := range []string{"secret a/garbage: ", "secret a/opaque: type is \"Opaque\"", "secret a/missing: not found", "secret a/nokey: needs tls.crt and tls.key", "secret a/other: certificate is not valid for mismatch.com"} {
		if !hasProblem(ps, "a/i", p) {
			t.Errorf("no problem %q in %v", p, ps)
		}
	}
	if !hasProblem(ps, "b/k", "secret b/foo: not found") {
		t.Errorf("problems %v", ps)
	}
	for host, want := range map[string]bool{"foo.com": true, "x.wild.com": true, "y.wild.com": true, "bad.com": true, "nosecret.com": false, "plain.com": false} {
		if m := tab.Match(host, "/"); m.Route == nil || m.Route.TLS != want {
			t.Errorf("%s: TLS %+v, want %v", host, m.Route, want)
		}
	}
	if !tab.Match("foo.com", "/j").Route.TLS {
		t.Error("TLS is per host, across Ingresses")
	}
}
