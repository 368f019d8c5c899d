package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/podnet/podnet/internal/ingress/route"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The objects every peer's configuration comes from: n Ingresses in
// namespace bench, Ingress i routing host hostName(i), Prefix "/", to
// Service svc<i> port 80, whose one endpoint is the backend. The podnet
// proxy gets route.Build's table; nginx and the httputil peer get a
// config generated from that table's Routes().

const benchNS = "bench"

var created = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func hostName(i int) string { return fmt.Sprintf("h%04d.bench.test", i) }

// input builds n Ingresses (and their Services and EndpointSlices) whose
// endpoints are backend ("127.0.0.1:PORT"), plus the ones named in extra
// (hosts extra[j], Services named after them) for the change→served
// measurement.
func input(n int, backend string, extra ...string) (route.Input, error) {
	host, portStr, err := net.SplitHostPort(backend)
	if err != nil {
		return route.Input{}, fmt.Errorf("backend %q: %w", backend, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return route.Input{}, fmt.Errorf("backend %q: %w", backend, err)
	}
	class := &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: route.ClassName, Annotations: map[string]string{"ingressclass.kubernetes.io/is-default-class": "true"}},
		Spec:       networkingv1.IngressClassSpec{Controller: route.ControllerName},
	}
	in := route.Input{IngressClasses: []*networkingv1.IngressClass{class}}
	add := func(idx int, name, h string) {
		className := route.ClassName
		pt := networkingv1.PathTypePrefix
		in.Ingresses = append(in.Ingresses, &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: name, CreationTimestamp: metav1.NewTime(created.Add(time.Duration(idx) * time.Second))},
			Spec: networkingv1.IngressSpec{IngressClassName: &className, Rules: []networkingv1.IngressRule{{
				Host: h,
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
					Path: "/", PathType: &pt,
					Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: name, Port: networkingv1.ServiceBackendPort{Number: 80}}},
				}}}},
			}}},
		})
		in.Services = append(in.Services, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: benchNS, Name: name},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
		})
		ready, serving, term := true, true, false
		pname, p32, tcp := "http", int32(port), corev1.ProtocolTCP
		in.EndpointSlices = append(in.EndpointSlices, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: benchNS, Name: name + "-1", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints: []discoveryv1.Endpoint{{
				Addresses:  []string{host},
				Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &term},
			}},
			Ports: []discoveryv1.EndpointPort{{Name: &pname, Port: &p32, Protocol: &tcp}},
		})
	}
	for i := 0; i < n; i++ {
		add(i, fmt.Sprintf("svc%04d", i), hostName(i))
	}
	for j, h := range extra {
		add(n+j, fmt.Sprintf("extra%04d", j), h)
	}
	return in, nil
}

// buildTable compiles the objects and fails on any problem: every peer
// must serve every route.
func buildTable(n int, backend string, extra ...string) (*route.Table, error) {
	in, err := input(n, backend, extra...)
	if err != nil {
		return nil, err
	}
	t, probs := route.Build(in)
	if len(probs) > 0 {
		return nil, fmt.Errorf("route.Build: %d problems, first: %s: %s", len(probs), probs[0].Ingress, probs[0].Message)
	}
	if got := len(t.Routes()); got != n+len(extra) {
		return nil, fmt.Errorf("route.Build: %d routes, want %d", got, n+len(extra))
	}
	return t, nil
}

// writeCert makes a self-signed ECDSA P-256 certificate for *.bench.test
// and 127.0.0.1 in dir (cert.pem, key.pem), the one every peer serves.
func writeCert(dir string) (certFile, keyFile string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("cert key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "bench.test"},
		DNSNames:              []string{"bench.test", "*.bench.test"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", fmt.Errorf("cert: %w", err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", fmt.Errorf("cert key: %w", err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

func loadCert(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load cert: %w", err)
	}
	return &c, nil
}
