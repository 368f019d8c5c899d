package autopath

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/podnet/podnet/internal/api"
	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/dnstest"
	"github.com/podnet/podnet/internal/dns/plugin/kubernetes"
	_ "github.com/podnet/podnet/internal/dns/plugin/whoami"
	"github.com/podnet/podnet/internal/informer"
	"github.com/podnet/podnet/internal/store"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSetup(t *testing.T) {
	dir := t.TempDir()
	rc := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver 127.0.0.1\nsearch a.example B.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := pdns.NewTestController("autopath " + rc)
	a, mw, err := parse(c)
	if err != nil || mw != "" || strings.Join(a.search, ",") != "a.example.,b.example.," || strings.Join(a.Zones, ",") != "." {
		t.Fatalf("parse: %v %q %v", a, mw, err)
	}
	for _, tt := range []struct{ in, err string }{
		{"autopath @kubernetes", ""},
		{"autopath cluster.local @kubernetes", ""},
		{"autopath", "Testfile:1 - Error during parsing: Wrong argument count or unexpected line ending after 'autopath'"},
		{"autopath @nope", "Testfile:1 - Error during parsing: unknown plugin \"nope\" in @nope"},
		{"autopath /nonexistent/resolv.conf", "Testfile:1 - Error during parsing: failed to parse \"/nonexistent/resolv.conf\""},
	} {
		err := setup(pdns.NewTestController(tt.in))
		if (err == nil) != (tt.err == "") || err != nil && !strings.HasPrefix(err.Error(), tt.err) {
			t.Errorf("%q: error %v, want %q", tt.in, err, tt.err)
		}
	}
}

// static is an informer.Source of fixed objects.
type static []api.Object

func (s static) List(_ context.Context, k *api.Kind, _ string) ([]api.Object, int64, error) {
	var out []api.Object
	for _, o := range s {
		if ok, _ := api.KindOf(o); ok == k {
			out = append(out, o)
		}
	}
	return out, 1, nil
}

func (s static) Watch(ctx context.Context, _ *api.Kind, _ string, _ int64) <-chan store.Event {
	ch := make(chan store.Event)
	go func() { <-ctx.Done(); close(ch) }()
	return ch
}

func TestAutopathKubernetes(t *testing.T) {
	web := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.20", Ports: []corev1.ServicePort{{Name: "http", Protocol: "TCP", Port: 80}}}}
	// The client (127.0.0.1, the test) is a pod of namespace team.
	client := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "client"}, Status: corev1.PodStatus{PodIP: "127.0.0.1"}}
	src := static{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team"}}, web, client,
	}
	old := kubernetes.NewSource
	kubernetes.NewSource = func(store.ClientConfig) (informer.Source, func(), error) { return src, func() {}, nil }
	t.Cleanup(func() { kubernetes.NewSource = old })
	s := dnstest.Start(t, `.:0 {
    autopath @kubernetes
    kubernetes cluster.local {
        pods verified
    }
    whoami
}
`)
	// "web.default" with the pod's first search domain appended: the
	// server finds web.default.svc.cluster.local in the same round trip.
	m := dnstest.Query(t, s.Addr, "web.default.team.svc.cluster.local.", dns.TypeA)
	if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 2 || m.Question[0].Name != "web.default.team.svc.cluster.local." {
		t.Fatalf("autopath: %v", m)
	}
	if c, ok := m.Answer[0].(*dns.CNAME); !ok || c.Hdr.Name != "web.default.team.svc.cluster.local." || c.Target != "web.default.svc.cluster.local." {
		t.Errorf("CNAME: %v", m.Answer[0])
	}
	if a, ok := m.Answer[1].(*dns.A); !ok || a.A.String() != "10.96.0.20" {
		t.Errorf("A: %v", m.Answer[1])
	}
	// An outside name walks to the bare name, answered by the next plugin
	// (whoami: an empty NOERROR).
	m = dnstest.Query(t, s.Addr, "example.org.team.svc.cluster.local.", dns.TypeA)
	if m.Rcode != dns.RcodeSuccess || len(m.Extra) == 0 {
		t.Errorf("outside name: %v", m)
	}
	// A name not ending in the first search domain is left alone.
	m = dnstest.Query(t, s.Addr, "nope.default.svc.cluster.local.", dns.TypeA)
	if m.Rcode != dns.RcodeNameError {
		t.Errorf("plain NXDOMAIN: %v", m)
	}
}

func TestAutopathNeedsThePlugin(t *testing.T) {
	_, err := dnstest.TryStart(t, ".:0 {\n autopath @whoami\n whoami\n}\n")
	if err == nil || !strings.Contains(err.Error(), "whoami is not an autopath plugin") {
		t.Errorf("autopath @whoami: %v", err)
	}
}
