package l2announce

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/podnet/podnet/internal/api"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func node(name string, ready corev1.ConditionStatus, labels ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if ready != "" {
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}
	}
	for _, l := range labels {
		n.Labels[l] = ""
	}
	return n
}

func lbSvc(name, ip string, local bool) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
	s.Spec.Type = corev1.ServiceTypeLoadBalancer
	s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	if local {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	}
	if ip != "" {
		s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: ip}}
	}
	return s
}

// slice lists endpoints of svc as node:ready pairs ("n1", "n2!" for not ready).
func slice(svc string, eps ...string) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: svc + "-abcde",
		Labels: map[string]string{api.LabelServiceName: svc}}, AddressType: discoveryv1.AddressTypeIPv4}
	for i, e := range eps {
		ready := true
		if e[len(e)-1] == '!' {
			ready, e = false, e[:len(e)-1]
		}
		n := e
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("10.244.0.%d", i+2)},
			NodeName: &n, Conditions: discoveryv1.EndpointConditions{Ready: &ready}})
	}
	return sl
}

var lb1 = netip.MustParseAddr("192.168.250.200")

// rank orders names by Score for lb1, the winner first.
func rank(t *testing.T, names ...string) []string {
	t.Helper()
	out := append([]string(nil), names...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if Score(out[j], lb1) < Score(out[i], lb1) {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestAssign(t *testing.T) {
	all := rank(t, "n1", "n2", "n3")
	first, second, third := all[0], all[1], all[2]
	ready := func(names ...string) []*corev1.Node {
		var out []*corev1.Node
		for _, n := range []string{"n1", "n2", "n3"} {
			st := corev1.ConditionUnknown
			for _, r := range names {
				if r == n {
					st = corev1.ConditionTrue
				}
			}
			out = append(out, node(n, st))
		}
		return out
	}
	cases := []struct {
		name   string
		svcs   []*corev1.Service
		nodes  []*corev1.Node
		slices []*discoveryv1.EndpointSlice
		want   string // "" = not announced
	}{
		{"cluster policy, no endpoints: lowest hash of the Ready nodes", []*corev1.Service{lbSvc("web", lb1.String(), false)}, ready("n1", "n2", "n3"), nil, first},
		{"cluster policy: the winner's node dies", []*corev1.Service{lbSvc("web", lb1.String(), false)}, ready(second, third), nil, second},
		{"cluster policy prefers a node with a ready endpoint", []*corev1.Service{lbSvc("web", lb1.String(), false)}, ready("n1", "n2", "n3"),
			[]*discoveryv1.EndpointSlice{slice("web", third, first+"!")}, third},
		{"cluster policy, the only endpoint's node dead: any Ready node", []*corev1.Service{lbSvc("web", lb1.String(), false)}, ready(first, second),
			[]*discoveryv1.EndpointSlice{slice("web", third)}, first},
		{"local policy: only nodes with a ready endpoint", []*corev1.Service{lbSvc("web", lb1.String(), true)}, ready("n1", "n2", "n3"),
			[]*discoveryv1.EndpointSlice{slice("web", second, third)}, second},
		{"local policy: a not-ready endpoint does not count", []*corev1.Service{lbSvc("web", lb1.String(), true)}, ready("n1", "n2", "n3"),
			[]*discoveryv1.EndpointSlice{slice("web", second+"!", third)}, third},
		{"local policy without a ready local endpoint: nobody", []*corev1.Service{lbSvc("web", lb1.String(), true)}, ready("n1", "n2", "n3"),
			[]*discoveryv1.EndpointSlice{slice("web", first+"!")}, ""},
		{"local policy, the endpoint's node not Ready: nobody", []*corev1.Service{lbSvc("web", lb1.String(), true)}, ready(first, second),
			[]*discoveryv1.EndpointSlice{slice("web", third)}, ""},
		{"another Service's endpoints do not count", []*corev1.Service{lbSvc("web", lb1.String(), true)}, ready("n1", "n2", "n3"),
			[]*discoveryv1.EndpointSlice{slice("db", first)}, ""},
		{"no Ready node", []*corev1.Service{lbSvc("web", lb1.String(), false)}, ready(), nil, ""},
		{"excluded node", []*corev1.Service{lbSvc("web", lb1.String(), false)},
			[]*corev1.Node{node(first, corev1.ConditionTrue, LabelExcludeFromLB), node(second, corev1.ConditionTrue)}, nil, second},
		{"node without a Ready condition", []*corev1.Service{lbSvc("web", lb1.String(), false)},
			[]*corev1.Node{node(first, ""), node(third, corev1.ConditionFalse), node(second, corev1.ConditionTrue)}, nil, second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Assign(c.svcs, c.nodes, c.slices)
			if got[lb1] != c.want {
				t.Fatalf("announcer of %s = %q, want %q (ranking %v)", lb1, got[lb1], c.want, all)
			}
			if _, ok := got[lb1]; ok != (c.want != "") || len(got) > 1 {
				t.Fatalf("assignment %v", got)
			}
		})
	}
}

func TestAssignIgnores(t *testing.T) {
	nodes := []*corev1.Node{node("n1", corev1.ConditionTrue)}
	np := lbSvc("np", "192.168.250.201", false)
	np.Spec.Type = corev1.ServiceTypeNodePort
	pending := lbSvc("pending", "", false)
	v6 := lbSvc("v6", "fd00::1", false)
	bad := lbSvc("bad", "not-an-ip", false)
	if got := Assign([]*corev1.Service{np, pending, v6, bad}, nodes, nil); len(got) != 0 {
		t.Fatalf("got %v, want nothing announced", got)
	}
}

// Every agent gets the same answer whatever order its caches list in.
func TestAssignDeterministic(t *testing.T) {
	var nodes []*corev1.Node
	for i := range 7 {
		nodes = append(nodes, node(fmt.Sprintf("node-%d", i), corev1.ConditionTrue))
	}
	var svcs []*corev1.Service
	for i := range 40 {
		svcs = append(svcs, lbSvc(fmt.Sprintf("s%d", i), fmt.Sprintf("192.168.250.%d", 200+i), i%3 == 0))
	}
	var slices []*discoveryv1.EndpointSlice
	for i := range 40 {
		slices = append(slices, slice(fmt.Sprintf("s%d", i), fmt.Sprintf("node-%d", i%7), fmt.Sprintf("node-%d", (i*5+1)%7)))
	}
	want := Assign(svcs, nodes, slices)
	if len(want) != 40 {
		t.Fatalf("%d of 40 addresses assigned: %v", len(want), want)
	}
	per := map[string]int{}
	for _, n := range want {
		per[n]++
	}
	if len(per) < 5 {
		t.Errorf("40 addresses went to only %d of 7 nodes: %v", len(per), per)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		r.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
		r.Shuffle(len(svcs), func(i, j int) { svcs[i], svcs[j] = svcs[j], svcs[i] })
		r.Shuffle(len(slices), func(i, j int) { slices[i], slices[j] = slices[j], slices[i] })
		got := Assign(svcs, nodes, slices)
		for ip, n := range want {
			if got[ip] != n {
				t.Fatalf("after a shuffle %s goes to %s, before to %s", ip, got[ip], n)
			}
		}
	}
}

// A node leaving moves only the addresses it announced.
func TestAssignMovesOnlyTheDeadNodesAddresses(t *testing.T) {
	nodes := []*corev1.Node{node("a", corev1.ConditionTrue), node("b", corev1.ConditionTrue), node("c", corev1.ConditionTrue)}
	var svcs []*corev1.Service
	for i := range 30 {
		svcs = append(svcs, lbSvc(fmt.Sprintf("s%d", i), fmt.Sprintf("192.168.250.%d", 200+i), false))
	}
	before := Assign(svcs, nodes, nil)
	nodes[1].Status.Conditions[0].Status = corev1.ConditionUnknown
	after := Assign(svcs, nodes, nil)
	moved := 0
	for ip, n := range before {
		switch {
		case n == "b" && after[ip] == "b":
			t.Errorf("%s still on the dead node", ip)
		case n == "b":
			moved++
		case after[ip] != n:
			t.Errorf("%s moved from %s to %s though %s is alive", ip, n, after[ip], n)
		}
	}
	if moved == 0 {
		t.Errorf("node b announced none of 30 addresses: %v", before)
	}
}

func TestElectTie(t *testing.T) {
	if got := Elect(lb1, nil); got != "" {
		t.Fatalf("Elect of no candidates = %q", got)
	}
	if got := Elect(lb1, []string{"x", "x"}); got != "x" {
		t.Fatalf("Elect = %q", got)
	}
}

// Nodes on another segment never announce, whatever their rank; a node
// whose segment is unknown may.
func TestAssignSegments(t *testing.T) {
	all := rank(t, "n1", "n2", "n3")
	seg := func(n *corev1.Node, p string) *corev1.Node {
		n.Annotations = map[string]string{AnnotationSegment: p}
		return n
	}
	svc := []*corev1.Service{lbSvc("web", lb1.String(), false)}
	nodes := []*corev1.Node{
		seg(node(all[0], corev1.ConditionTrue), "192.168.251.0/24"),
		seg(node(all[1], corev1.ConditionTrue), "192.168.250.0/24"),
		node(all[2], corev1.ConditionTrue),
	}
	if got := Assign(svc, nodes, nil)[lb1]; got != all[1] {
		t.Fatalf("announcer %q, want %s (first on 192.168.250.0/24)", got, all[1])
	}
	// With the endpoints only on the other segment, a Cluster Service is
	// still announced on its own; a Local one is not.
	sl := []*discoveryv1.EndpointSlice{slice("web", all[0])}
	if got := Assign(svc, nodes, sl)[lb1]; got != all[1] {
		t.Fatalf("Cluster policy, endpoint off-segment: announcer %q, want %s", got, all[1])
	}
	local := []*corev1.Service{lbSvc("web", lb1.String(), true)}
	if got, ok := Assign(local, nodes, sl)[lb1]; ok {
		t.Fatalf("Local policy, endpoint off-segment: announced by %q", got)
	}
	nodes[1] = seg(node(all[1], corev1.ConditionTrue), "garbage")
	if got := Assign(svc, nodes, nil)[lb1]; got != all[2] {
		t.Fatalf("with a bad segment annotation: announcer %q, want %s (segment unknown)", got, all[2])
	}
}
