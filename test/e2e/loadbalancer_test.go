package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/cluster"
	"github.com/podnet/podnet/internal/l2announce"
	"github.com/podnet/podnet/internal/netns"
	corev1 "k8s.io/api/core/v1"
)

// TestClusterLoadBalancer: a type LoadBalancer Service gets an address of
// the pool that `outside` reaches; exactly one node answers ARP for it, the
// one the election names; after kill -9 of that node's agent another node
// takes over by gratuitous ARP (outside's neighbour cache is never
// flushed) and outside reaches the Service again; the restarted agent
// takes the address back, and a SIGTERM'd agent hands it over at once. The failover time is the node lease's TTL
// (here 5 s) at most, plus well under a second. With externalTrafficPolicy Local the node with
// the endpoint announces, and the client's address is kept.
func TestClusterLoadBalancer(t *testing.T) {
	// A 5 s node lease (default 10 s): the failover below follows it.
	const ttl = 5 * time.Second
	c, _, _ := newLocalCluster(t, clusterOpts{nodes: 3, backend: "vxlan", args: []string{"--node-lease-ttl", ttl.String()}})
	echo := filepath.Join(c.bin, "podnet")
	var names []string
	for i := 1; i <= 3; i++ {
		c.run(fmt.Sprintf("web%d", i), i, []string{"-l", "app=web"}, echo, "echo-server", "--listen", ":8080")
		names = append(names, c.node(i).Name)
	}
	c.run("solo", 2, []string{"-l", "app=solo"}, echo, "echo-server", "--listen", ":8080")
	c.apply(`apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: solo}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  selector: {app: solo}
  ports: [{port: 80, targetPort: 8080}]
`)
	ip := c.lbIP("web")
	macs := map[string]string{} // MAC -> node
	for _, n := range names {
		macs[c.uplinkMAC(n)] = n
	}
	outside := c.rec.Topology.Host(cluster.RoleOutside)

	// Reachable from outside, through the node the election names.
	get := func() (string, error) {
		return c.hostExec("outside", "curl", "-s", "-m", "2", "http://"+ip.String()+"/")
	}
	eventually(t, "outside reaches "+ip.String(), 15*time.Second, func() (bool, string) {
		out, err := get()
		return err == nil && strings.Contains(out, "hello from web"), out
	})
	first := l2announce.Elect(ip, names)
	onlyAnswer(t, outside, ip, func(m string) bool { return macs[m] == first }, first)
	c.describesAnnouncer("web", first)
	eventually(t, "outside's neighbour entry for "+ip.String()+" on "+first, 5*time.Second, func() (bool, string) {
		nb := c.neighbour(ip)
		return macs[nb] == first, nb
	})
	seen := map[string]bool{}
	for range 30 {
		out, err := get()
		f := strings.Fields(out)
		if err != nil || len(f) < 3 {
			t.Fatalf("outside → %s: %v\n%s", ip, err, out)
		}
		seen[f[2]] = true
	}
	if len(seen) != 3 {
		t.Errorf("30 requests to %s reached %v, want all of web1-3", ip, seen)
	}

	// kill -9 of the announcer's agent.
	a := c.rec.Agent(first)
	pid := a.PID()
	if pid == 0 {
		t.Fatalf("agent of %s not running", first)
	}
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for _, n := range names {
		if n != first {
			rest = append(rest, n)
		}
	}
	second := l2announce.Elect(ip, rest)
	eventually(t, "outside's neighbour entry moves to "+second, 30*time.Second, func() (bool, string) {
		nb := c.neighbour(ip)
		return macs[nb] == second, nb
	})
	moved := time.Since(start)
	out, err := get()
	if err != nil || !strings.Contains(out, "hello from web") {
		t.Fatalf("after the failover outside → %s: %v\n%s", ip, err, out)
	}
	reached := time.Since(start)
	onlyAnswer(t, outside, ip, func(m string) bool { return macs[m] == second }, second)
	c.describesAnnouncer("web", second)
	t.Logf("failover after kill -9 of %s's agent: neighbour entry on %s after %s, Service reached after %s",
		first, second, moved.Round(10*time.Millisecond), reached.Round(10*time.Millisecond))
	if moved > ttl+5*time.Second {
		t.Errorf("failover took %s with a node lease of %s", moved, ttl)
	}

	// The restarted agent's node is Ready again and first by hash again.
	if _, err := a.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the address back on "+first, 20*time.Second, func() (bool, string) {
		nb := c.neighbour(ip)
		return macs[nb] == first, nb
	})
	onlyAnswer(t, outside, ip, func(m string) bool { return macs[m] == first }, first)
	if out, err := get(); err != nil || !strings.Contains(out, "hello from web") {
		t.Fatalf("after the restart outside → %s: %v\n%s", ip, err, out)
	}

	// A graceful stop revokes the node lease: the takeover is immediate.
	start = time.Now()
	a.Kill(syscall.SIGTERM)
	eventually(t, "outside's neighbour entry moves to "+second+" after a SIGTERM", 2*time.Second, func() (bool, string) {
		nb := c.neighbour(ip)
		return macs[nb] == second, nb
	})
	t.Logf("failover after SIGTERM of %s's agent: %s", first, time.Since(start).Round(10*time.Millisecond))
	if out, err := get(); err != nil || !strings.Contains(out, "hello from web") {
		t.Fatalf("after the SIGTERM outside → %s: %v\n%s", ip, err, out)
	}

	// Back to three agents: the node first by hash may be solo's (n2),
	// whose pod is not Ready while its agent is stopped.
	if _, err := a.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, first+" Ready again", 20*time.Second, func() (bool, string) {
		out, _ := c.podnet("get", "node", first)
		return strings.Contains(out, " Ready "), out
	})

	// Local: only the endpoint's node announces; the client IP is kept.
	soloIP := c.lbIP("solo")
	eventually(t, "outside reaches solo at "+soloIP.String(), 15*time.Second, func() (bool, string) {
		out, err := c.hostExec("outside", "curl", "-s", "-m", "2", "http://"+soloIP.String()+"/")
		return err == nil && strings.Contains(out, "client: "+outside.IP().String()+"\n"), out
	})
	onlyAnswer(t, outside, soloIP, func(m string) bool { return macs[m] == c.node(2).Name }, c.node(2).Name+" (Local, the endpoint's node)")
}

// describesAnnouncer: `describe svc` names the announcing node.
func (c *localCluster) describesAnnouncer(svc, node string) {
	c.t.Helper()
	out := c.must("describe", "svc", svc)
	if !regexp.MustCompile(`(?m)^Announced By \(L2\):\s+` + regexp.QuoteMeta(node) + `$`).MatchString(out) {
		c.t.Errorf("describe svc %s does not name %s as the announcer:\n%s", svc, node, out)
	}
}

// apply applies a manifest.
func (c *localCluster) apply(manifest string) {
	c.t.Helper()
	f := filepath.Join(c.t.TempDir(), "m.yaml")
	if err := os.WriteFile(f, []byte(manifest), 0o644); err != nil {
		c.t.Fatal(err)
	}
	c.must("apply", "-f", f)
}

// lbIP waits for the Service's load-balancer address.
func (c *localCluster) lbIP(svc string) netip.Addr {
	c.t.Helper()
	var ip netip.Addr
	eventually(c.t, svc+" gets a load-balancer address", 10*time.Second, func() (bool, string) {
		var s corev1.Service
		out, err := c.podnet("get", "svc", svc, "-o", "json")
		if err != nil || json.Unmarshal([]byte(out), &s) != nil || len(s.Status.LoadBalancer.Ingress) == 0 {
			return false, out
		}
		ip, err = netip.ParseAddr(s.Status.LoadBalancer.Ingress[0].IP)
		return err == nil, out
	})
	return ip
}

var lladdrRE = regexp.MustCompile(`(?:link/ether|lladdr) ([0-9a-f:]{17})`)

// uplinkMAC is a host's underlay MAC.
func (c *localCluster) uplinkMAC(host string) string {
	c.t.Helper()
	out := check(c.t)(c.hostExec(host, "ip", "-o", "link", "show", cluster.UplinkName))
	m := lladdrRE.FindStringSubmatch(out)
	if m == nil {
		c.t.Fatalf("no MAC in %q", out)
	}
	return m[1]
}

// neighbour is the MAC in outside's neighbour entry for ip ("" if none).
func (c *localCluster) neighbour(ip netip.Addr) string {
	out, _ := c.hostExec("outside", "ip", "neigh", "show", ip.String(), "dev", cluster.UplinkName)
	if m := lladdrRE.FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return ""
}

// onlyAnswer waits (3 s at most: a handover may overlap for a moment)
// until exactly one host answers ARP for ip, and that its MAC is ok.
func onlyAnswer(t *testing.T, h *cluster.Host, ip netip.Addr, ok func(mac string) bool, want string) {
	t.Helper()
	eventually(t, "ARP for "+ip.String()+" answered by "+want+" alone", 3*time.Second, func() (bool, string) {
		who := arpWho(t, h, ip)
		return len(who) == 1 && ok(who[0]), fmt.Sprintf("answered by %v", who)
	})
}

// arpWho asks, from host h's uplink, who has ip, and returns the MACs of
// every reply within 500 ms.
func arpWho(t *testing.T, h *cluster.Host, ip netip.Addr) []string {
	t.Helper()
	var macs []string
	err := netns.Do(netns.Path(h.NetNS), func() error {
		ifc, err := net.InterfaceByName(cluster.UplinkName)
		if err != nil {
			return err
		}
		conn, err := l2announce.ListenARP(ifc.Index)
		if err != nil {
			return err
		}
		defer conn.Close()
		req := l2announce.Packet{EthDst: l2announce.Broadcast, EthSrc: ifc.HardwareAddr, Op: l2announce.OpRequest,
			SenderHW: ifc.HardwareAddr, SenderIP: h.IP(), TargetHW: make(net.HardwareAddr, 6), TargetIP: ip}
		b, err := req.Marshal()
		if err != nil {
			return err
		}
		if err := conn.WriteFrame(b); err != nil {
			return err
		}
		time.AfterFunc(500*time.Millisecond, func() { conn.Close() })
		buf := make([]byte, 1600)
		for {
			n, outgoing, err := conn.ReadFrame(buf)
			if err != nil {
				return nil // closed: time is up
			}
			p, err := l2announce.Parse(buf[:n])
			if err != nil || outgoing || p.Op != l2announce.OpReply || p.SenderIP != ip || p.TargetIP != h.IP() {
				continue
			}
			macs = append(macs, p.SenderHW.String())
		}
	})
	if err != nil {
		t.Fatalf("ARP from %s: %v", h.Name, err)
	}
	return macs
}

// TestClusterLoadBalancerTwoSubnets: with nodes on two subnets, only nodes
// on the pool's segment (outside's) announce: every one of 6 addresses is
// reached from outside and answered by exactly one node of that segment,
// and the node behind the router publishes its own segment.
func TestClusterLoadBalancerTwoSubnets(t *testing.T) {
	c, _, _ := newLocalCluster(t, clusterOpts{nodes: 3, backend: "vxlan", twoSubnets: true})
	echo := filepath.Join(c.bin, "podnet")
	for i := 1; i <= 3; i++ {
		c.run(fmt.Sprintf("web%d", i), i, []string{"-l", "app=web"}, echo, "echo-server", "--listen", ":8080")
	}
	var m strings.Builder
	for i := range 6 {
		fmt.Fprintf(&m, "apiVersion: v1\nkind: Service\nmetadata: {name: web%d}\nspec:\n  type: LoadBalancer\n  selector: {app: web}\n  ports: [{port: 80, targetPort: 8080}]\n---\n", i)
	}
	c.apply(m.String())
	onA := map[string]string{} // MAC -> node, for the nodes on outside's segment
	for i := 1; i <= 3; i++ {
		n := c.node(i)
		if n.IP().As4()[2] == 250 {
			onA[c.uplinkMAC(n.Name)] = n.Name
		}
	}
	if len(onA) != 2 {
		t.Fatalf("nodes on outside's segment: %v, want n1 and n3", onA)
	}
	eventually(t, c.node(2).Name+" publishes its segment", 10*time.Second, func() (bool, string) {
		a := c.nodeObject(c.node(2).Name).Annotations[l2announce.AnnotationSegment]
		return a == "192.168.251.0/24", a
	})
	outside := c.rec.Topology.Host(cluster.RoleOutside)
	for i := range 6 {
		ip := c.lbIP(fmt.Sprintf("web%d", i))
		eventually(t, "outside reaches "+ip.String(), 15*time.Second, func() (bool, string) {
			out, err := c.hostExec("outside", "curl", "-s", "-m", "2", "http://"+ip.String()+"/")
			return err == nil && strings.Contains(out, "hello from web"), out
		})
		onlyAnswer(t, outside, ip, func(m string) bool { return onA[m] != "" }, fmt.Sprintf("one of %v", onA))
	}
}
