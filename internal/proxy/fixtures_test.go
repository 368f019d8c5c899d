package proxy

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var (
	testClusterCIDR = netip.MustParsePrefix("10.244.0.0/16")
	testServiceCIDR = netip.MustParsePrefix("10.96.0.0/12")
)

type svcOpt func(*corev1.Service)

func svc(ns, name, ip string, port int32, opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, ClusterIP: ip, ClusterIPs: []string{ip},
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: port, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func nodePort(np int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.Type = corev1.ServiceTypeNodePort
		s.Spec.Ports[0].NodePort = np
	}
}

func udp() svcOpt {
	return func(s *corev1.Service) { s.Spec.Ports[0].Protocol = corev1.ProtocolUDP }
}

func affinity(sec int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &sec}}
	}
}

func etpLocal() svcOpt {
	return func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }
}

func externalIP(ip string) svcOpt {
	return func(s *corev1.Service) { s.Spec.ExternalIPs = append(s.Spec.ExternalIPs, ip) }
}

type ep struct {
	ip, node           string
	ready, term, serve bool
}

func readyEP(ip, node string) ep { return ep{ip: ip, node: node, ready: true, serve: true} }

func slice(s *corev1.Service, name string, port int32, eps ...ep) *discoveryv1.EndpointSlice {
	pn := s.Spec.Ports[0].Name
	proto := s.Spec.Ports[0].Protocol
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: s.Namespace, Name: name, Labels: map[string]string{LabelServiceName: s.Name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &pn, Protocol: &proto, Port: &port}},
	}
	for _, e := range eps {
		e := e
		node := e.node
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{e.ip},
			Conditions: discoveryv1.EndpointConditions{Ready: &e.ready, Serving: &e.serve, Terminating: &e.term},
			NodeName:   &node,
		})
	}
	return sl
}

func eps(n int, prefix string) []ep {
	var out []ep
	for i := 1; i <= n; i++ {
		out = append(out, readyEP(fmt.Sprintf("%s.%d", prefix, i), "n1"))
	}
	return out
}
