package cluster

import (
	"strings"
	"testing"
	"time"
)

func TestNodeHostMatchesPlan(t *testing.T) {
	for _, two := range []bool{false, true} {
		s := Spec{Name: "c", Nodes: 4, TwoSubnets: two}
		s.Default()
		p := Plan(s)
		for i, h := range p.Nodes() {
			got := nodeHost(s, i+1, h.Name)
			if got.NetNS != h.NetNS || got.IP() != h.IP() || got.Ifaces[0].Switch != h.Ifaces[0].Switch ||
				got.Ifaces[0].Port != h.Ifaces[0].Port || len(got.Routes) != len(h.Routes) {
				t.Errorf("two subnets %v: node %d planned %+v, nodeHost %+v", two, i+1, h, got)
			}
			if nodeIndex(h) != i+1 {
				t.Errorf("nodeIndex(%s) = %d", h.NetNS, nodeIndex(h))
			}
		}
	}
}

func TestCheckNodeName(t *testing.T) {
	s := Spec{Name: "c", Nodes: 2}
	s.Default()
	top := Plan(s)
	for name, want := range map[string]string{
		"worker-7": "",
		"c-n1":     "already has a host",
		"outside":  "already has a host",
		"cp":       "already has a host",
		"n9":       "short name",
		"etcd1":    "short name",
		"Bad_":     "RFC 1123",
	} {
		err := checkNodeName(&top, name)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("checkNodeName(%q) = %v, want %q", name, err, want)
		}
	}
}

func TestNodeLeaseTTL(t *testing.T) {
	for ttl, ok := range map[time.Duration]bool{0: true, 5 * time.Second: true, 2 * time.Second: true, time.Second: false, 2500 * time.Millisecond: false} {
		s := Spec{NodeLeaseTTL: ttl}
		s.Default()
		if err := s.Validate(); (err == nil) != ok {
			t.Errorf("--node-lease-ttl %s: %v", ttl, err)
		}
	}
	r, err := NewRecord(Spec{Name: "c", Nodes: 1, NodeLeaseTTL: 4 * time.Second}, t.TempDir(), "/bin/podnet")
	if err != nil {
		t.Fatal(err)
	}
	if a := strings.Join(r.Agents[0].Args, " "); !strings.Contains(a, "--node-lease-ttl 4s") {
		t.Errorf("agent args %s", a)
	}
}
