package api

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func baseService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Port: 80}},
		},
	}
}

func ptr[T any](v T) *T { return &v }

// checkPrepare runs defaults and validation; want "" means valid, else the
// error must contain want (a field path and its error type).
func checkPrepare(t *testing.T, o Object, want string) {
	t.Helper()
	err := Prepare(o)
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q\nwant it to contain %q", err, want)
	}
}

func TestServiceDefaults(t *testing.T) {
	s := baseService()
	s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "b", Port: 81, TargetPort: intstr.FromString("http")})
	s.Spec.Ports[0].Name = "a"
	if err := Prepare(s); err != nil {
		t.Fatal(err)
	}
	sp := s.Spec
	if sp.Type != corev1.ServiceTypeClusterIP || sp.SessionAffinity != corev1.ServiceAffinityNone {
		t.Errorf("type %q affinity %q", sp.Type, sp.SessionAffinity)
	}
	if sp.Ports[0].Protocol != corev1.ProtocolTCP || sp.Ports[0].TargetPort != intstr.FromInt32(80) {
		t.Errorf("port 0: %+v", sp.Ports[0])
	}
	if sp.Ports[1].TargetPort != intstr.FromString("http") {
		t.Errorf("named targetPort changed: %+v", sp.Ports[1])
	}
	if sp.ExternalTrafficPolicy != "" {
		t.Errorf("ClusterIP got externalTrafficPolicy %q", sp.ExternalTrafficPolicy)
	}
	if sp.InternalTrafficPolicy == nil || *sp.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyCluster {
		t.Errorf("internalTrafficPolicy %v", sp.InternalTrafficPolicy)
	}
	if sp.IPFamilyPolicy == nil || *sp.IPFamilyPolicy != corev1.IPFamilyPolicySingleStack || len(sp.IPFamilies) != 1 || sp.IPFamilies[0] != corev1.IPv4Protocol {
		t.Errorf("ip families %v %v", sp.IPFamilyPolicy, sp.IPFamilies)
	}
	if sp.AllocateLoadBalancerNodePorts != nil {
		t.Errorf("allocateLoadBalancerNodePorts on ClusterIP")
	}

	lb := baseService()
	lb.Spec.Type = corev1.ServiceTypeLoadBalancer
	lb.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	if err := Prepare(lb); err != nil {
		t.Fatal(err)
	}
	if lb.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster {
		t.Errorf("LB externalTrafficPolicy %q", lb.Spec.ExternalTrafficPolicy)
	}
	if lb.Spec.AllocateLoadBalancerNodePorts == nil || !*lb.Spec.AllocateLoadBalancerNodePorts {
		t.Errorf("allocateLoadBalancerNodePorts %v", lb.Spec.AllocateLoadBalancerNodePorts)
	}
	if c := lb.Spec.SessionAffinityConfig; c == nil || c.ClientIP == nil || *c.ClientIP.TimeoutSeconds != 10800 {
		t.Errorf("affinity config %+v", c)
	}

	ext := baseService()
	ext.Spec.ExternalIPs = []string{"192.0.2.10"}
	checkPrepare(t, ext, "")
	if ext.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster {
		t.Errorf("ClusterIP with externalIPs: externalTrafficPolicy %q", ext.Spec.ExternalTrafficPolicy)
	}

	h := baseService()
	h.Spec.ClusterIP = "None"
	h.Spec.Selector = nil
	checkPrepare(t, h, "")
	if *h.Spec.IPFamilyPolicy != corev1.IPFamilyPolicyRequireDualStack || h.Spec.ClusterIPs[0] != "None" {
		t.Errorf("headless selectorless: %v %v", *h.Spec.IPFamilyPolicy, h.Spec.ClusterIPs)
	}

	en := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com."}}
	checkPrepare(t, en, "")
	if en.Spec.IPFamilyPolicy != nil || en.Spec.InternalTrafficPolicy != nil || len(en.Spec.IPFamilies) > 0 {
		t.Errorf("ExternalName got IP fields: %+v", en.Spec)
	}

	cips := baseService()
	cips.Spec.ClusterIPs = []string{"10.96.0.20"}
	checkPrepare(t, cips, "")
	if cips.Spec.ClusterIP != "10.96.0.20" {
		t.Errorf("clusterIP from clusterIPs: %q", cips.Spec.ClusterIP)
	}
}

func TestServiceValidation(t *testing.T) {
	cases := []struct {
		name string
		mut  func(*corev1.Service)
		want string
	}{
		{"valid", func(*corev1.Service) {}, ""},
		{"name not a DNS-1035 label", func(s *corev1.Service) { s.Name = "1web" }, `metadata.name: Invalid value: "1web"`},
		{"name with dot", func(s *corev1.Service) { s.Name = "a.b" }, `metadata.name: Invalid value: "a.b"`},
		{"bad type", func(s *corev1.Service) { s.Spec.Type = "Magic" }, `spec.type: Unsupported value: "Magic"`},
		{"no ports", func(s *corev1.Service) { s.Spec.Ports = nil }, "spec.ports: Required value"},
		{"headless without ports", func(s *corev1.Service) { s.Spec.Ports = nil; s.Spec.ClusterIP = "None" }, ""},
		{"port 0", func(s *corev1.Service) { s.Spec.Ports[0].Port = 0 }, "spec.ports[0].port: Invalid value: 0"},
		{"port 65536", func(s *corev1.Service) { s.Spec.Ports[0].Port = 65536 }, "spec.ports[0].port: Invalid value: 65536"},
		{"two ports, one unnamed", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}, {Port: 81}}
		}, "spec.ports[1].name: Required value"},
		{"duplicate port names", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80}, {Name: "http", Port: 81}}
		}, `spec.ports[1].name: Duplicate value: "http"`},
		{"port name not a DNS label", func(s *corev1.Service) { s.Spec.Ports[0].Name = "Http_1" }, `spec.ports[0].name: Invalid value: "Http_1"`},
		{"bad protocol", func(s *corev1.Service) { s.Spec.Ports[0].Protocol = "ICMP" }, `spec.ports[0].protocol: Unsupported value: "ICMP"`},
		{"sctp", func(s *corev1.Service) { s.Spec.Ports[0].Protocol = corev1.ProtocolSCTP }, ""},
		{"duplicate port+protocol", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "a", Port: 80}, {Name: "b", Port: 80}}
		}, `spec.ports[1]: Duplicate value: "80/TCP"`},
		{"same port, other protocol", func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{{Name: "a", Port: 53}, {Name: "b", Port: 53, Protocol: corev1.ProtocolUDP}}
		}, ""},
		{"targetPort out of range", func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromInt32(70000) }, "spec.ports[0].targetPort: Invalid value: 70000"},
		{"targetPort bad name", func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString("not_a_name") }, `spec.ports[0].targetPort: Invalid value: "not_a_name"`},
		{"targetPort name", func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString("http") }, ""},
		{"nodePort on ClusterIP", func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30080 }, "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"},
		{"nodePort on NodePort", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 30080
		}, ""},
		{"nodePort out of range", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.Ports[0].NodePort = 70000
		}, "spec.ports[0].nodePort: Invalid value: 70000"},
		{"duplicate nodePort", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.Ports = []corev1.ServicePort{{Name: "a", Port: 80, NodePort: 30080}, {Name: "b", Port: 81, NodePort: 30080}}
		}, "spec.ports[1].nodePort: Duplicate value: 30080"},
		{"clusterIP not an IP", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0" }, `spec.clusterIPs[0]: Invalid value: "10.96.0"`},
		{"clusterIP IPv6", func(s *corev1.Service) { s.Spec.ClusterIP = "fd00::1" }, `spec.clusterIPs[0]: Invalid value: "fd00::1"`},
		{"clusterIPs mismatch", func(s *corev1.Service) {
			s.Spec.ClusterIP = "10.96.0.5"
			s.Spec.ClusterIPs = []string{"10.96.0.6"}
		}, "spec.clusterIPs: Invalid value"},
		{"None among clusterIPs", func(s *corev1.Service) {
			s.Spec.ClusterIP = "None"
			s.Spec.ClusterIPs = []string{"None", "10.96.0.6"}
		}, "'None' must be the first and only value"},
		{"headless NodePort", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.ClusterIP = "None"
		}, `spec.clusterIP: Invalid value: "None": may not be set to 'None' for NodePort services`},
		{"ExternalName with clusterIP", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "db.example.com"
			s.Spec.ClusterIP = "10.96.0.5"
		}, "spec.clusterIP: Forbidden: may not be set for ExternalName services"},
		{"ExternalName without name", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName }, "spec.externalName: Required value"},
		{"ExternalName bad name", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "Not A Host"
		}, `spec.externalName: Invalid value: "Not A Host"`},
		{"bad selector key", func(s *corev1.Service) { s.Spec.Selector = map[string]string{"-app": "web"} }, `spec.selector[-app]: Invalid value: "-app"`},
		{"bad selector value", func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "web app"} }, `spec.selector[app]: Invalid value: "web app"`},
		{"bad sessionAffinity", func(s *corev1.Service) { s.Spec.SessionAffinity = "Cookie" }, `spec.sessionAffinity: Unsupported value: "Cookie"`},
		{"affinity timeout 0", func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(0))}}
		}, "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0"},
		{"affinity timeout too long", func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(86401))}}
		}, "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 86401"},
		{"affinity timeout max", func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(86400))}}
		}, ""},
		{"affinity config with None", func(s *corev1.Service) {
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr(int32(5))}}
		}, "spec.sessionAffinityConfig: Forbidden"},
		{"externalTrafficPolicy on ClusterIP", func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal },
			`spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services`},
		{"bad externalTrafficPolicy", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.ExternalTrafficPolicy = "Nearby"
		}, `spec.externalTrafficPolicy: Unsupported value: "Nearby"`},
		{"bad internalTrafficPolicy", func(s *corev1.Service) {
			p := corev1.ServiceInternalTrafficPolicy("Node")
			s.Spec.InternalTrafficPolicy = &p
		}, `spec.internalTrafficPolicy: Unsupported value: "Node"`},
		{"healthCheckNodePort without Local", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.HealthCheckNodePort = 30500
		}, "spec.healthCheckNodePort: Invalid value: 30500"},
		{"externalIP invalid", func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"300.1.1.1"} }, `spec.externalIPs[0]: Invalid value: "300.1.1.1"`},
		{"externalIP loopback", func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"127.0.0.2"} }, "spec.externalIPs[0]: Invalid value: \"127.0.0.2\": may not be in the loopback range"},
		{"externalIP unspecified", func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"0.0.0.0"} }, "may not be unspecified"},
		{"IPv6 family", func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} }, `spec.ipFamilies[0]: Invalid value: "IPv6"`},
		{"bad family", func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{"IPX"} }, `spec.ipFamilies[0]: Unsupported value: "IPX"`},
		{"RequireDualStack", func(s *corev1.Service) {
			p := corev1.IPFamilyPolicyRequireDualStack
			s.Spec.IPFamilyPolicy = &p
		}, `spec.ipFamilyPolicy: Invalid value: "RequireDualStack"`},
		{"bad ipFamilyPolicy", func(s *corev1.Service) {
			p := corev1.IPFamilyPolicy("Any")
			s.Spec.IPFamilyPolicy = &p
		}, `spec.ipFamilyPolicy: Unsupported value: "Any"`},
		{"allocateLoadBalancerNodePorts on NodePort", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeNodePort
			s.Spec.AllocateLoadBalancerNodePorts = ptr(true)
		}, "spec.allocateLoadBalancerNodePorts: Forbidden"},
		{"loadBalancerSourceRanges bad", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Spec.LoadBalancerSourceRanges = []string{"10.0.0.0/33"}
		}, `spec.loadBalancerSourceRanges[0]: Invalid value: "10.0.0.0/33"`},
		{"loadBalancerIP on ClusterIP", func(s *corev1.Service) { s.Spec.LoadBalancerIP = "192.0.2.1" }, "spec.loadBalancerIP: Forbidden"},
		{"status ingress bad IP", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeLoadBalancer
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "x"}}
		}, `status.loadBalancer.ingress[0].ip: Invalid value: "x"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := baseService()
			c.mut(s)
			checkPrepare(t, s, c.want)
		})
	}
}

func TestServiceUpdate(t *testing.T) {
	k, _ := KindOf(&corev1.Service{})
	prepared := func(mut func(*corev1.Service)) *corev1.Service {
		s := baseService()
		mut(s)
		if err := Prepare(s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	old := prepared(func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.20" })
	cases := []struct {
		name string
		mut  func(*corev1.Service)
		want string
	}{
		{"unchanged", func(*corev1.Service) {}, ""},
		{"clusterIP changed", func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.21" }, `spec.clusterIPs[0]: Invalid value: "10.96.0.21": may not change once set`},
		{"type to NodePort", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }, ""},
		{"type to ExternalName frees the IP", func(s *corev1.Service) {
			s.Spec.Type = corev1.ServiceTypeExternalName
			s.Spec.ExternalName = "db.example.com"
			s.Spec.ClusterIP = ""
		}, ""},
		{"ports changed", func(s *corev1.Service) { s.Spec.Ports[0].Port = 8080 }, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := prepared(func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.20"; c.mut(s) })
			err := Invalid(k, n.Name, k.ValidateUpdate(old, n))
			if (err == nil) != (c.want == "") || err != nil && !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	// From ExternalName, a cluster IP may be assigned.
	en := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "x.example.com"}}
	if err := Prepare(en); err != nil {
		t.Fatal(err)
	}
	if errs := k.ValidateUpdate(en, old); len(errs) > 0 {
		t.Fatalf("ExternalName to ClusterIP: %v", errs)
	}
}
