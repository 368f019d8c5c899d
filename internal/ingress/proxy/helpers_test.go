package proxy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/ingress/route"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// seen is what an echo backend reports about the request it got.
type seen struct {
	Name   string      `json:"name"`
	Method string      `json:"method"`
	Path   string      `json:"path"`
	URI    string      `json:"uri"`
	Host   string      `json:"host"`
	Proto  string      `json:"proto"`
	Header http.Header `json:"header"`
	Body   string      `json:"body"`
}

// backend is a test upstream on 127.0.0.1.
type backend struct {
	name string
	srv  *httptest.Server
	addr string
	port int32
	mu   sync.Mutex
	hits int
}

func (b *backend) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits
}

// echoHandler answers with a JSON description of the request.
func echoHandler(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Backend", name)
		json.NewEncoder(w).Encode(seen{Name: name, Method: r.Method, Path: r.URL.Path, URI: r.RequestURI, Host: r.Host, Proto: r.Proto, Header: r.Header, Body: string(body)})
	}
}

// newBackend starts an upstream; h nil means the echo handler.
func newBackend(t testing.TB, name string, h http.Handler) *backend {
	t.Helper()
	if h == nil {
		h = echoHandler(name)
	}
	b := &backend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.hits++
		b.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(b.srv.Close)
	b.addr = b.srv.Listener.Addr().String()
	b.port = int32(b.srv.Listener.Addr().(*net.TCPAddr).Port)
	return b
}

// deadAddr is a 127.0.0.1 port nothing listens on.
func deadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

const ns = "default"

// world is the objects a test's table is built from.
type world struct {
	ings     []*networkingv1.Ingress
	svcs     []*corev1.Service
	slices   []*discoveryv1.EndpointSlice
	secrets  []*corev1.Secret
	sliceSeq int
}

func (w *world) input() route.Input {
	pt := true
	_ = pt
	class := &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: route.ClassName, Annotations: map[string]string{"ingressclass.kubernetes.io/is-default-class": "true"}},
		Spec:       networkingv1.IngressClassSpec{Controller: route.ControllerName},
	}
	return route.Input{Ingresses: w.ings, IngressClasses: []*networkingv1.IngressClass{class}, Services: w.svcs, EndpointSlices: w.slices, Secrets: w.secrets}
}

// service adds a Service with port 80 ("http") whose endpoints are addrs
// (each in its own slice, as their ports differ).
func (w *world) service(name string, addrs ...string) {
	w.svcs = append(w.svcs, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
	})
	for _, a := range addrs {
		w.endpoint(name, a, true, false)
	}
}

func (w *world) endpoint(svc, addr string, ready, terminating bool) {
	host, port, _ := net.SplitHostPort(addr)
	pn, _ := strconv.Atoi(port)
	p32 := int32(pn)
	name := "http"
	tcp := corev1.ProtocolTCP
	w.sliceSeq++
	w.slices = append(w.slices, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: svc + "-" + strconv.Itoa(w.sliceSeq), Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{host},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: ptr(true), Terminating: &terminating},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: &name, Port: &p32, Protocol: &tcp}},
	})
}

func ptr[T any](v T) *T { return &v }

type ingOpt func(*networkingv1.Ingress)

// ingress adds an Ingress of class podnet; each Ingress is a minute
// younger than the previous one.
func (w *world) ingress(name string, opts ...ingOpt) *networkingv1.Ingress {
	class := route.ClassName
	i := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{},
			CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(len(w.ings)) * time.Minute))},
		Spec: networkingv1.IngressSpec{IngressClassName: &class},
	}
	for _, o := range opts {
		o(i)
	}
	w.ings = append(w.ings, i)
	return i
}

func ann(kv ...string) ingOpt {
	return func(i *networkingv1.Ingress) {
		for j := 0; j+1 < len(kv); j += 2 {
			i.Annotations["nginx.ingress.kubernetes.io/"+kv[j]] = kv[j+1]
		}
	}
}

// path adds a rule for host with one path "Type /path svc" (Type Exact,
// Prefix or Impl; the Service port is 80).
func path(host, spec string) ingOpt {
	return func(i *networkingv1.Ingress) {
		f := strings.Fields(spec)
		pt := networkingv1.PathType(f[0])
		if f[0] == "Impl" {
			pt = networkingv1.PathTypeImplementationSpecific
		}
		i.Spec.Rules = append(i.Spec.Rules, networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{
			HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: f[1], PathType: &pt,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: f[2], Port: networkingv1.ServiceBackendPort{Number: 80}}},
			}}},
		}})
	}
}

func defaultBackend(svc string) ingOpt {
	return func(i *networkingv1.Ingress) {
		i.Spec.DefaultBackend = &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}}}
	}
}

func tlsHosts(secret string, hosts ...string) ingOpt {
	return func(i *networkingv1.Ingress) {
		i.Spec.TLS = append(i.Spec.TLS, networkingv1.IngressTLS{Hosts: hosts, SecretName: secret})
	}
}

// certPEM makes a self-signed certificate for names, in PEM.
func certPEM(t testing.TB, cn string, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
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

func (w *world) secret(t testing.TB, name, cn string, names ...string) {
	c, k := certPEM(t, cn, names...)
	w.secrets = append(w.secrets, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: c, corev1.TLSPrivateKeyKey: k},
	})
}

// noRedirect keeps clients from following redirects: the Locations name
// hosts that must never be looked up.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// env is a proxy serving on 127.0.0.1 (HTTP and HTTPS) with its clients.
type env struct {
	t        testing.TB
	p        *Proxy
	httpURL  string
	httpsURL string
	httpAddr string
	tlsAddr  string
	client   *http.Client // plain HTTP, no redirects followed
	tlsc     *http.Client // HTTPS (HTTP/1.1), no verification
	logs     *syncBuffer
	reg      *prometheus.Registry
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newEnv(t testing.TB) *env {
	t.Helper()
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	p := New(Options{Logger: slog.New(slog.NewJSONHandler(logs, nil)), Registry: reg, NodeName: "node-1", Namespace: "podnet-system"})
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, hl, sl) }()
	e := &env{t: t, p: p, logs: logs, reg: reg,
		httpAddr: hl.Addr().String(), tlsAddr: sl.Addr().String(),
		httpURL: "http://" + hl.Addr().String(), httpsURL: "https://" + sl.Addr().String()}
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}
	e.client = &http.Client{Transport: tr, CheckRedirect: noRedirect, Timeout: 30 * time.Second}
	ttr := &http.Transport{Proxy: nil, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 64}
	e.tlsc = &http.Client{Transport: ttr, CheckRedirect: noRedirect, Timeout: 30 * time.Second}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		ttr.CloseIdleConnections()
		cancel()
		if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

// load builds the world's table and swaps it in.
func (e *env) load(w *world) *route.Table {
	e.t.Helper()
	tab, problems := buildTable(w)
	for _, p := range problems {
		e.t.Logf("route problem: %s: %s", p.Ingress, p.Message)
	}
	e.p.Swap(tab)
	return tab
}

// resp is a finished response.
type resp struct {
	code   int
	header http.Header
	body   string
	proto  string
}

// seen decodes an echo backend's body.
func (r resp) seen(t testing.TB) seen {
	t.Helper()
	var s seen
	if err := json.Unmarshal([]byte(r.body), &s); err != nil {
		t.Fatalf("not an echo answer (status %d): %q", r.code, r.body)
	}
	return s
}

// do sends a request to the plain listener with the Host header host.
func (e *env) do(method, host, target string, hdr ...string) resp {
	e.t.Helper()
	return e.doWith(e.client, e.httpURL, method, host, target, nil, hdr...)
}

func (e *env) doTLS(method, host, target string, hdr ...string) resp {
	e.t.Helper()
	return e.doWith(e.tlsc, e.httpsURL, method, host, target, nil, hdr...)
}

func (e *env) doWith(c *http.Client, base, method, host, target string, body io.Reader, hdr ...string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, base+target, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s%s (Host %s): %v", method, base, target, host, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading body: %v", method, target, err)
	}
	return resp{code: res.StatusCode, header: res.Header, body: string(b), proto: res.Proto}
}

// newTLSBackend starts an HTTPS echo upstream; the echo shows X-Tls: yes
// for requests that came over TLS.
func newTLSBackend(t testing.TB, name string) string {
	t.Helper()
	echo := echoHandler(name)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			r.Header.Set("X-Tls", "yes")
		}
		echo(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func buildTable(w *world) (*route.Table, []route.Problem) { return route.Build(w.input()) }
