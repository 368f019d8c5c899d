package overlay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/overlay"
	"github.com/podnet/podnet/internal/testutil"
)

// The topology: "node" namespaces whose uplinks are ports of a bridge in a
// "switch" namespace (one bridge per underlay subnet). With two subnets a
// "router" namespace has a leg on each bridge (.254) and the nodes route
// the other subnet through it. Each node runs the real podnet-cni (via
// libcni, inside the node namespace) for one pod, and the backend under
// test programs its peers through a netlink handle opened in the node's
// namespace.

type cluster struct {
	t       *testing.T
	sw      string // switch namespace
	bridges map[string]string
	nodes   []*tnode
	cni     *libcni.CNIConfig
}

type tnode struct {
	name, ns, path string
	ip             netip.Addr
	podCIDR        netip.Prefix
	backend        overlay.Backend
	kernel         overlay.Kernel
	stateDir       string
	data           overlay.NodeData
	mtu            int
	pod            string // pod namespace
	podIP          string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	testutil.RequireRoot(t)
	c := &cluster{t: t, bridges: map[string]string{}}
	c.sw, _ = testutil.NewNS(t)
	c.cni = libcni.NewCNIConfigWithCacheDir([]string{testutil.Binaries(t)}, t.TempDir(), nil)
	return c
}

func (c *cluster) bridge(subnet string) string {
	if b, ok := c.bridges[subnet]; ok {
		return b
	}
	b := testutil.UniqueName("pnsw", 0)
	testutil.Run(c.t, "ip", "-n", c.sw, "link", "add", b, "type", "bridge")
	testutil.Run(c.t, "ip", "-n", c.sw, "link", "set", b, "up")
	c.bridges[subnet] = b
	return b
}

// plug connects namespace ns to the switch's bridge for subnet with
// address addr (a /24) on a link named ifname.
func (c *cluster) plug(ns, ifname, addr, subnet string) {
	c.t.Helper()
	port := testutil.UniqueName("pnp", 0)
	testutil.Run(c.t, "ip", "-n", c.sw, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns)
	testutil.Run(c.t, "ip", "-n", c.sw, "link", "set", port, "master", c.bridge(subnet), "up")
	testutil.Run(c.t, "ip", "-n", ns, "addr", "add", addr, "dev", ifname)
	testutil.Run(c.t, "ip", "-n", ns, "link", "set", ifname, "up")
}

// router joins the 192.168.250.0/24 and 192.168.251.0/24 underlays.
func (c *cluster) router() {
	c.t.Helper()
	r, _ := testutil.NewNS(c.t)
	c.plug(r, "pnr0", "192.168.250.254/24", "250")
	c.plug(r, "pnr1", "192.168.251.254/24", "251")
	testutil.Run(c.t, "ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
}

// addNode creates node i (pod CIDR 10.244.i.0/24) at ip on subnet's
// bridge, with gw (if set) as its default gateway.
func (c *cluster) addNode(i int, ip, subnet, gw string) *tnode {
	c.t.Helper()
	n := &tnode{name: fmt.Sprintf("n%d", i), ip: netip.MustParseAddr(ip), podCIDR: netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i))}
	n.ns, n.path = testutil.NewNS(c.t)
	c.plug(n.ns, "pneth0", ip+"/24", subnet)
	if gw != "" {
		testutil.Run(c.t, "ip", "-n", n.ns, "route", "add", "default", "via", gw)
	}
	c.nodes = append(c.nodes, n)
	return n
}

// setup creates each node's backend in its namespace and runs Setup.
func (c *cluster) setup(backend string) {
	c.t.Helper()
	for _, n := range c.nodes {
		h, err := vnetns.GetFromPath(n.path)
		if err != nil {
			c.t.Fatal(err)
		}
		nl, err := netlink.NewHandleAt(h)
		h.Close()
		if err != nil {
			c.t.Fatal(err)
		}
		c.t.Cleanup(nl.Close)
		n.kernel, n.stateDir = overlay.NewNetlink(nl), c.t.TempDir()
		n.backend, err = overlay.New(backend, overlay.Config{
			Self:     overlay.Node{Name: n.name, IP: n.ip, PodCIDR: n.podCIDR},
			StateDir: n.stateDir,
			Kernel:   n.kernel,
			Logger:   testutil.Logger(c.t),
		})
		if err != nil {
			c.t.Fatal(err)
		}
		n.data, n.mtu, err = n.backend.Setup(context.Background())
		if err != nil {
			c.t.Fatalf("node %s: Setup: %v", n.name, err)
		}
	}
}

// peersOf returns every node but n, as the agent's runner would.
func (c *cluster) peersOf(n *tnode) []overlay.Node {
	var out []overlay.Node
	for _, o := range c.nodes {
		if o != n {
			out = append(out, overlay.Node{Name: o.name, IP: o.ip, PodCIDR: o.podCIDR, Data: o.data})
		}
	}
	return out
}

func (c *cluster) syncAll() []error {
	var errs []error
	for _, n := range c.nodes {
		if err := n.backend.Sync(context.Background(), c.peersOf(n)); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// addPods attaches one pod per node through the real podnet-cni, with the
// node's pod MTU and the cluster CIDR as nonMasqueradeCIDRs, as the agent
// writes the conflist.
func (c *cluster) addPods() {
	c.t.Helper()
	dataDir := c.t.TempDir()
	for _, n := range c.nodes {
		conf, _ := json.Marshal(map[string]any{
			"cniVersion": "1.1.0", "name": "podnet-overlay-test",
			"plugins": []any{map[string]any{
				"type": "podnet-cni", "bridge": "pnbr0", "subnet": n.podCIDR.String(),
				"ipMasq": true, "hairpinMode": true, "mtu": n.mtu,
				"nonMasqueradeCIDRs": []string{"10.244.0.0/16"},
				"dataDir":            dataDir + "/" + n.name,
			}},
		})
		l, err := libcni.ConfListFromBytes(conf)
		if err != nil {
			c.t.Fatal(err)
		}
		var podPath string
		n.pod, podPath = testutil.NewNS(c.t)
		rt := &libcni.RuntimeConf{ContainerID: "c" + testutil.UniqueName("", 20), NetNS: podPath, IfName: "eth0"}
		var res *current.Result
		err = netns.Do(n.path, func() error {
			r, err := c.cni.AddNetworkList(context.Background(), l, rt)
			if err != nil {
				return err
			}
			res, err = current.NewResultFromResult(r)
			return err
		})
		if err != nil {
			c.t.Fatalf("node %s: CNI ADD: %v", n.name, err)
		}
		n.podIP = res.IPs[0].Address.IP.String()
		c.t.Cleanup(func() {
			_ = netns.Do(n.path, func() error { return c.cni.DelNetworkList(context.Background(), l, rt) })
		})
	}
}

func inNS(ns string, name string, args ...string) (string, error) {
	out, err := testutil.InNS(ns, name, args...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func mustInNS(t *testing.T, ns string, name string, args ...string) string {
	t.Helper()
	out, err := inNS(ns, name, args...)
	if err != nil {
		t.Fatalf("in %s: %s %s: %v\n%s", ns, name, strings.Join(args, " "), err, out)
	}
	return out
}

// serve starts a socat TCP server in ns running cmd per connection.
func serve(t *testing.T, ns string, port int, cmd string) {
	t.Helper()
	p := testutil.InNS(ns, "socat", fmt.Sprintf("TCP-LISTEN:%d,fork,reuseaddr", port), "SYSTEM:"+cmd)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Process.Kill(); _ = p.Wait() })
	for i := 0; i < 300; i++ {
		if out, _ := inNS(ns, "ss", "-ltnH", fmt.Sprintf("sport = :%d", port)); out != "" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("listener on %d in %s did not start", port, ns)
}

// checkPodToPod asserts that every pod reaches every other pod: ping, a
// full-size ping with DF set, TCP where the receiver sees the sender's pod
// IP, and a 1 MB TCP transfer.
func (c *cluster) checkPodToPod(t *testing.T) {
	for _, dst := range c.nodes {
		serve(t, dst.pod, 7000, `echo hello $SOCAT_PEERADDR`)
		serve(t, dst.pod, 7001, `wc -c`)
	}
	for _, src := range c.nodes {
		for _, dst := range c.nodes {
			if src == dst {
				continue
			}
			t.Run(src.name+"_to_"+dst.name, func(t *testing.T) {
				mustInNS(t, src.pod, "ping", "-c1", "-W2", dst.podIP)
				// The largest packet the pod's MTU allows, DF set: it
				// must cross the underlay whole.
				mustInNS(t, src.pod, "ping", "-c1", "-W2", "-M", "do", "-s", fmt.Sprint(src.mtu-28), dst.podIP)
				out := mustInNS(t, src.pod, "socat", "-T3", "-", fmt.Sprintf("TCP:%s:7000,connect-timeout=3", dst.podIP))
				if out != "hello "+src.podIP {
					t.Fatalf("receiver saw %q, want the sender's pod IP %s (no NAT)", out, src.podIP)
				}
				// TCP sets DF (path MTU discovery): 1 MB of full-size
				// segments.
				out = mustInNS(t, src.pod, "sh", "-c", fmt.Sprintf("head -c 1048576 /dev/zero | socat -t5 -T10 - TCP:%s:7001,connect-timeout=3", dst.podIP))
				if out != "1048576" {
					t.Fatalf("1 MB transfer: the receiver counted %q bytes", out)
				}
			})
		}
	}
}

func TestVXLANThreeNodes(t *testing.T) {
	c := newCluster(t)
	for i := 1; i <= 3; i++ {
		c.addNode(i, fmt.Sprintf("192.168.250.1%d", i), "250", "")
	}
	c.setup(api.BackendVXLAN)
	start := time.Now()
	if errs := c.syncAll(); len(errs) > 0 {
		t.Fatalf("Sync: %v", errs)
	}
	t.Logf("first Sync of 3 nodes (2 peers each) through netlink: %v", time.Since(start))
	n1 := c.nodes[0]
	if n1.mtu != 1450 {
		t.Fatalf("pod MTU %d, want 1450", n1.mtu)
	}
	// The kernel state the design note promises.
	routes := mustInNS(t, n1.ns, "ip", "route", "show", "proto", "110")
	for _, want := range []string{"10.244.2.0/24 via 10.244.2.0 dev podnet.vxlan onlink", "10.244.3.0/24 via 10.244.3.0 dev podnet.vxlan onlink"} {
		if !strings.Contains(routes, want) {
			t.Errorf("routes lack %q:\n%s", want, routes)
		}
	}
	neigh := mustInNS(t, n1.ns, "ip", "neigh", "show", "dev", "podnet.vxlan")
	if !strings.Contains(neigh, "10.244.2.0 lladdr "+c.nodes[1].data.VTEPMAC+" PERMANENT") {
		t.Errorf("neighbours:\n%s", neigh)
	}
	fdb := mustInNS(t, n1.ns, "bridge", "fdb", "show", "dev", "podnet.vxlan")
	if !strings.Contains(fdb, c.nodes[2].data.VTEPMAC+" dst 192.168.250.13 self permanent") {
		t.Errorf("fdb:\n%s", fdb)
	}
	link := mustInNS(t, n1.ns, "ip", "-d", "link", "show", "podnet.vxlan")
	for _, want := range []string{"mtu 1450", "vxlan id 1 local 192.168.250.11 dev pneth0", "dstport 4789", "nolearning", "link/ether " + n1.data.VTEPMAC} {
		if !strings.Contains(link, want) {
			t.Errorf("podnet.vxlan lacks %q:\n%s", want, link)
		}
	}
	// A second Sync changes nothing in the kernel.
	before := mustInNS(t, n1.ns, "sh", "-c", "ip route; ip neigh show dev podnet.vxlan; bridge fdb show dev podnet.vxlan")
	if errs := c.syncAll(); len(errs) > 0 {
		t.Fatal(errs)
	}
	if after := mustInNS(t, n1.ns, "sh", "-c", "ip route; ip neigh show dev podnet.vxlan; bridge fdb show dev podnet.vxlan"); after != before {
		t.Fatalf("second Sync changed the kernel:\n%s\nwas\n%s", after, before)
	}
	c.addPods()
	c.checkPodToPod(t)

	// A restarted agent: a new backend over the same kernel and state dir
	// publishes the same VTEP MAC and its Sync changes nothing.
	state := "ip -d link show podnet.vxlan; ip route; ip neigh show dev podnet.vxlan; bridge fdb show dev podnet.vxlan"
	before = mustInNS(t, n1.ns, "sh", "-c", state)
	b, err := overlay.New(api.BackendVXLAN, overlay.Config{Self: overlay.Node{Name: n1.name, IP: n1.ip, PodCIDR: n1.podCIDR}, StateDir: n1.stateDir, Kernel: n1.kernel})
	if err != nil {
		t.Fatal(err)
	}
	data, _, err := b.Setup(context.Background())
	if err != nil || data != n1.data {
		t.Fatalf("restarted Setup: %v, %v; want %v", data, err, n1.data)
	}
	if err := b.Sync(context.Background(), c.peersOf(n1)); err != nil {
		t.Fatal(err)
	}
	if after := mustInNS(t, n1.ns, "sh", "-c", state); after != before {
		t.Fatalf("restart changed the kernel:\n%s\nwas\n%s", after, before)
	}

	// n3 leaves: its route, FDB entry and neighbour go from n1.
	if err := n1.backend.Sync(context.Background(), c.peersOf(n1)[:1]); err != nil {
		t.Fatal(err)
	}
	if out := mustInNS(t, n1.ns, "sh", "-c", "ip route show proto 110; ip neigh show dev podnet.vxlan; bridge fdb show dev podnet.vxlan"); strings.Contains(out, "10.244.3.0") || strings.Contains(out, c.nodes[2].data.VTEPMAC) {
		t.Fatalf("n3 left but n1 still has:\n%s", out)
	}
	if _, err := inNS(c.nodes[0].pod, "ping", "-c1", "-W1", c.nodes[2].podIP); err == nil {
		t.Fatal("n1's pod still reaches n3's pod after n3 left")
	}
	mustInNS(t, c.nodes[0].pod, "ping", "-c1", "-W2", c.nodes[1].podIP)
}

func TestHostGWThreeNodes(t *testing.T) {
	c := newCluster(t)
	for i := 1; i <= 3; i++ {
		c.addNode(i, fmt.Sprintf("192.168.250.1%d", i), "250", "")
	}
	c.setup(api.BackendHostGW)
	if errs := c.syncAll(); len(errs) > 0 {
		t.Fatalf("Sync: %v", errs)
	}
	n1 := c.nodes[0]
	if n1.mtu != 1500 {
		t.Fatalf("pod MTU %d, want the underlay's 1500", n1.mtu)
	}
	routes := mustInNS(t, n1.ns, "ip", "route", "show", "proto", "110")
	for _, want := range []string{"10.244.2.0/24 via 192.168.250.12 dev pneth0", "10.244.3.0/24 via 192.168.250.13 dev pneth0"} {
		if !strings.Contains(routes, want) {
			t.Errorf("routes lack %q:\n%s", want, routes)
		}
	}
	c.addPods()
	c.checkPodToPod(t)
}

// Two underlay subnets joined by a router: vxlan crosses it, host-gw
// refuses the peers behind it with a clear message.
func TestTwoSubnets(t *testing.T) {
	build := func(t *testing.T) *cluster {
		c := newCluster(t)
		c.router()
		c.addNode(1, "192.168.250.11", "250", "192.168.250.254")
		c.addNode(2, "192.168.250.12", "250", "192.168.250.254")
		c.addNode(3, "192.168.251.11", "251", "192.168.251.254")
		return c
	}
	t.Run("vxlan", func(t *testing.T) {
		c := build(t)
		c.setup(api.BackendVXLAN)
		if errs := c.syncAll(); len(errs) > 0 {
			t.Fatalf("Sync: %v", errs)
		}
		c.addPods()
		c.checkPodToPod(t)
	})
	t.Run("host-gw", func(t *testing.T) {
		c := build(t)
		c.setup(api.BackendHostGW)
		n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
		err := n1.backend.Sync(context.Background(), c.peersOf(n1))
		want := "host-gw: node n3 (192.168.251.11) is not on this node's L2 segment (reached via 192.168.250.254); use the vxlan backend"
		if err == nil || err.Error() != want || !overlay.IsSegmentError(err) {
			t.Fatalf("n1 Sync: %v\nwant: %s", err, want)
		}
		err = n3.backend.Sync(context.Background(), c.peersOf(n3))
		if err == nil || !strings.Contains(err.Error(), "host-gw: node n1 (192.168.250.11) is not on this node's L2 segment (reached via 192.168.251.254)") ||
			!strings.Contains(err.Error(), "node n2 (192.168.250.12)") {
			t.Fatalf("n3 Sync: %v", err)
		}
		// The peer on n1's segment is still programmed.
		if err := n2.backend.Sync(context.Background(), c.peersOf(n2)); err == nil {
			t.Fatal("n2 Sync accepted n3 behind the router")
		}
		c.addPods()
		mustInNS(t, n1.pod, "ping", "-c1", "-W2", n2.podIP)
		if out := mustInNS(t, n1.ns, "ip", "route", "show", "proto", "110"); strings.Contains(out, "10.244.3.0") {
			t.Fatalf("a route to the refused peer:\n%s", out)
		}
	})
}
