package cni_test

import (
	"strings"
	"testing"

	"github.com/podnet/podnet/internal/testutil"
)

// Acceptance 1: two pods on one node ping each other and the gateway.
func TestPodsPingEachOtherAndGateway(t *testing.T) {
	n := newNode(t)
	l := n.conflist("1.1.0", nil)
	a, b := n.newPod(), n.newPod()
	ra := n.mustAdd(l, a, nil)
	rb := n.mustAdd(l, b, nil)
	t.Cleanup(func() { _ = n.del(l, a); _ = n.del(l, b) })
	ipA, ipB := podIP(t, ra), podIP(t, rb)
	if ipA == ipB {
		t.Fatalf("both pods got %s", ipA)
	}
	gw := ra.IPs[0].Gateway.String()
	if gw != "10.22.0.1" {
		t.Fatalf("gateway %s, want 10.22.0.1", gw)
	}
	mustInNS(t, a.ns, "ping", "-c1", "-W2", ipB)
	mustInNS(t, b.ns, "ping", "-c1", "-W2", ipA)
	mustInNS(t, a.ns, "ping", "-c1", "-W2", gw)
}

// Acceptance 2: a pod reaches the external host through masquerade, and
// the external host sees the node's address.
func TestPodReachesExternalHostMasqueraded(t *testing.T) {
	n := newNode(t)
	l := n.conflist("1.1.0", nil)
	p := n.newPod()
	n.mustAdd(l, p, nil)
	t.Cleanup(func() { _ = n.del(l, p) })
	listen(t, n.ext, "tcp", 9000)
	out, err := dial(p.ns, "tcp", "192.168.200.2", 9000)
	if err != nil {
		t.Fatalf("pod → external: %v: %s", err, out)
	}
	if out != "hello 192.168.200.1" {
		t.Fatalf("external host saw %q, want the node's address 192.168.200.1", out)
	}

	// Without ipMasq the pod's own address leaves the node, and the
	// external host, with no route to pods, can't answer.
	n2 := newNode(t)
	l2 := n2.conflist("1.1.0", map[string]any{"ipMasq": false})
	p2 := n2.newPod()
	n2.mustAdd(l2, p2, nil)
	t.Cleanup(func() { _ = n2.del(l2, p2) })
	listen(t, n2.ext, "tcp", 9000)
	if out, err := dial(p2.ns, "tcp", "192.168.200.2", 9000); err == nil {
		t.Fatalf("without ipMasq the external host answered: %q", out)
	}
}

// Acceptance 3: published ports, from the external host, from the node
// (uplink address and 127.0.0.1), from the pod itself (hairpin) and from a
// neighbour pod; TCP and UDP.
func TestPublishedPorts(t *testing.T) {
	n := newNode(t)
	l := n.conflist("1.1.0", nil)
	p := n.newPod()
	caps := map[string]any{"portMappings": []map[string]any{
		{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
		{"hostPort": 5353, "containerPort": 53, "protocol": "udp"},
	}}
	r := n.mustAdd(l, p, caps)
	t.Cleanup(func() { _ = n.del(l, p) })
	ip := podIP(t, r)
	other := n.newPod()
	ro := n.mustAdd(l, other, nil)
	t.Cleanup(func() { _ = n.del(l, other) })
	otherIP := podIP(t, ro)
	listen(t, p.ns, "tcp", 80)
	listen(t, p.ns, "udp", 53)

	cases := []struct {
		name, from, proto, addr string
		port                    int
		wantPeer                string // "" = any
	}{
		{"external tcp", n.ext, "tcp", "192.168.200.1", 8080, "192.168.200.2"},
		{"external udp", n.ext, "udp", "192.168.200.1", 5353, "192.168.200.2"},
		{"node uplink", n.ns, "tcp", "192.168.200.1", 8080, ""},
		{"node loopback", n.ns, "tcp", "127.0.0.1", 8080, "10.22.0.1"},
		{"node loopback udp", n.ns, "udp", "127.0.0.1", 5353, "10.22.0.1"},
		{"hairpin", p.ns, "tcp", "192.168.200.1", 8080, "10.22.0.1"},
		{"neighbour via node", other.ns, "tcp", "192.168.200.1", 8080, "10.22.0.1"},
		{"direct", other.ns, "tcp", ip, 80, otherIP},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			out, err := dial(c.from, c.proto, c.addr, c.port)
			if err != nil || !strings.HasPrefix(out, "hello ") {
				t.Fatalf("%s %s:%d: %v: %q", c.proto, c.addr, c.port, err, out)
			}
			if c.wantPeer != "" && out != "hello "+c.wantPeer {
				t.Fatalf("pod saw %q, want peer %s", out, c.wantPeer)
			}
		})
	}
	_ = testutil.Run
}
