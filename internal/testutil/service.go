package testutil

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"testing"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LoopbackService serves h on 127.0.0.1 and creates the Service
// namespace/name (port 80, named http) whose one ready endpoint it is. The
// API refuses loopback endpoints, and tests must send traffic nowhere else
// (or into namespaces they made), so the EndpointSlice is written as the
// store keeps objects, around the validation. It returns the server's
// address; the server stops when the test ends.
func LoopbackService(t testing.TB, s *store.Store, namespace, name string, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	ctx := context.Background()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
	if err := s.Create(ctx, svc); err != nil {
		t.Fatalf("service %s/%s: %v", namespace, name, err)
	}
	port, portName, tcp, ready := int32(ln.Addr().(*net.TCPAddr).Port), "http", corev1.ProtocolTCP, true
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: namespace, Name: name + "-loopback", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &tcp}},
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"127.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
	}
	api.SetTypeMeta(slice)
	b, err := json.Marshal(slice)
	if err != nil {
		t.Fatal(err)
	}
	k, err := api.KindOf(slice)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().Put(ctx, store.Key(k, namespace, slice.Name), string(b)); err != nil {
		t.Fatalf("endpointslice %s/%s: %v", namespace, slice.Name, err)
	}
	return ln.Addr().String()
}

// Ingress makes an Ingress sending every path ("/", Prefix) of each host
// to service:80, with no class (the default class serves it).
func Ingress(namespace, name, service string, hosts ...string) *networkingv1.Ingress {
	pt := networkingv1.PathTypePrefix
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	for _, h := range hosts {
		ing.Spec.Rules = append(ing.Spec.Rules, networkingv1.IngressRule{Host: h, IngressRuleValue: networkingv1.IngressRuleValue{
			HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &pt,
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: service, Port: networkingv1.ServiceBackendPort{Number: 80}}}}}},
		}})
	}
	return ing
}
