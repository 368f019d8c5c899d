package proxy_test

// The real-kernel harness: a cluster of network namespaces the test owns.
//
//	outside (192.168.50.254, bridge "underlay")
//	   ├── node n1 (192.168.50.1)  bridge, pods 10.244.1.0/24 (podnet-cni)
//	   └── node n2 (192.168.50.2)  bridge, pods 10.244.2.0/24
//
// Each node gets exactly what `podnet agent` sets up: podnet-cni's part of
// `inet podnet` (nft.NewExec + Ensure), pods attached by the real
// podnet-cni plugin with the agent's conflist (agent.ConfList), and a
// proxy.Proxier whose knftables and conntrack run in the node namespace.
// Pods run in-process Go echo servers (listeners made inside the pod
// namespace); clients dial from inside a namespace. Deleting the
// namespaces in t.Cleanup removes every link, table and conntrack entry.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	vnetlink "github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/knftables"

	"github.com/podnet/podnet/internal/agent"
	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/nft"
	"github.com/podnet/podnet/internal/proxy"
	"github.com/podnet/podnet/internal/testutil"
)

const (
	clusterCIDR = "10.244.0.0/16"
	serviceCIDR = "10.96.0.0/12"
	outsideIP   = "192.168.50.254"
)

type cluster struct {
	t            *testing.T
	outside      string // namespace name
	outsidePath  string
	underlay     string // bridge in outside
	nodes        []*node
	servicesMu   sync.Mutex
	services     map[string]*corev1.Service
	slices       map[string]*discoveryv1.EndpointSlice
	ctx          context.Context
	clusterCIDR  netip.Prefix
	serviceCIDR  netip.Prefix
	pluginBinDir string
}

type node struct {
	c        *cluster
	name     string
	ns, path string
	ip       string
	podCIDR  string
	bridge   string
	cni      *libcni.CNIConfig
	conf     *libcni.NetworkConfigList
	ct       proxy.Conntrack
	proxier  *proxy.Proxier
}

type pod struct {
	n        *node
	name     string
	id       string
	ns, path string
	ip       string
}

// newCluster builds the outside namespace and nodes nodes (n1, n2, …).
func newCluster(t *testing.T, nodes int) *cluster {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.LookTool(t, "nft", "nftables")
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err != nil {
		testutil.SkipOrFail(t, "br_netfilter is not loaded (modprobe br_netfilter): a Service's same-node endpoints need it")
	}
	c := &cluster{t: t, ctx: context.Background(),
		services: map[string]*corev1.Service{}, slices: map[string]*discoveryv1.EndpointSlice{},
		clusterCIDR: netip.MustParsePrefix(clusterCIDR), serviceCIDR: netip.MustParsePrefix(serviceCIDR),
		pluginBinDir: testutil.Binaries(t)}
	c.outside, c.outsidePath = testutil.NewNS(t)
	c.underlay = testutil.UniqueName("pnul", 0)
	testutil.Run(t, "ip", "-n", c.outside, "link", "add", c.underlay, "type", "bridge")
	testutil.Run(t, "ip", "-n", c.outside, "addr", "add", outsideIP+"/24", "dev", c.underlay)
	testutil.Run(t, "ip", "-n", c.outside, "link", "set", c.underlay, "up")
	for i := 1; i <= nodes; i++ {
		c.addNode(i)
	}
	// Pod routes between nodes (the overlay's job in a real cluster).
	for _, a := range c.nodes {
		for _, b := range c.nodes {
			if a != b {
				testutil.Run(t, "ip", "-n", a.ns, "route", "add", b.podCIDR, "via", b.ip)
			}
		}
	}
	return c
}

func (c *cluster) addNode(i int) *node {
	t := c.t
	n := &node{c: c, name: fmt.Sprintf("n%d", i), ip: fmt.Sprintf("192.168.50.%d", i), podCIDR: fmt.Sprintf("10.244.%d.0/24", i)}
	n.ns, n.path = testutil.NewNS(t)
	up, peer := testutil.UniqueName("pnu", 0), testutil.UniqueName("pne", 0)
	testutil.Run(t, "ip", "-n", n.ns, "link", "add", up, "type", "veth", "peer", "name", peer, "netns", c.outside)
	testutil.Run(t, "ip", "-n", n.ns, "addr", "add", n.ip+"/24", "dev", up)
	testutil.Run(t, "ip", "-n", n.ns, "link", "set", up, "up")
	testutil.Run(t, "ip", "-n", c.outside, "link", "set", peer, "master", c.underlay, "up")
	// No default route: a local cluster's nodes have none, and the
	// node's own traffic to a ClusterIP must not need one.
	// The node namespace's own sysctls (per namespace; the host's are
	// untouched): forwarding, and bridged replies through conntrack.
	testutil.Run(t, "ip", "netns", "exec", n.ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
	testutil.Run(t, "ip", "netns", "exec", n.ns, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1")

	n.bridge = testutil.UniqueName("pnb", 0)
	conf, err := agent.ConfList(agent.NetworkConfig{Bridge: n.bridge, PodCIDR: n.podCIDR, DataDir: t.TempDir(),
		NonMasqueradeCIDRs: []string{clusterCIDR}})
	if err != nil {
		t.Fatal(err)
	}
	if n.conf, err = libcni.ConfListFromBytes(conf); err != nil {
		t.Fatal(err)
	}
	n.cni = libcni.NewCNIConfigWithCacheDir([]string{c.pluginBinDir}, t.TempDir(), nil)
	// As `podnet agent` starts: podnet-cni's part of the table, then the
	// proxy over knftables and netlink conntrack in this namespace.
	if err := netns.Do(n.path, func() error {
		dp, err := nft.NewExec()
		if err != nil {
			return err
		}
		return dp.Ensure(c.ctx)
	}); err != nil {
		t.Fatalf("node %s: nft ensure: %v", n.name, err)
	}
	h, err := vnetns.GetFromPath(n.path)
	if err != nil {
		t.Fatal(err)
	}
	nh, err := vnetlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nh.Close(); h.Close() })
	n.ct = proxy.NetlinkConntrack{Handle: nh}
	n.proxier = n.newProxier()
	c.nodes = append(c.nodes, n)
	return n
}

// newProxier is what the agent builds (internal/agent/services.go).
func (n *node) newProxier() *proxy.Proxier {
	return proxy.New(proxy.Config{NodeName: n.name, NodeIP: netip.MustParseAddr(n.ip), ClusterCIDR: n.c.clusterCIDR, ServiceCIDR: n.c.serviceCIDR,
		NetNS: n.path, Conntrack: n.ct, Logger: testutil.Logger(n.c.t).With("node", n.name)})
}

// restartProxier drops the node's Proxier without any cleanup (as a kill
// -9 would) and starts a new one fed with the current objects; it returns
// the new one's first sync.
func (n *node) restartProxier() proxy.Stats {
	n.c.t.Helper()
	n.proxier = n.newProxier()
	n.c.servicesMu.Lock()
	for _, s := range n.c.services {
		n.proxier.SetService(s)
	}
	for _, s := range n.c.slices {
		n.proxier.SetSlice(s)
	}
	n.c.servicesMu.Unlock()
	st, err := n.proxier.Sync(n.c.ctx)
	if err != nil {
		n.c.t.Fatalf("node %s: first sync after restart: %v", n.name, err)
	}
	return st
}

// table returns `nft list table inet podnet` of the node.
func (n *node) table() string {
	n.c.t.Helper()
	return testutil.Run(n.c.t, "ip", "netns", "exec", n.ns, "nft", "list", "table", "inet", nft.TableName)
}

// addPod attaches a pod through podnet-cni.
func (n *node) addPod(name string) *pod {
	t := n.c.t
	t.Helper()
	p := &pod{n: n, name: name, id: "c" + testutil.UniqueName("", 20)}
	p.ns, p.path = testutil.NewNS(t)
	rt := &libcni.RuntimeConf{ContainerID: p.id, NetNS: p.path, IfName: "eth0"}
	var res *current.Result
	err := netns.Do(n.path, func() error {
		r, err := n.cni.AddNetworkList(n.c.ctx, n.conf, rt)
		if err != nil {
			return err
		}
		res, err = current.NewResultFromResult(r)
		return err
	})
	if err != nil {
		t.Fatalf("CNI ADD pod %s on %s: %v", name, n.name, err)
	}
	t.Cleanup(func() {
		_ = netns.Do(n.path, func() error { return n.cni.DelNetworkList(context.Background(), n.conf, rt) })
	})
	for _, ip := range res.IPs {
		if ip.Address.IP.To4() != nil {
			p.ip = ip.Address.IP.String()
		}
	}
	if p.ip == "" {
		t.Fatalf("pod %s: no IPv4 in %v", name, res)
	}
	return p
}

// --- the Service objects, fed to every node's proxier ---

func (c *cluster) setService(s *corev1.Service) {
	c.servicesMu.Lock()
	c.services[s.Namespace+"/"+s.Name] = s
	c.servicesMu.Unlock()
	for _, n := range c.nodes {
		n.proxier.SetService(s)
	}
}

func (c *cluster) deleteService(s *corev1.Service) {
	c.servicesMu.Lock()
	delete(c.services, s.Namespace+"/"+s.Name)
	c.servicesMu.Unlock()
	for _, n := range c.nodes {
		n.proxier.DeleteService(s.Namespace, s.Name)
	}
}

func (c *cluster) setSlice(s *discoveryv1.EndpointSlice) {
	c.servicesMu.Lock()
	c.slices[s.Namespace+"/"+s.Name] = s
	c.servicesMu.Unlock()
	for _, n := range c.nodes {
		n.proxier.SetSlice(s)
	}
}

func (c *cluster) deleteSlice(s *discoveryv1.EndpointSlice) {
	c.servicesMu.Lock()
	delete(c.slices, s.Namespace+"/"+s.Name)
	c.servicesMu.Unlock()
	for _, n := range c.nodes {
		n.proxier.DeleteSlice(s)
	}
}

// sync syncs every node and fails the test on error.
func (c *cluster) sync() {
	c.t.Helper()
	for _, n := range c.nodes {
		if _, err := n.proxier.Sync(c.ctx); err != nil {
			c.t.Fatalf("node %s: sync: %v", n.name, err)
		}
	}
}

type portSpec struct {
	name       string
	proto      corev1.Protocol
	port       int32
	targetPort int32
	nodePort   int32
}

func tcpPort(name string, port, target int32) portSpec {
	return portSpec{name: name, proto: corev1.ProtocolTCP, port: port, targetPort: target}
}

func udpPort(name string, port, target int32) portSpec {
	return portSpec{name: name, proto: corev1.ProtocolUDP, port: port, targetPort: target}
}

func newService(name, ip string, ports ...portSpec) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: ip, ClusterIPs: []string{ip}},
	}
	for _, p := range ports {
		if p.nodePort > 0 {
			s.Spec.Type = corev1.ServiceTypeNodePort
		}
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: p.name, Protocol: p.proto, Port: p.port,
			TargetPort: intstr.FromInt32(p.targetPort), NodePort: p.nodePort})
	}
	return s
}

type epState int

const (
	ready       epState = iota
	terminating         // serving, terminating
	notServing          // terminating, not serving
)

type endpointSpec struct {
	p     *pod
	state epState
}

func epOf(p *pod) endpointSpec { return endpointSpec{p: p} }

// newSlice is the EndpointSlice the controller would write for s.
func newSlice(s *corev1.Service, name string, eps ...endpointSpec) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: s.Namespace, Name: name, Labels: map[string]string{proxy.LabelServiceName: s.Name}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, sp := range s.Spec.Ports {
		sp := sp
		port := sp.TargetPort.IntVal
		sl.Ports = append(sl.Ports, discoveryv1.EndpointPort{Name: &sp.Name, Protocol: &sp.Protocol, Port: &port})
	}
	for _, e := range eps {
		r, sv, tm := true, true, false
		switch e.state {
		case terminating:
			r, sv, tm = false, true, true
		case notServing:
			r, sv, tm = false, false, true
		}
		node := e.p.n.name
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{e.p.ip},
			Conditions: discoveryv1.EndpointConditions{Ready: &r, Serving: &sv, Terminating: &tm}, NodeName: &node})
	}
	return sl
}

// --- knftables in a namespace ---

// nsNFT runs a knftables.Interface's nft execs inside a namespace: the
// thread that forks nft is in it (netns.Do), so the child is too.
type nsNFT struct {
	path  string
	inner knftables.Interface
}

func newNSNFT(t *testing.T, path string) *nsNFT {
	t.Helper()
	n := &nsNFT{path: path}
	if err := netns.Do(path, func() (err error) {
		n.inner, err = knftables.New(knftables.InetFamily, nft.TableName)
		return err
	}); err != nil {
		t.Fatalf("knftables in %s: %v", path, err)
	}
	return n
}

func (n *nsNFT) NewTransaction() *knftables.Transaction { return n.inner.NewTransaction() }

func (n *nsNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	return netns.Do(n.path, func() error { return n.inner.Run(ctx, tx) })
}

func (n *nsNFT) Check(ctx context.Context, tx *knftables.Transaction) error {
	return netns.Do(n.path, func() error { return n.inner.Check(ctx, tx) })
}

func (n *nsNFT) ListAll(ctx context.Context) (out map[string][]string, err error) {
	err = netns.Do(n.path, func() error { out, err = n.inner.ListAll(ctx); return err })
	return out, err
}

func (n *nsNFT) List(ctx context.Context, typ string) (out []string, err error) {
	err = netns.Do(n.path, func() error { out, err = n.inner.List(ctx, typ); return err })
	return out, err
}

func (n *nsNFT) ListRules(ctx context.Context, chain string) (out []*knftables.Rule, err error) {
	err = netns.Do(n.path, func() error { out, err = n.inner.ListRules(ctx, chain); return err })
	return out, err
}

func (n *nsNFT) ListElements(ctx context.Context, typ, name string) (out []*knftables.Element, err error) {
	err = netns.Do(n.path, func() error { out, err = n.inner.ListElements(ctx, typ, name); return err })
	return out, err
}

func (n *nsNFT) ListCounters(ctx context.Context) (out []*knftables.Counter, err error) {
	err = netns.Do(n.path, func() error { out, err = n.inner.ListCounters(ctx); return err })
	return out, err
}

// --- echo servers and clients ---

// serveTCP listens on port in the pod; each connection gets the line
// "<pod>:<port> <peer IP>" and then every line it sends echoed back
// prefixed with "<pod>:<port> ".
func (p *pod) serveTCP(port int) {
	t := p.n.c.t
	t.Helper()
	var ln net.Listener
	if err := netns.Do(p.path, func() (err error) {
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatalf("pod %s: listen tcp %d: %v", p.name, port, err)
	}
	id := fmt.Sprintf("%s:%d", p.name, port)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				peer := conn.RemoteAddr().(*net.TCPAddr).IP.String()
				if _, err := fmt.Fprintf(conn, "%s %s\n", id, peer); err != nil {
					return
				}
				sc := bufio.NewScanner(conn)
				for sc.Scan() {
					if _, err := fmt.Fprintf(conn, "%s %s\n", id, sc.Text()); err != nil {
						return
					}
				}
			}()
		}
	}()
	go func() { <-t.Context().Done(); ln.Close() }()
}

// serveUDP answers every datagram with "<pod>:<port> <peer IP>".
func (p *pod) serveUDP(port int) {
	t := p.n.c.t
	t.Helper()
	var pc net.PacketConn
	if err := netns.Do(p.path, func() (err error) {
		pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatalf("pod %s: listen udp %d: %v", p.name, port, err)
	}
	id := fmt.Sprintf("%s:%d", p.name, port)
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(fmt.Sprintf("%s %s", id, from.(*net.UDPAddr).IP)), from)
		}
	}()
}

// dialIn dials addr from inside the namespace at path.
func dialIn(path, network, addr string, timeout time.Duration) (net.Conn, error) {
	var conn net.Conn
	err := netns.Do(path, func() (err error) {
		conn, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return conn, err
}

// answer is what an echo server said first.
type answer struct {
	id   string // pod:port
	peer string // the client address the server saw
}

// hit makes one new TCP connection from the namespace at path to addr and
// returns the server's first line.
func hit(path, addr string, timeout time.Duration) (answer, error) {
	conn, err := dialIn(path, "tcp4", addr, timeout)
	if err != nil {
		return answer{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return answer{}, fmt.Errorf("read from %s: %w", addr, err)
	}
	id, peer, _ := strings.Cut(strings.TrimSpace(line), " ")
	return answer{id, peer}, nil
}

// hits makes n connections and counts the answering pod:port of each.
func hits(t *testing.T, from, addr string, n int) map[string]int {
	t.Helper()
	out := map[string]int{}
	for i := 0; i < n; i++ {
		a, err := hit(from, addr, 2*time.Second)
		if err != nil {
			t.Fatalf("connection %d to %s: %v", i, addr, err)
		}
		out[a.id]++
	}
	return out
}

// udpAsk sends one datagram and waits for one answer.
func udpAsk(path, addr string, timeout time.Duration) (answer, error) {
	conn, err := dialIn(path, "udp4", addr, timeout)
	if err != nil {
		return answer{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte("ping")); err != nil {
		return answer{}, err
	}
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		return answer{}, err
	}
	id, peer, _ := strings.Cut(string(buf[:n]), " ")
	return answer{id, peer}, nil
}

func isRefused(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection refused")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func ipPort(ip string, port int) string { return net.JoinHostPort(ip, fmt.Sprint(port)) }

// lineReader reads the lines of a long-lived connection.
type lineReader struct {
	conn net.Conn
	r    *bufio.Reader
}

func newLineReader(c net.Conn) *lineReader { return &lineReader{c, bufio.NewReader(c)} }

func (l *lineReader) line(t *testing.T) string {
	t.Helper()
	_ = l.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	s, err := l.r.ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimSpace(s)
}

// diffLines shows the lines only one of a and b has.
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
	sort.Strings(out)
	return strings.Join(out, "\n")
}
