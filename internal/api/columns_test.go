package api

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

func cells(t *testing.T, o Object, wide bool) map[string]string {
	t.Helper()
	k, err := KindOf(o)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, c := range k.Columns {
		if !c.Wide || wide {
			out[c.Name] = c.Cell(o)
		}
	}
	return out
}

func TestColumns(t *testing.T) {
	for _, k := range Kinds() {
		if len(k.Columns) == 0 || k.Columns[0].Name != "NAME" {
			t.Errorf("%s: columns must start with NAME: %+v", k.GVK.Kind, k.Columns)
		}
	}
	s := baseService()
	s.Spec.Type = corev1.ServiceTypeLoadBalancer
	s.Spec.ClusterIP = "10.96.0.20"
	s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, NodePort: 30080}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, NodePort: 30053}}
	if err := Prepare(s); err != nil {
		t.Fatal(err)
	}
	c := cells(t, s, true)
	if c["TYPE"] != "LoadBalancer" || c["CLUSTER-IP"] != "10.96.0.20" || c["EXTERNAL-IP"] != "<pending>" ||
		c["PORT(S)"] != "80:30080/TCP,53:30053/UDP" || c["SELECTOR"] != "app=web" {
		t.Errorf("LB service cells: %v", c)
	}
	s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.168.250.200"}}
	if got := cells(t, s, false)["EXTERNAL-IP"]; got != "192.168.250.200" {
		t.Errorf("LB with address: %q", got)
	}
	if _, ok := cells(t, s, false)["SELECTOR"]; ok {
		t.Error("SELECTOR shown without -o wide")
	}
	ci := baseService()
	Prepare(ci)
	if c := cells(t, ci, false); c["EXTERNAL-IP"] != "<none>" || c["PORT(S)"] != "80/TCP" {
		t.Errorf("ClusterIP cells: %v", c)
	}

	sl := baseSlice()
	sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.244.2.5"}}, discoveryv1.Endpoint{Addresses: []string{"10.244.2.6"}}, discoveryv1.Endpoint{Addresses: []string{"10.244.2.7"}})
	if c := cells(t, sl, false); c["ADDRESSTYPE"] != "IPv4" || c["PORTS"] != "8080" || c["ENDPOINTS"] != "10.244.1.5,10.244.2.5,10.244.2.6 + 1 more..." {
		t.Errorf("slice cells: %v", c)
	}

	d := baseDeployment()
	d.Spec.Replicas = ptr(int32(3))
	Prepare(d)
	d.Status = appsv1.DeploymentStatus{ReadyReplicas: 2, UpdatedReplicas: 3, AvailableReplicas: 2}
	if c := cells(t, d, true); c["READY"] != "2/3" || c["UP-TO-DATE"] != "3" || c["AVAILABLE"] != "2" ||
		c["CONTAINERS"] != "web" || !strings.Contains(c["IMAGES"], "sleep infinity") || c["SELECTOR"] != "app=web" {
		t.Errorf("deployment cells: %v", c)
	}
	rs := &appsv1.ReplicaSet{Spec: appsv1.ReplicaSetSpec{Replicas: ptr(int32(3))}, Status: appsv1.ReplicaSetStatus{Replicas: 3, ReadyReplicas: 1}}
	if c := cells(t, rs, false); c["DESIRED"] != "3" || c["CURRENT"] != "3" || c["READY"] != "1" {
		t.Errorf("rs cells: %v", c)
	}
}
