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

// nonMasqueradeCIDRs (the cluster CIDR) must not change what the node's
// own pods see: hairpin and published ports are still masqueraded, pod
// egress is still NATed, pod to pod keeps the source; DEL returns the
// table to its baseline.
func TestNonMasqueradeCIDRsKeepHairpinAndEgress(t *testing.T) {
	n := newNode(t)
	l := n.conflist("1.1.0", map[string]any{"nonMasqueradeCIDRs": []string{"10.22.0.0/16", "10.99.0.0/16"}})
	p, other := n.newPod(), n.newPod()
	r := n.mustAdd(l, p, map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}}})
	ro := n.mustAdd(l, other, nil)
	t.Cleanup(func() { _ = n.del(l, p); _ = n.del(l, other) })
	ip, otherIP := podIP(t, r), podIP(t, ro)
	table := mustInNS(t, n.ns, "nft", "list", "set", "inet", "podnet", "pod-nets4")
	for _, want := range []string{ip + " . 10.22.0.0/16", ip + " . 10.99.0.0/16", otherIP + " . 10.22.0.0/16"} {
		if !strings.Contains(table, want) {
			t.Errorf("pod-nets4 lacks %q:\n%s", want, table)
		}
	}
	if strings.Contains(table, "10.22.0.0/24") {
		t.Errorf("pod-nets4 still has the /24 the /16 holds:\n%s", table)
	}
	listen(t, p.ns, "tcp", 80)
	listen(t, n.ext, "tcp", 9000)
	for _, c := range []struct {
		name, from, addr, want string
		port                   int
	}{
		{"hairpin", p.ns, "192.168.200.1", "hello 10.22.0.1", 8080},
		{"neighbour via node", other.ns, "192.168.200.1", "hello 10.22.0.1", 8080},
		{"direct", other.ns, ip, "hello " + otherIP, 80},
		{"egress", p.ns, "192.168.200.2", "hello 192.168.200.1", 9000},
	} {
		out, err := dial(c.from, "tcp", c.addr, c.port)
		if err != nil || out != c.want {
			t.Errorf("%s: %s:%d: %v: %q, want %q", c.name, c.addr, c.port, err, out, c.want)
		}
	}
	if err := n.del(l, p); err != nil {
		t.Fatal(err)
	}
	if err := n.del(l, other); err != nil {
		t.Fatal(err)
	}
	if after := mustInNS(t, n.ns, "nft", "list", "set", "inet", "podnet", "pod-nets4"); strings.Contains(after, "10.22.") {
		t.Fatalf("elements left after DEL:\n%s", after)
	}
}
