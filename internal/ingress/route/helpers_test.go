package route

import (
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

type ingOpt func(*networkingv1.Ingress)

// mkIng makes an Ingress of class podnet created age minutes after t0.
func mkIng(ns, name string, age int, opts ...ingOpt) *networkingv1.Ingress {
	class := ClassName
	i := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(age) * time.Minute)), Annotations: map[string]string{}},
		Spec:       networkingv1.IngressSpec{IngressClassName: &class},
	}
	for _, o := range opts {
		o(i)
	}
	return i
}

func ann(k, v string) ingOpt {
	return func(i *networkingv1.Ingress) {
		if !strings.Contains(k, "/") {
			k = "nginx.ingress.kubernetes.io/" + k
		}
		i.Annotations[k] = v
	}
}

func noClass() ingOpt { return func(i *networkingv1.Ingress) { i.Spec.IngressClassName = nil } }

// svcBackend parses "svc:80" or "svc:http".
func svcBackend(s string) networkingv1.IngressBackend {
	name, port, _ := strings.Cut(s, ":")
	b := &networkingv1.IngressServiceBackend{Name: name}
	if n, err := strconv.Atoi(port); err == nil {
		b.Port.Number = int32(n)
	} else {
		b.Port.Name = port
	}
	return networkingv1.IngressBackend{Service: b}
}

func defBackend(s string) ingOpt {
	return func(i *networkingv1.Ingress) { b := svcBackend(s); i.Spec.DefaultBackend = &b }
}

// rule adds a rule; each path is "Type /path svc:port" (Type: Exact,
// Prefix, Impl).
func rule(host string, paths ...string) ingOpt {
	return func(i *networkingv1.Ingress) {
		r := networkingv1.IngressRule{Host: host}
		if len(paths) > 0 {
			r.HTTP = &networkingv1.HTTPIngressRuleValue{}
		}
		for _, p := range paths {
			f := strings.Fields(p)
			pt := networkingv1.PathType(f[0])
			if f[0] == "Impl" {
				pt = networkingv1.PathTypeImplementationSpecific
			}
			path := f[1]
			if path == `""` {
				path = ""
			}
			r.HTTP.Paths = append(r.HTTP.Paths, networkingv1.HTTPIngressPath{Path: path, PathType: &pt, Backend: svcBackend(f[2])})
		}
		i.Spec.Rules = append(i.Spec.Rules, r)
	}
}

func tlsSec(secret string, hosts ...string) ingOpt {
	return func(i *networkingv1.Ingress) {
		i.Spec.TLS = append(i.Spec.TLS, networkingv1.IngressTLS{Hosts: hosts, SecretName: secret})
	}
}

// mkSvc makes a Service with ports "name:port" (name may be empty).
func mkSvc(ns, name string, ports ...string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, p := range ports {
		n, num, _ := strings.Cut(p, ":")
		v, _ := strconv.Atoi(num)
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: n, Port: int32(v), Protocol: corev1.ProtocolTCP})
	}
	return s
}

type epOpt struct {
	addr           string
	notReady, term bool
	notServing     bool
	node           string
}

// mkSlice makes an IPv4 EndpointSlice of svc with one port.
func mkSlice(ns, svc, name, portName string, port int32, eps ...epOpt) *discoveryv1.EndpointSlice {
	tcp := corev1.ProtocolTCP
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &tcp}},
	}
	for _, e := range eps {
		ready, term, serving := !e.notReady, e.term, !e.notServing
		ep := discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: discoveryv1.EndpointConditions{Ready: &ready, Terminating: &term, Serving: &serving}}
		if e.node != "" {
			ep.NodeName = &e.node
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

func podnetClass(isDefault bool) *networkingv1.IngressClass {
	c := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: ClassName}, Spec: networkingv1.IngressClassSpec{Controller: ControllerName}}
	if isDefault {
		c.Annotations = map[string]string{defaultClassAnnotation: "true"}
	}
	return c
}

func otherClass(name string) *networkingv1.IngressClass {
	return &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}}
}
