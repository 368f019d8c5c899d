package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/agent"
	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/cluster"
	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/sandbox"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	corev1 "k8s.io/api/core/v1"
)

// TestMain points every podnet command of this package at an empty context
// file, so a developer's own clusters (~/.podnet/config) never receive the
// single-node tests' commands. Cluster tests pass their own file.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "podnet-e2e-config-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv(cluster.ConfigEnv, filepath.Join(dir, "config"))
	os.Unsetenv(cluster.ClusterEnv)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// localCluster is a `podnet cluster create` cluster with a context file and
// cluster directory of its own (never ~/.podnet or /var/lib/podnet).
type localCluster struct {
	t      *testing.T
	bin    string
	name   string
	config string
	parent string
	rec    *cluster.Record
}

type clusterOpts struct {
	nodes      int
	backend    string
	twoSubnets bool
	// externalEtcd: the store is a 3-member Debian etcd cluster (always,
	// in the external-etcd pass).
	externalEtcd bool
	// allowFail: return the failed cluster (rec nil) instead of failing.
	allowFail bool
	// args are more `cluster create` flags.
	args []string
}

// externalEtcdPass: PODNET_TEST_ETCD=external, the second pass of `make
// test`, runs every cluster of this package on an external 3-member etcd
// (`cluster create --external-etcd`) instead of the server's embedded one.
func externalEtcdPass() bool { return os.Getenv(testutil.EnvTestEtcd) == "external" }

// newLocalCluster creates a cluster and registers its deletion, and the
// check that nothing of it is left, in t.Cleanup.
func newLocalCluster(t *testing.T, o clusterOpts) (*localCluster, string, error) {
	t.Helper()
	testutil.RequireRoot(t)
	tmp := t.TempDir()
	c := &localCluster{
		t: t, bin: testutil.Binaries(t), name: testutil.UniqueName("pn", 10),
		config: filepath.Join(tmp, "config"), parent: filepath.Join(tmp, "clusters"),
	}
	args := []string{"cluster", "create", "--name", c.name, "--nodes", strconv.Itoa(o.nodes), "--backend", o.backend, "--timeout", "60s"}
	if o.twoSubnets {
		args = append(args, "--two-subnets")
	}
	args = append(args, o.args...)
	if externalEtcdPass() {
		o.externalEtcd = true
	}
	if o.externalEtcd {
		testutil.EtcdBinary(t) // skips without Debian's etcd-server (fails under CI=true)
		args = append(args, "--external-etcd")
	}
	t.Cleanup(c.delete)
	start := time.Now()
	out, err := c.podnet(args...)
	if err != nil {
		if o.allowFail {
			return c, out, err
		}
		t.Fatalf("podnet %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("cluster %s (%d nodes, %s, external etcd %v) created in %s", c.name, o.nodes, o.backend, o.externalEtcd, time.Since(start).Round(time.Millisecond))
	c.rec, err = cluster.LoadRecord(filepath.Join(c.parent, c.name))
	if err != nil {
		t.Fatal(err)
	}
	return c, out, nil
}

func (c *localCluster) env() []string {
	return append(os.Environ(), cluster.ConfigEnv+"="+c.config, cluster.DirEnv+"="+c.parent)
}

// podnet runs the CLI in the root namespace against this cluster.
func (c *localCluster) podnet(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(c.bin, "podnet"), args...)
	cmd.Env = c.env()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *localCluster) must(args ...string) string {
	c.t.Helper()
	out, err := c.podnet(args...)
	if err != nil {
		c.t.Fatalf("podnet %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *localCluster) node(i int) cluster.Host { return c.rec.Topology.Nodes()[i-1] }

// run starts a pod on node i (from 1) and waits until it runs.
func (c *localCluster) run(name string, i int, extra []string, command ...string) *corev1.Pod {
	c.t.Helper()
	args := append([]string{"run", name, "--node", c.node(i).Name, "--wait"}, extra...)
	c.must(append(append(args, "--"), command...)...)
	return c.pod(name)
}

func (c *localCluster) pod(name string) *corev1.Pod {
	c.t.Helper()
	var p corev1.Pod
	out := c.must("get", "pod", name, "-o", "json")
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		c.t.Fatalf("decode pod %s: %v\n%s", name, err, out)
	}
	return &p
}

// hostExec runs a command in one of the cluster's hosts.
func (c *localCluster) hostExec(host string, args ...string) (string, error) {
	return c.podnet(append([]string{"cluster", "exec", host, "--"}, args...)...)
}

// podNamespaces reads the agents' pod records, as delete does.
func (c *localCluster) podNamespaces() []string {
	recs, _ := filepath.Glob(filepath.Join(c.parent, c.name, "agent", "*", "pods", "*", "pod.json"))
	var out []string
	for _, p := range recs {
		b, _ := os.ReadFile(p)
		var r struct {
			NetNS string `json:"netns"`
		}
		if json.Unmarshal(b, &r) == nil && r.NetNS != "" {
			out = append(out, r.NetNS)
		}
	}
	return out
}

// delete removes the cluster and checks that nothing of it is left.
func (c *localCluster) delete() {
	t := c.t
	if t.Failed() && c.rec != nil {
		for _, p := range c.rec.Etcd {
			if b, err := os.ReadFile(p.Log); err == nil {
				t.Logf("---- %s log:\n%s", p.Name, lastLines(string(b), 20))
			}
		}
		for _, p := range append([]cluster.Proc{c.rec.Server}, c.rec.Agents...) {
			if b, err := os.ReadFile(p.Log); err == nil {
				t.Logf("---- %s log:\n%s", p.Name, lastLines(string(b), 40))
			}
		}
	}
	pods := c.podNamespaces()
	snap := c.snapshot(pods)
	if out, err := c.podnet("cluster", "delete", "--name", c.name); err != nil {
		t.Errorf("cluster delete: %v\n%s", err, out)
	}
	c.assertGone(pods, snap)
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// assertGone: no namespace, /etc/netns entry, process, file or context
// entry of the cluster is left. Processes are looked for twice: through
// cluster.ProcessMatcher (podnet server, agents, shims, etcd), and
// independently of it (procs_test.go): every process of snap (those in the
// cluster's or its pods' namespaces, or writing a container log, taken
// before the delete), anything in those namespaces now, anything writing
// a container log of the cluster.
func (c *localCluster) assertGone(pods []string, snap snapshot) {
	t := c.t
	t.Helper()
	ents, _ := os.ReadDir(netns.Dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), cluster.NetNSPrefix(c.name)) {
			t.Errorf("left behind: namespace %s", e.Name())
		}
	}
	for _, ns := range pods {
		if netns.Exists(ns) {
			t.Errorf("left behind: pod namespace %s", ns)
		}
		if exists(filepath.Join("/etc/netns", ns)) {
			t.Errorf("left behind: /etc/netns/%s", ns)
		}
	}
	dir := filepath.Join(c.parent, c.name)
	if exists(dir) {
		t.Errorf("left behind: %s", dir)
	}
	// podnet processes and etcd members pointing into the directory.
	if pids := (cluster.ProcessMatcher{Dir: dir}).Find(); len(pids) > 0 {
		t.Errorf("left behind: processes %v", pids)
	}
	// Delete may take a moment to reap; a process still alive after 10s
	// is a leak.
	var left []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if left = c.leftProcesses(snap); len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, p := range left {
		t.Errorf("left behind: process %s", p)
	}
	cfg, err := cluster.LoadConfig(c.config)
	if err != nil || cfg.Get(c.name) != nil {
		t.Errorf("context entry left behind (%v)", err)
	}
}

// pingable waits until from (a pod) pings ip.
func (c *localCluster) pingable(from, ip string) {
	c.t.Helper()
	eventually(c.t, from+" pings "+ip, 10*time.Second, func() (bool, string) {
		out, err := c.podnet("exec", from, "--", "ping", "-c1", "-W1", ip)
		return err == nil, out
	})
}

// TestClusterDatapath: in a 3-node cluster, with vxlan and with host-gw,
// pods on different nodes reach each other by ping and TCP, the receiver
// sees the sender's pod IP, and a 1 MB transfer and full-size packets with
// DF set pass.
func TestClusterDatapath(t *testing.T) {
	for _, backend := range []string{"vxlan", "host-gw"} {
		t.Run(backend, func(t *testing.T) {
			c, _, _ := newLocalCluster(t, clusterOpts{nodes: 3, backend: backend})
			checkDatapath(t, c)
		})
	}
}

// checkDatapath runs the datapath checks on a cluster of 3 nodes or more:
// ping both ways, TCP keeping the sender's pod IP, 1 MB each way and
// full-size DF packets between pods on different nodes, and a host-network
// pod's exec entering its node's namespace through the Node's annotation.
func checkDatapath(t *testing.T, c *localCluster) {
	echo := filepath.Join(c.bin, "podnet")
	web := c.run("web", 1, nil, echo, "echo-server", "--listen", ":8080", "--name", "web")
	client := c.run("client", 2, nil, "sleep", "infinity")
	// sink answers with the byte count it received; bulk sends 1 MB.
	sink := c.run("sink", 3, nil, "socat", "TCP-LISTEN:9000,reuseaddr,fork", "SYSTEM:wc -c")
	bulk := c.run("bulk", 3, nil, "socat", "TCP-LISTEN:9001,reuseaddr,fork", "SYSTEM:head -c 1048576 /dev/zero")
	for _, p := range []*corev1.Pod{web, client, sink, bulk} {
		if p.Status.PodIP == "" {
			t.Fatalf("pod %s has no IP", p.Name)
		}
	}
	if web.Spec.NodeName == client.Spec.NodeName {
		t.Fatalf("web and client on one node")
	}

	t.Run("ping both ways", func(t *testing.T) {
		c.pingable("client", web.Status.PodIP)
		check(t)(c.podnet("exec", "web", "--", "ping", "-c1", "-W2", client.Status.PodIP))
		check(t)(c.podnet("exec", "client", "--", "ping", "-c1", "-W2", sink.Status.PodIP))
	})
	t.Run("TCP: the receiver sees the sender's pod IP", func(t *testing.T) {
		out := check(t)(c.podnet("exec", "client", "--", "curl", "-sS", "-m5", "http://"+web.Status.PodIP+":8080/x"))
		if !strings.Contains(out, "client: "+client.Status.PodIP+"\n") {
			t.Fatalf("web saw another address than the client's %s:\n%s", client.Status.PodIP, out)
		}
	})
	t.Run("1 MB across nodes, full-size packets with DF", func(t *testing.T) {
		out := check(t)(c.podnet("exec", "client", "--", "sh", "-c",
			"socat -u TCP:"+bulk.Status.PodIP+":9001 - | wc -c"))
		if strings.TrimSpace(out) != "1048576" {
			t.Fatalf("received %q bytes, want 1048576", strings.TrimSpace(out))
		}
		out = check(t)(c.podnet("exec", "client", "--", "sh", "-c",
			"head -c 1048576 /dev/zero | socat -t5 - TCP:"+sink.Status.PodIP+":9000"))
		if strings.TrimSpace(out) != "1048576" {
			t.Fatalf("sink received %q bytes, want 1048576", strings.TrimSpace(out))
		}
		mtu := podMTU(t, c, "client")
		// ping -M do sets DF; the payload fills the pod's MTU.
		check(t)(c.podnet("exec", "client", "--", "ping", "-c2", "-W2", "-M", "do", "-s", strconv.Itoa(mtu-28), sink.Status.PodIP))
		if out, err := c.podnet("exec", "client", "--", "ping", "-c1", "-W1", "-M", "do", "-s", strconv.Itoa(mtu-27), sink.Status.PodIP); err == nil {
			t.Errorf("a packet over the pod MTU %d with DF passed:\n%s", mtu, out)
		}
	})
	t.Run("host-network pod: exec enters the node's namespace named by the Node", func(t *testing.T) {
		n := c.node(2)
		var node corev1.Node
		if err := json.Unmarshal([]byte(c.must("get", "node", n.Name, "-o", "json")), &node); err != nil {
			t.Fatal(err)
		}
		if got := node.Annotations[api.AnnotationNetNS]; got != n.NetNS {
			t.Fatalf("node %s: annotation %s = %q, want %q", n.Name, api.AnnotationNetNS, got, n.NetNS)
		}
		c.run("hostpod", 2, []string{"--network", "host"}, "sleep", "infinity")
		// A context entry without the node list (as for a cluster of real
		// hosts): only the Node's annotation says where the node runs.
		bare := filepath.Join(t.TempDir(), "config")
		if err := cluster.UpdateConfig(bare, func(cfg *cluster.Config) error {
			cfg.Put(cluster.Entry{Name: c.name, EtcdEndpoints: c.rec.Topology.EtcdEndpoints(), NetNS: c.rec.Server.NetNS})
			cfg.CurrentCluster = c.name
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(filepath.Join(c.bin, "podnet"), "exec", "hostpod", "--", "ip", "-o", "addr")
		cmd.Env = append(c.env(), cluster.ConfigEnv+"="+bare)
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), " "+n.IP().String()+"/") {
			t.Fatalf("exec of a host-network pod must run in %s (%s): %v\n%s", n.NetNS, n.IP(), err, out)
		}
	})
}

func podMTU(t *testing.T, c *localCluster, pod string) int {
	t.Helper()
	out := check(t)(c.podnet("exec", pod, "--", "cat", "/sys/class/net/eth0/mtu"))
	mtu, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("pod MTU %q: %v", out, err)
	}
	return mtu
}

// outsideSees runs a one-shot listener on the outside host and returns the
// peer address it saw when pod connects to it.
func outsideSees(t *testing.T, c *localCluster, pod string, port int) string {
	t.Helper()
	outsideIP := c.rec.Topology.Host(cluster.RoleOutside).IP().String()
	ln := make(chan string, 1)
	go func() {
		out, _ := c.hostExec("outside", "socat", "-T5", fmt.Sprintf("TCP-LISTEN:%d,reuseaddr", port), "SYSTEM:echo $SOCAT_PEERADDR")
		ln <- out
	}()
	var out string
	var err error
	for i := 0; i < 50; i++ {
		if out, err = c.podnet("exec", pod, "--", "socat", "-T3", "-", fmt.Sprintf("TCP:%s:%d", outsideIP, port)); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	<-ln
	if err != nil {
		t.Fatalf("%s -> outside: %v\n%s", pod, err, out)
	}
	return strings.TrimSpace(out)
}

// TestClusterTwoSubnets: nodes on two subnets joined by a router. Pod
// egress to the outside host is masqueraded to the node's underlay
// address, from either subnet; vxlan carries pods across the router.
func TestClusterTwoSubnets(t *testing.T) {
	c, _, _ := newLocalCluster(t, clusterOpts{nodes: 3, backend: "vxlan", twoSubnets: true})
	n1, n2 := c.node(1), c.node(2)
	if n1.IP().String() != "192.168.250.11" || n2.IP().String() != "192.168.251.12" {
		t.Fatalf("node addresses %s %s", n1.IP(), n2.IP())
	}
	a := c.run("a", 1, nil, "sleep", "infinity")
	b := c.run("b", 2, nil, filepath.Join(c.bin, "podnet"), "echo-server", "--listen", ":8080", "--name", "b")

	t.Run("egress is masqueraded to the node's address", func(t *testing.T) {
		if got := outsideSees(t, c, "a", 7001); got != n1.IP().String() {
			t.Errorf("outside saw %q from a pod on %s, want %s", got, n1.Name, n1.IP())
		}
		if got := outsideSees(t, c, "b", 7002); got != n2.IP().String() {
			t.Errorf("outside saw %q from a pod on %s (other subnet), want %s", got, n2.Name, n2.IP())
		}
	})
	t.Run("vxlan across the router", func(t *testing.T) {
		c.pingable("a", b.Status.PodIP)
		out := check(t)(c.podnet("exec", "a", "--", "curl", "-sS", "-m5", "http://"+b.Status.PodIP+":8080/"))
		if !strings.Contains(out, "client: "+a.Status.PodIP+"\n") {
			t.Fatalf("b saw another address than a's %s:\n%s", a.Status.PodIP, out)
		}
		// The path really crosses the router: TTL drops by one on the
		// underlay, and n2's route to subnet A goes through it.
		routes := check(t)(c.hostExec(n2.Name, "ip", "route"))
		if !strings.Contains(routes, "192.168.250.0/24 via 192.168.251.1") {
			t.Errorf("n2 routes:\n%s", routes)
		}
	})
}

// TestClusterHostGWRefusesTwoSubnets: host-gw needs one L2 segment; nodes
// behind a router are refused, and the node says so in its
// NetworkUnavailable condition (reason NotOnL2Segment).
func TestClusterHostGWRefusesTwoSubnets(t *testing.T) {
	c, out, err := newLocalCluster(t, clusterOpts{nodes: 2, backend: "host-gw", twoSubnets: true, allowFail: true})
	if err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	var said string
	eventually(t, "a node reports the host-gw refusal", 10*time.Second, func() (bool, string) {
		for _, n := range c.rec.Topology.Nodes() {
			var node corev1.Node
			if json.Unmarshal([]byte(c.must("get", "node", n.Name, "-o", "json")), &node) != nil {
				continue
			}
			for _, cond := range node.Status.Conditions {
				if cond.Type == corev1.NodeNetworkUnavailable && cond.Status == corev1.ConditionTrue && cond.Reason == "NotOnL2Segment" {
					said = n.Name + ": " + cond.Message
					return true, ""
				}
			}
		}
		return false, c.must("describe", "node", c.node(2).Name)
	})
	t.Logf("refusal: %s", said)
	if !strings.Contains(said, "host-gw") {
		t.Errorf("the message should name the backend: %s", said)
	}
}

// kernelState is a node's datapath as the kernel has it. Dynamic entries
// (learned FDB entries, ARP cache states, counters) are left out: they
// change with traffic, not with reconciling.
func kernelState(t *testing.T, c *localCluster, node string) string {
	t.Helper()
	// IPv6 duplicate address detection adds link-local routes a second or
	// two after a link comes up: wait for it to finish everywhere.
	eventually(t, "DAD done on "+node, 10*time.Second, func() (bool, string) {
		out, err := c.hostExec(node, "ip", "-o", "addr", "show", "tentative")
		return err == nil && strings.TrimSpace(out) == "", out
	})
	var b strings.Builder
	for _, cmd := range [][]string{
		{"ip", "-o", "link", "show"},
		{"ip", "-o", "addr", "show"},
		{"ip", "route", "show", "table", "all"},
		{"ip", "neigh", "show", "nud", "permanent"},
		{"bridge", "fdb", "show"},
		{"nft", "list", "table", "inet", "podnet"},
	} {
		out, err := c.hostExec(node, cmd...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", cmd, err, out)
		}
		fmt.Fprintf(&b, "## %s\n", strings.Join(cmd, " "))
		var lines []string
		for _, l := range strings.Split(out, "\n") {
			if cmd[0] == "bridge" && !strings.Contains(l, "permanent") && !strings.Contains(l, "static") {
				continue // learned entries age
			}
			lines = append(lines, counterRE.ReplaceAllString(l, "counter"))
		}
		// Dumps list hash tables in no fixed order: compare as sets.
		sort.Strings(lines)
		b.WriteString(strings.Join(lines, "\n") + "\n")
	}
	return b.String()
}

var counterRE = regexp.MustCompile(`counter packets \d+ bytes \d+`)

// conn is a long-lived TCP connection from a pod, driven line by line.
type conn struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

func (c *localCluster) dial(pod, addr string) *conn {
	c.t.Helper()
	cmd := exec.Command(filepath.Join(c.bin, "podnet"), "exec", pod, "--", "socat", "-", "TCP:"+addr)
	cmd.Env = c.env()
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	k := &conn{cmd: cmd, in: in, out: bufio.NewReader(out)}
	c.t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	return k
}

func (k *conn) roundTrip(t *testing.T, msg string) {
	t.Helper()
	if _, err := io.WriteString(k.in, msg+"\n"); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got := make(chan string, 1)
	go func() { l, _ := k.out.ReadString('\n'); got <- l }()
	select {
	case l := <-got:
		if strings.TrimSpace(l) != msg {
			t.Fatalf("echo: got %q, want %q (connection broken?)", l, msg)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no echo of %q within 5s: the connection is stuck", msg)
	}
}

// TestClusterAgentKill9: kill -9 of a node's agent, then a restart with the
// same command line: a long-lived TCP connection between pods on two nodes
// survives; what was broken on the node while its agent was down (the
// route to a peer's pods, a pod's nftables element) is repaired; the agent
// holds a new node lease; and then the node's kernel state equals the state
// before. An agent that restarts without reconciling fails: nothing else
// puts the route and the element back.
func TestClusterAgentKill9(t *testing.T) {
	c, _, _ := newLocalCluster(t, clusterOpts{nodes: 3, backend: "vxlan"})
	srv := c.run("echo", 1, nil, "socat", "TCP-LISTEN:9000,reuseaddr,fork", "EXEC:cat")
	client := c.run("client", 2, nil, "sleep", "infinity")
	c.pingable("client", srv.Status.PodIP)
	k := c.dial("client", srv.Status.PodIP+":9000")
	k.roundTrip(t, "before")
	// n3 carries none of the test's traffic: its route can go while the
	// connection between n1 and n2 keeps talking.
	peer := c.node(3)
	peerCIDR := c.nodeObject(peer.Name).Spec.PodCIDR
	if peerCIDR == "" {
		t.Fatalf("node %s has no pod CIDR", peer.Name)
	}
	podOn := map[int]*corev1.Pod{1: srv, 2: client}

	for _, victim := range []int{2, 1} { // the client's node, then the server's
		node := c.node(victim)
		pod := podOn[victim]
		before := kernelState(t, c, node.Name)
		routeSays := func() string {
			out, _ := c.hostExec(node.Name, "ip", "route", "show", peerCIDR)
			return strings.TrimSpace(out)
		}
		elemSays := func() string {
			out, _ := c.hostExec(node.Name, "nft", "list", "set", "inet", "podnet", "masq-src4")
			return out
		}
		route := routeSays()
		if !strings.Contains(route, "dev podnet.vxlan") || !strings.Contains(elemSays(), pod.Status.PodIP) {
			t.Fatalf("%s before the kill: route to %s %q, masq-src4:\n%s", node.Name, peerCIDR, route, elemSays())
		}
		lease := c.nodeLease(node.Name)
		if lease == 0 {
			t.Fatalf("node %s holds no lease", node.Name)
		}
		a := c.rec.Agent(node.Name)
		pid := a.PID()
		if pid == 0 {
			t.Fatalf("agent of %s not running", node.Name)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, "agent gone", 5*time.Second, func() (bool, string) { return a.PID() == 0, "" })
		k.roundTrip(t, "agent of "+node.Name+" dead")

		// Break the node's datapath while no agent runs.
		check(t)(c.hostExec(node.Name, "ip", "route", "del", peerCIDR))
		check(t)(c.hostExec(node.Name, "nft", "delete", "element", "inet", "podnet", "masq-src4", "{ "+pod.Status.PodIP+" }"))
		if routeSays() != "" || strings.Contains(elemSays(), pod.Status.PodIP) {
			t.Fatalf("could not break %s: route %q, masq-src4:\n%s", node.Name, routeSays(), elemSays())
		}
		k.roundTrip(t, "datapath of "+node.Name+" broken")

		if _, err := a.Start(); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the restarted agent of "+node.Name+" repairs the peer route and the pod's element", 20*time.Second, func() (bool, string) {
			r, e := routeSays(), elemSays()
			return r == route && strings.Contains(e, pod.Status.PodIP), fmt.Sprintf("route %q (want %q), masq-src4:\n%s", r, route, e)
		})
		eventually(t, "the restarted agent of "+node.Name+" holds a new lease", 20*time.Second, func() (bool, string) {
			l := c.nodeLease(node.Name)
			return l != 0 && l != lease, fmt.Sprintf("lease %x (old %x)", l, lease)
		})
		eventually(t, node.Name+" Ready", 15*time.Second, func() (bool, string) {
			out, _ := c.podnet("get", "node", node.Name)
			return strings.Contains(out, " Ready "), out
		})
		if after := kernelState(t, c, node.Name); after != before {
			t.Fatalf("kernel state of %s after the restart is not what it was:\n%s\n==== before:\n%s\n==== after:\n%s", node.Name, diffLines(before, after), before, after)
		}
		k.roundTrip(t, "after restart of "+node.Name)
	}
}

// nodeObject reads a Node through the CLI.
func (c *localCluster) nodeObject(name string) *corev1.Node {
	c.t.Helper()
	var n corev1.Node
	if err := json.Unmarshal([]byte(c.must("get", "node", name, "-o", "json")), &n); err != nil {
		c.t.Fatal(err)
	}
	return &n
}

// nodeLease returns the etcd lease ID of the node's lease key (0 if none):
// each agent start grants a new one.
func (c *localCluster) nodeLease(node string) int64 {
	c.t.Helper()
	cli, err := store.Connect(c.rec.StoreConfig())
	if err != nil {
		c.t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, agent.NodeLeasePrefix+node)
	if err != nil || len(resp.Kvs) == 0 {
		return 0
	}
	return resp.Kvs[0].Lease
}

// diffLines lists the lines only in a and only in b.
func diffLines(a, b string) string {
	in := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[l]++
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for l, n := range ma {
		if mb[l] < n {
			out = append(out, "- "+l)
		}
	}
	for l, n := range mb {
		if ma[l] < n {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// TestClusterStoreOutage: the store stopped for 30s. Pods keep talking
// across nodes throughout; agents reconnect on their own; a pod created
// afterwards is reachable across nodes.
func TestClusterStoreOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("30s outage")
	}
	c, _, _ := newLocalCluster(t, clusterOpts{nodes: 3, backend: "vxlan"})
	checkStoreOutage(t, c, "", 30*time.Second)
}

// storeProcs are the processes holding the cluster's store: the server
// (embedded etcd) or every external etcd member.
func (c *localCluster) storeProcs() []*cluster.Proc {
	if len(c.rec.Etcd) == 0 {
		return []*cluster.Proc{&c.rec.Server}
	}
	var out []*cluster.Proc
	for i := range c.rec.Etcd {
		out = append(out, &c.rec.Etcd[i])
	}
	return out
}

// checkStoreOutage stops the whole store for outage. Pods (named with
// prefix) keep talking across nodes throughout, by new connections and a
// long-lived one; no agent dies (nor, with an external etcd, the server);
// after the store is back agents reconnect on their own, every node is
// Ready and a pod created afterwards on each node is reachable.
func checkStoreOutage(t *testing.T, c *localCluster, prefix string, outage time.Duration) {
	web := c.run(prefix+"web", 1, nil, filepath.Join(c.bin, "podnet"), "echo-server", "--listen", ":8080", "--name", "web")
	echo := c.run(prefix+"echo", 1, nil, "socat", "TCP-LISTEN:9000,reuseaddr,fork", "EXEC:cat")
	c.run(prefix+"client", 2, nil, "sleep", "infinity")
	c.pingable(prefix+"client", web.Status.PodIP)
	k := c.dial(prefix+"client", echo.Status.PodIP+":9000")
	k.roundTrip(t, "before")
	// talk opens a new connection; k is the long-lived one. `podnet exec`
	// needs the store, so it enters the pod's namespace directly.
	clientNS := netns.Path(sandbox.NetNSName(c.pod(prefix + "client").UID))
	talk := func(what string) {
		t.Helper()
		out, err := inNS(clientNS, "curl", "-sS", "-m3", "http://"+web.Status.PodIP+":8080/"+what)
		if err != nil || !strings.Contains(out, "hello from web") {
			t.Fatalf("%s: %v\n%s", what, err, out)
		}
	}
	talk("before")

	store := c.storeProcs()
	stopping := time.Now()
	for _, p := range store {
		if pid := p.PID(); pid == 0 {
			t.Fatalf("%s not running", p.Name)
		} else if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "store stopped", 20*time.Second, func() (bool, string) {
		for _, p := range store {
			if p.PID() != 0 {
				return false, p.Name + " still running"
			}
		}
		return true, ""
	})
	stopped := time.Now()
	t.Logf("store stopped in %s", stopped.Sub(stopping).Round(time.Millisecond))
	for time.Since(stopped) < outage {
		what := fmt.Sprintf("outage-%ds", int(time.Since(stopped).Seconds()))
		talk(what)
		k.roundTrip(t, what)
		for _, n := range c.rec.Topology.Nodes() {
			if c.rec.Agent(n.Name).PID() == 0 {
				t.Fatalf("agent of %s died during the outage", n.Name)
			}
		}
		if len(c.rec.Etcd) > 0 && c.rec.Server.PID() == 0 {
			t.Fatalf("the server died while its external etcd was down")
		}
		time.Sleep(2 * time.Second)
	}
	for _, p := range store {
		if _, err := p.Start(); err != nil {
			t.Fatal(err)
		}
	}
	back := time.Now()
	nodes := len(c.rec.Topology.Nodes())
	eventually(t, "store back and every node Ready", 60*time.Second, func() (bool, string) {
		out, err := c.podnet("get", "nodes")
		return err == nil && strings.Count(out, " Ready ") == nodes, out
	})
	t.Logf("store back after %s outage: every node Ready %s after the restart", outage, time.Since(back).Round(time.Millisecond))
	talk("after")
	k.roundTrip(t, "after")
	// Every agent reconnected and changes after the outage reach the
	// datapath: a new pod on each node (its agent must see it), reached
	// from n2.
	for i := 1; i <= nodes; i++ {
		name := fmt.Sprintf("late%d", i)
		late := c.run(prefix+name, i, nil, filepath.Join(c.bin, "podnet"), "echo-server", "--listen", ":8080", "--name", name)
		c.pingable(prefix+"client", late.Status.PodIP)
		// The server may take a moment to listen after the pod runs.
		eventually(t, "pod "+name+" created after the outage on "+c.node(i).Name+" answers", 10*time.Second, func() (bool, string) {
			out, err := c.podnet("exec", prefix+"client", "--", "curl", "-sS", "-m5", "http://"+late.Status.PodIP+":8080/")
			return err == nil && strings.Contains(out, "hello from "+name), out
		})
	}
}

// TestClusterDeleteLeavesNothing: two clusters side by side (the same
// addresses, in their own namespaces), chosen with --cluster and
// $PODNET_CLUSTER; one is deleted after its server died, leaving nothing
// and the other untouched; delete is idempotent.
func TestClusterDeleteLeavesNothing(t *testing.T) {
	a, _, _ := newLocalCluster(t, clusterOpts{nodes: 2, backend: "vxlan"})
	b := &localCluster{t: t, bin: a.bin, name: testutil.UniqueName("pn", 10), config: a.config, parent: a.parent}
	t.Cleanup(b.delete)
	bArgs := []string{"cluster", "create", "--name", b.name, "--nodes", "1", "--backend", "host-gw"}
	if externalEtcdPass() {
		bArgs = append(bArgs, "--external-etcd")
	}
	b.must(bArgs...)
	// b is current now; a is reached by name.
	out := a.must("--cluster", a.name, "get", "nodes")
	if !strings.Contains(out, a.name+"-n2") || strings.Contains(out, b.name) {
		t.Fatalf("--cluster %s get nodes:\n%s", a.name, out)
	}
	cmd := exec.Command(filepath.Join(a.bin, "podnet"), "get", "nodes")
	cmd.Env = append(a.env(), cluster.ClusterEnv+"="+a.name)
	if o, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(o), a.name+"-n1") {
		t.Fatalf("PODNET_CLUSTER=%s get nodes: %v\n%s", a.name, err, o)
	}
	if out := b.must("get", "nodes"); !strings.Contains(out, b.name+"-n1") {
		t.Fatalf("current cluster get nodes:\n%s", out)
	}
	if out := a.must("cluster", "list"); !strings.Contains(out, a.name) || !strings.Contains(out, b.name) {
		t.Fatalf("cluster list:\n%s", out)
	}

	// Pods of every mode on a, then its server dies.
	a.must("--cluster", a.name, "run", "p1", "--node", a.name+"-n1", "--wait", "--", "sleep", "infinity")
	a.must("--cluster", a.name, "run", "p2", "--node", a.name+"-n2", "--wait", "-p", "8080:8080", "--", "sleep", "infinity")
	a.must("--cluster", a.name, "run", "p3", "--node", a.name+"-n2", "--wait", "--network", "none", "--", "sleep", "infinity")
	a.must("--cluster", a.name, "run", "p4", "--node", a.name+"-n1", "--wait", "--network", "host", "--", "sleep", "infinity")
	rec, err := cluster.LoadRecord(filepath.Join(a.parent, a.name))
	if err != nil {
		t.Fatal(err)
	}
	out = a.must("--cluster", a.name, "exec", "p4", "--", "ip", "-o", "addr")
	if !strings.Contains(out, rec.Topology.Nodes()[0].IP().String()) {
		t.Errorf("exec of a host-network pod must run in its node's namespace:\n%s", out)
	}
	pods := a.podNamespaces()
	if len(pods) != 3 {
		t.Fatalf("pod namespaces %v, want 3", pods)
	}
	// The independent process check must see every pod's container,
	// the host-network one (in n1's namespace) included.
	snap := a.snapshot(pods)
	sleeps := 0
	for _, p := range snap.containers {
		if p.cmd == "sleep infinity" {
			sleeps++
		}
	}
	if sleeps != 4 {
		t.Fatalf("found %d container processes `sleep infinity` writing to the cluster's container logs, want 4 (p1-p4): %v", sleeps, snap.containers)
	}
	inNS := 0
	for _, p := range snap.inCluster {
		if p.cmd == "sleep infinity" {
			inNS++
		}
	}
	if inNS != 4 {
		t.Fatalf("found %d `sleep infinity` in the cluster's and pods' namespaces, want 4: %v", inNS, snap.inCluster)
	}
	rec.Server.Kill(syscall.SIGKILL)
	start := time.Now()
	a.must("cluster", "delete", "--name", a.name)
	t.Logf("deleted in %s", time.Since(start).Round(time.Millisecond))
	a.assertGone(pods, snap)
	a.must("cluster", "delete", "--name", a.name) // idempotent
	if out := b.must("get", "nodes"); !strings.Contains(out, " Ready ") {
		t.Fatalf("the other cluster suffered:\n%s", out)
	}
}

// TestClusterCreateFailureCleansUp: a create that fails midway (here the
// control plane cannot start) removes everything it made.
func TestClusterCreateFailureCleansUp(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.Binaries(t)
	name := testutil.UniqueName("pn", 10)
	spec := cluster.Spec{Name: name, Nodes: 2}
	if externalEtcdPass() {
		testutil.EtcdBinary(t)
		spec.EtcdMembers = 3
	}
	r, err := cluster.NewRecord(spec, t.TempDir(), filepath.Join(bin, "podnet"))
	if err != nil {
		t.Fatal(err)
	}
	r.Server.Args = append(r.Server.Args, "--no-such-flag")
	var progress strings.Builder
	err = cluster.Create(t.Context(), r, cluster.CreateOptions{Progress: &progress, Timeout: 20 * time.Second})
	if err == nil {
		cluster.Delete(r, nil)
		t.Fatal("create succeeded with a broken server")
	}
	t.Logf("create failed as it should: %v\n%s", err, progress.String())
	c := &localCluster{t: t, bin: bin, name: name, config: filepath.Join(t.TempDir(), "config"), parent: filepath.Dir(r.Dir)}
	c.assertGone(nil, snapshot{})
}
