package api

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func baseSlice() *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-abc12", Namespace: "default", Labels: map[string]string{LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{"10.244.1.5"},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
			NodeName:   ptr("node1"),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: "web-1", Namespace: "default"},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(int32(8080))}},
	}
}

func TestEndpointSliceDefaults(t *testing.T) {
	s := baseSlice()
	s.Ports = []discoveryv1.EndpointPort{{Port: ptr(int32(80))}}
	checkPrepare(t, s, "")
	if s.Ports[0].Name == nil || *s.Ports[0].Name != "" || s.Ports[0].Protocol == nil || *s.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Fatalf("port defaults: %+v", s.Ports[0])
	}
}

func TestEndpointSliceValidation(t *testing.T) {
	many := make([]discoveryv1.Endpoint, MaxSliceEndpoints+1)
	for i := range many {
		many[i] = discoveryv1.Endpoint{Addresses: []string{"10.244.1.5"}}
	}
	cases := []struct {
		name string
		mut  func(*discoveryv1.EndpointSlice)
		want string
	}{
		{"valid", func(*discoveryv1.EndpointSlice) {}, ""},
		{"no addressType", func(s *discoveryv1.EndpointSlice) { s.AddressType = "" }, "addressType: Required value"},
		{"bad addressType", func(s *discoveryv1.EndpointSlice) { s.AddressType = "MAC" }, `addressType: Unsupported value: "MAC"`},
		{"too many endpoints", func(s *discoveryv1.EndpointSlice) { s.Endpoints = many }, "endpoints: Too many: 1001: must have at most 1000 items"},
		{"no address", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Addresses = nil }, "endpoints[0].addresses: Required value"},
		{"bad IPv4", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Addresses = []string{"10.244.1"} }, `endpoints[0].addresses[0]: Invalid value: "10.244.1": must be a valid IPv4 address`},
		{"IPv6 in IPv4 slice", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Addresses = []string{"fd00::5"} }, `endpoints[0].addresses[0]: Invalid value: "fd00::5"`},
		{"IPv6 slice", func(s *discoveryv1.EndpointSlice) {
			s.AddressType = discoveryv1.AddressTypeIPv6
			s.Endpoints[0].Addresses = []string{"fd00::5"}
		}, ""},
		{"loopback endpoint", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Addresses = []string{"127.0.0.1"} }, "may not be in the loopback range"},
		{"FQDN", func(s *discoveryv1.EndpointSlice) {
			s.AddressType = discoveryv1.AddressTypeFQDN
			s.Endpoints[0].Addresses = []string{"db.example.com"}
		}, ""},
		{"bad FQDN", func(s *discoveryv1.EndpointSlice) {
			s.AddressType = discoveryv1.AddressTypeFQDN
			s.Endpoints[0].Addresses = []string{"DB!"}
		}, `endpoints[0].addresses[0]: Invalid value: "DB!"`},
		{"bad nodeName", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].NodeName = ptr("Node_1") }, `endpoints[0].nodeName: Invalid value: "Node_1"`},
		{"bad hostname", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Hostname = ptr("a.b") }, `endpoints[0].hostname: Invalid value: "a.b"`},
		{"targetRef without name", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].TargetRef.Name = "" }, "endpoints[0].targetRef.name: Required value"},
		{"duplicate port names", func(s *discoveryv1.EndpointSlice) {
			s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr("http"), Port: ptr(int32(81))})
		}, `ports[1].name: Duplicate value: "http"`},
		{"bad port name", func(s *discoveryv1.EndpointSlice) { s.Ports[0].Name = ptr("HTTP") }, `ports[0].name: Invalid value: "HTTP"`},
		{"bad protocol", func(s *discoveryv1.EndpointSlice) { s.Ports[0].Protocol = ptr(corev1.Protocol("ICMP")) }, `ports[0].protocol: Unsupported value: "ICMP"`},
		{"bad port", func(s *discoveryv1.EndpointSlice) { s.Ports[0].Port = ptr(int32(65536)) }, "ports[0].port: Invalid value: 65536"},
		{"conditions all set", func(s *discoveryv1.EndpointSlice) {
			s.Endpoints[0].Conditions = discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}
		}, ""},
		{"duplicate zone hint", func(s *discoveryv1.EndpointSlice) {
			s.Endpoints[0].Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "a"}, {Name: "a"}}}
		}, `endpoints[0].hints.forZones[1]: Duplicate value: "a"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := baseSlice()
			c.mut(s)
			checkPrepare(t, s, c.want)
		})
	}
	k, _ := KindOf(&discoveryv1.EndpointSlice{})
	a, b := baseSlice(), baseSlice()
	b.AddressType = discoveryv1.AddressTypeIPv6
	if errs := k.ValidateUpdate(a, b); len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), "addressType: Invalid value") {
		t.Fatalf("addressType change: %v", errs)
	}
}

func baseTemplate() corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Command: []string{"sleep", "infinity"}}}},
	}
}

func baseDeployment() *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: baseTemplate(),
		},
	}
}

func TestDeploymentDefaults(t *testing.T) {
	d := baseDeployment()
	checkPrepare(t, d, "")
	s := d.Spec
	if *s.Replicas != 1 || s.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType ||
		s.Strategy.RollingUpdate.MaxSurge.String() != "25%" || s.Strategy.RollingUpdate.MaxUnavailable.String() != "25%" ||
		*s.RevisionHistoryLimit != 10 || *s.ProgressDeadlineSeconds != 600 {
		t.Fatalf("defaults: %+v", s)
	}
	if s.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways || s.Template.Spec.DNSPolicy != corev1.DNSClusterFirst {
		t.Fatalf("template not defaulted as a pod: %+v", s.Template.Spec)
	}
	r := &appsv1.Deployment{ObjectMeta: d.ObjectMeta, Spec: appsv1.DeploymentSpec{Selector: d.Spec.Selector, Template: baseTemplate(),
		Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}}}
	checkPrepare(t, r, "")
	if r.Spec.Strategy.RollingUpdate != nil {
		t.Fatalf("Recreate got rollingUpdate")
	}
	rs := &appsv1.ReplicaSet{ObjectMeta: d.ObjectMeta, Spec: appsv1.ReplicaSetSpec{Selector: d.Spec.Selector, Template: baseTemplate()}}
	checkPrepare(t, rs, "")
	if *rs.Spec.Replicas != 1 {
		t.Fatalf("rs replicas %d", *rs.Spec.Replicas)
	}
}

func TestDeploymentValidation(t *testing.T) {
	iop := func(v intstr.IntOrString) *intstr.IntOrString { return &v }
	cases := []struct {
		name string
		mut  func(*appsv1.Deployment)
		want string
	}{
		{"valid", func(*appsv1.Deployment) {}, ""},
		{"no selector", func(d *appsv1.Deployment) { d.Spec.Selector = nil }, "spec.selector: Required value"},
		{"empty selector", func(d *appsv1.Deployment) { d.Spec.Selector = &metav1.LabelSelector{} }, "empty selector is invalid for deployment"},
		{"selector does not match", func(d *appsv1.Deployment) { d.Spec.Selector.MatchLabels = map[string]string{"app": "db"} },
			"spec.template.metadata.labels: Invalid value: {\"app\":\"web\"}: `selector` does not match template `labels`"},
		{"invalid selector", func(d *appsv1.Deployment) { d.Spec.Selector.MatchLabels = map[string]string{"app": "we b"} }, `spec.selector.matchLabels: Invalid value: "we b"`},
		{"invalid selector operator", func(d *appsv1.Deployment) {
			d.Spec.Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Near", Values: []string{"web"}}}}
		}, `spec.selector.matchExpressions[0].operator: Invalid value: "Near"`},
		{"matchExpressions match", func(d *appsv1.Deployment) {
			d.Spec.Selector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"web", "www"}}}}
		}, ""},
		{"negative replicas", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr(int32(-1)) }, "spec.replicas: Invalid value: -1: must be greater than or equal to 0"},
		{"zero replicas", func(d *appsv1.Deployment) { d.Spec.Replicas = ptr(int32(0)) }, ""},
		{"both zero", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: iop(intstr.FromInt32(0)), MaxUnavailable: iop(intstr.FromString("0%"))}
		}, "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0"},
		{"maxUnavailable over 100%", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: iop(intstr.FromString("150%"))}
		}, "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"},
		{"bad percent", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: iop(intstr.FromString("many"))}
		}, `spec.strategy.rollingUpdate.maxSurge: Invalid value: "many"`},
		{"negative surge", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: iop(intstr.FromInt32(-1))}
		}, "spec.strategy.rollingUpdate.maxSurge: Invalid value: -1"},
		{"Recreate with rollingUpdate", func(d *appsv1.Deployment) {
			d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{}}
		}, "spec.strategy.rollingUpdate: Forbidden"},
		{"bad strategy", func(d *appsv1.Deployment) { d.Spec.Strategy.Type = "BlueGreen" }, `spec.strategy.type: Unsupported value: "BlueGreen"`},
		{"negative revisionHistoryLimit", func(d *appsv1.Deployment) { d.Spec.RevisionHistoryLimit = ptr(int32(-2)) }, "spec.revisionHistoryLimit: Invalid value: -2"},
		{"negative minReadySeconds", func(d *appsv1.Deployment) { d.Spec.MinReadySeconds = -1 }, "spec.minReadySeconds: Invalid value: -1"},
		{"progressDeadline not above minReady", func(d *appsv1.Deployment) {
			d.Spec.MinReadySeconds = 30
			d.Spec.ProgressDeadlineSeconds = ptr(int32(30))
		}, "spec.progressDeadlineSeconds: Invalid value: 30: must be greater than minReadySeconds"},
		{"template without command", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers[0].Command = nil }, "spec.template.spec.containers[0].command: Required value"},
		{"template without containers", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers = nil }, "spec.template.spec.containers: Required value"},
		{"template bad port", func(d *appsv1.Deployment) {
			d.Spec.Template.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 0}}
		}, "spec.template.spec.containers[0].ports[0].containerPort: Invalid value: 0"},
		{"template restartPolicy Never", func(d *appsv1.Deployment) { d.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever },
			`spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"`},
		{"template network annotation", func(d *appsv1.Deployment) {
			d.Spec.Template.Annotations = map[string]string{AnnotationNetwork: "macvlan"}
		}, `spec.template.metadata.annotations[podnet.io/network]: Unsupported value: "macvlan"`},
		{"template bad label", func(d *appsv1.Deployment) { d.Spec.Template.Labels["bad key!"] = "x" }, "spec.template.metadata.labels[bad key!]"},
		{"activeDeadlineSeconds", func(d *appsv1.Deployment) { d.Spec.Template.Spec.ActiveDeadlineSeconds = ptr(int64(5)) }, "spec.template.spec.activeDeadlineSeconds: Forbidden"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := baseDeployment()
			c.mut(d)
			checkPrepare(t, d, c.want)
		})
	}
}

func TestReplicaSetValidation(t *testing.T) {
	base := func() *appsv1.ReplicaSet {
		return &appsv1.ReplicaSet{
			ObjectMeta: metav1.ObjectMeta{Name: "web-5d8f9", Namespace: "default"},
			Spec:       appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, Template: baseTemplate()},
		}
	}
	cases := []struct {
		name string
		mut  func(*appsv1.ReplicaSet)
		want string
	}{
		{"valid", func(*appsv1.ReplicaSet) {}, ""},
		{"no selector", func(r *appsv1.ReplicaSet) { r.Spec.Selector = nil }, "spec.selector: Required value"},
		{"empty selector", func(r *appsv1.ReplicaSet) { r.Spec.Selector = &metav1.LabelSelector{} }, "empty selector is invalid for replicaset"},
		{"mismatch", func(r *appsv1.ReplicaSet) { r.Spec.Template.Labels = map[string]string{"app": "db"} }, "`selector` does not match template `labels`"},
		{"negative replicas", func(r *appsv1.ReplicaSet) { r.Spec.Replicas = ptr(int32(-3)) }, "spec.replicas: Invalid value: -3"},
		{"template no command", func(r *appsv1.ReplicaSet) { r.Spec.Template.Spec.Containers[0].Command = nil }, "spec.template.spec.containers[0].command: Required value"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := base()
			c.mut(r)
			checkPrepare(t, r, c.want)
		})
	}
}

func TestSelectorImmutable(t *testing.T) {
	dk, _ := KindOf(&appsv1.Deployment{})
	a, b := baseDeployment(), baseDeployment()
	b.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "tier": "front"}}
	if errs := dk.ValidateUpdate(a, b); len(errs) == 0 || !strings.Contains(errs.ToAggregate().Error(), "spec.selector: Invalid value") || !strings.Contains(errs.ToAggregate().Error(), "field is immutable") {
		t.Fatalf("deployment selector change: %v", errs)
	}
	c := baseDeployment()
	c.Spec.Replicas = ptr(int32(5))
	if errs := dk.ValidateUpdate(a, c); len(errs) > 0 {
		t.Fatalf("replicas change refused: %v", errs)
	}
	rk, _ := KindOf(&appsv1.ReplicaSet{})
	r1 := &appsv1.ReplicaSet{Spec: appsv1.ReplicaSetSpec{Selector: a.Spec.Selector}}
	r2 := &appsv1.ReplicaSet{Spec: appsv1.ReplicaSetSpec{Selector: b.Spec.Selector}}
	if errs := rk.ValidateUpdate(r1, r2); len(errs) == 0 {
		t.Fatal("replicaset selector change allowed")
	}
}
