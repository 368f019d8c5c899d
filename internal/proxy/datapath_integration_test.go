package proxy_test

import (
	"fmt"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/testutil"
)

// web is the usual fixture: n1 runs endpoints a, b, c (TCP 8080, UDP
// 5353) and a client pod; n2 runs a client pod.
type web struct {
	c         *cluster
	n1, n2    *node
	a, b, cc  *pod
	cli, far  *pod
	endpoints []*pod
}

func newWeb(t *testing.T) *web {
	c := newCluster(t, 2)
	w := &web{c: c, n1: c.nodes[0], n2: c.nodes[1]}
	w.a, w.b, w.cc = w.n1.addPod("a"), w.n1.addPod("b"), w.n1.addPod("c")
	w.cli = w.n1.addPod("cli")
	w.far = w.n2.addPod("far")
	w.endpoints = []*pod{w.a, w.b, w.cc}
	for _, p := range []*pod{w.a, w.b, w.cc, w.cli} {
		p.serveTCP(8080)
		p.serveUDP(5353)
	}
	c.sync() // the proxy's static part; no Service yet
	return w
}

func (w *web) eps() []endpointSpec {
	var out []endpointSpec
	for _, p := range w.endpoints {
		out = append(out, epOf(p))
	}
	return out
}

func checkSpread(t *testing.T, what string, got map[string]int, n int, want ...*pod) {
	t.Helper()
	total := 0
	for _, p := range want {
		k := p.name + ":8080"
		total += got[k]
		if got[k] < n/5 {
			t.Errorf("%s: %s answered %d of %d connections, want ≥ 20%% (%v)", what, p.name, got[k], n, got)
		}
	}
	if total != n {
		t.Errorf("%s: %d of %d connections reached the endpoints: %v", what, total, n, got)
	}
}

// Acceptance: ClusterIP from a pod, from the node itself (host network),
// and from another node: 300 new connections each reach each of 3
// endpoints at least 20% of the time; pod to Service to pod keeps the
// client's pod IP.
func TestClusterIPReachesEveryEndpoint(t *testing.T) {
	w := newWeb(t)
	s := newService("web", "10.96.0.20", tcpPort("http", 80, 8080))
	w.c.setService(s)
	w.c.setSlice(newSlice(s, "web-1", w.eps()...))
	w.c.sync()
	vip := ipPort("10.96.0.20", 80)
	for _, from := range []struct {
		name, path string
	}{{"pod", w.cli.path}, {"node", w.n1.path}, {"pod on another node", w.far.path}, {"another node", w.n2.path}} {
		checkSpread(t, from.name, hits(t, from.path, vip, 300), 300, w.endpoints...)
	}
	for _, from := range []*pod{w.cli, w.far} {
		a, err := hit(from.path, vip, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if a.peer != from.ip {
			t.Errorf("pod %s → Service → %s: the endpoint saw %s, want the pod's own IP %s", from.name, a.id, a.peer, from.ip)
		}
	}
	// The node's own traffic comes from outside the cluster CIDR: it is
	// masqueraded to the node's bridge address, so the pod can answer.
	a, err := hit(w.n1.path, vip, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a.peer, "10.244.1.") {
		t.Errorf("node → Service: endpoint saw %s, want the node's pod-network address", a.peer)
	}
}

// Hairpin: a pod reaching itself through its Service gets an answer (the
// connection is masqueraded, or the reply would go pod-local).
func TestHairpin(t *testing.T) {
	w := newWeb(t)
	s := newService("self", "10.96.0.21", tcpPort("http", 80, 8080))
	w.c.setService(s)
	w.c.setSlice(newSlice(s, "self-1", epOf(w.a)))
	w.c.sync()
	for i := 0; i < 5; i++ {
		a, err := hit(w.a.path, ipPort("10.96.0.21", 80), 2*time.Second)
		if err != nil {
			t.Fatalf("hairpin: %v", err)
		}
		if a.id != "a:8080" {
			t.Fatalf("hairpin reached %s", a.id)
		}
		if a.peer == w.a.ip {
			t.Fatalf("hairpin not masqueraded: the pod saw its own IP")
		}
	}
	// Hairpin with several endpoints: every connection answers, some from
	// the pod itself.
	s2 := newService("self3", "10.96.0.22", tcpPort("http", 80, 8080))
	w.c.setService(s2)
	w.c.setSlice(newSlice(s2, "self3-1", w.eps()...))
	w.c.sync()
	got := hits(t, w.a.path, ipPort("10.96.0.22", 80), 60)
	if got["a:8080"] == 0 {
		t.Errorf("a never reached itself in 60 connections: %v", got)
	}
}

// refusedWithin dials addr n times from inside the namespace (entered
// once; only the connect or the UDP round trip is timed) and checks that
// every attempt is refused, and that 3 in 4 are refused within limit. A
// reject is one round trip inside the node (~25 µs here); the quartile of
// slack is for a loaded test machine's scheduler, not for any timer: a
// dropped SYN would take a second, so a missing reject fails every
// attempt. UDP makes only 3 attempts: the kernel rate-limits ICMP errors to
// one destination (net.ipv4.icmp_ratelimit, 1/s after a short burst), so a
// UDP client that retries faster sees its later datagrams dropped.
func refusedWithin(t *testing.T, what, from, network, addr string, limit time.Duration) {
	t.Helper()
	n := 20
	if network == "udp4" {
		n = 3
	}
	var took []time.Duration
	var fail error
	err := netns.Do(from, func() error {
		for i := 0; i < n; i++ {
			start := time.Now()
			conn, err := net.DialTimeout(network, addr, time.Second)
			if err == nil && network == "udp4" {
				_ = conn.SetDeadline(time.Now().Add(time.Second))
				if _, err = conn.Write([]byte("ping")); err == nil {
					_, err = conn.Read(make([]byte, 100))
				}
				conn.Close()
			} else if err == nil {
				conn.Close()
				return fmt.Errorf("%s answered, want connection refused", addr)
			}
			d := time.Since(start)
			if !isRefused(err) {
				return fmt.Errorf("%s %s: %v after %v, want connection refused", network, addr, err, d)
			}
			took = append(took, d)
		}
		return nil
	})
	if err != nil {
		fail = err
	}
	if fail != nil {
		t.Fatalf("%s: %v", what, fail)
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	q := took[(n*3+3)/4-1]
	t.Logf("%s: refused in median %v, p75 %v, max %v", what, took[n/2], q, took[n-1])
	if q > limit {
		t.Errorf("%s: refused in p75 %v (median %v), want ≤ %v", what, q, took[n/2], limit)
	}
}

// Acceptance: a Service with no ready endpoint refuses a connection within
// 10 ms, from a pod and from the node, TCP and UDP, on its ClusterIP and
// its NodePort; an IP of the service range that no Service has is
// rejected too, never routed out (the outside namespace holds that address
// and would answer).
func TestRejects(t *testing.T) {
	w := newWeb(t)
	s := newService("empty", "10.96.0.30", tcpPort("http", 80, 8080), udpPort("dns", 53, 5353))
	s.Spec.Type = corev1.ServiceTypeNodePort
	s.Spec.Ports[0].NodePort = 30030
	w.c.setService(s)
	w.c.sync()
	const limit = 10 * time.Millisecond
	refusedWithin(t, "no endpoints, from a pod", w.cli.path, "tcp4", ipPort("10.96.0.30", 80), limit)
	refusedWithin(t, "no endpoints, from the node", w.n1.path, "tcp4", ipPort("10.96.0.30", 80), limit)
	refusedWithin(t, "no endpoints, UDP", w.cli.path, "udp4", ipPort("10.96.0.30", 53), limit)
	refusedWithin(t, "no endpoints, NodePort from outside", w.c.outsidePath, "tcp4", ipPort(w.n1.ip, 30030), limit)
	// Endpoints that are terminating and not serving count as none.
	w.c.setSlice(newSlice(s, "empty-1", endpointSpec{p: w.a, state: notServing}))
	w.c.sync()
	refusedWithin(t, "only a non-serving endpoint", w.cli.path, "tcp4", ipPort("10.96.0.30", 80), limit)

	// An unallocated service IP (and a port no Service has) is refused.
	// The outside namespace holds 10.96.0.99 and listens: were it routed
	// out through the node's default route, it would answer.
	testutil.Run(t, "ip", "-n", w.c.outside, "addr", "add", "10.96.0.99/32", "dev", "lo")
	testutil.Run(t, "ip", "-n", w.c.outside, "addr", "add", "10.96.0.30/32", "dev", "lo")
	out := &pod{n: w.n1, name: "outside", path: w.c.outsidePath}
	out.serveTCP(80)
	out.serveTCP(81)
	refusedWithin(t, "unallocated service IP, from a pod", w.cli.path, "tcp4", ipPort("10.96.0.99", 80), limit)
	refusedWithin(t, "unallocated service IP, from the node", w.n1.path, "tcp4", ipPort("10.96.0.99", 80), limit)
	refusedWithin(t, "a port the Service lacks", w.cli.path, "tcp4", ipPort("10.96.0.30", 81), limit)

	// An address of the range the node holds itself (as the agent's
	// node-local DNS holds 10.96.0.10 on a dummy link, or on lo where the
	// kernel has no dummy driver, as here) is delivered, from pods and
	// from the node.
	testutil.Run(t, "ip", "-n", w.n1.ns, "addr", "add", "10.96.0.10/32", "dev", "lo")
	node := &pod{n: w.n1, name: "node", path: w.n1.path}
	node.serveTCP(53)
	for _, from := range []string{w.cli.path, w.n1.path} {
		if a, err := hit(from, ipPort("10.96.0.10", 53), 2*time.Second); err != nil || a.id != "node:53" {
			t.Errorf("node-local service-range address: %v %v", a, err)
		}
	}
}

// Serving-but-terminating endpoints are used only when no endpoint is
// ready, as kube-proxy does.
func TestTerminatingFallback(t *testing.T) {
	w := newWeb(t)
	s := newService("term", "10.96.0.40", tcpPort("http", 80, 8080))
	w.c.setService(s)
	vip := ipPort("10.96.0.40", 80)
	w.c.setSlice(newSlice(s, "term-1", epOf(w.a), endpointSpec{p: w.b, state: terminating}, endpointSpec{p: w.cc, state: terminating}))
	w.c.sync()
	if got := hits(t, w.cli.path, vip, 40); got["a:8080"] != 40 {
		t.Errorf("with one ready endpoint, terminating ones were used: %v", got)
	}
	w.c.setSlice(newSlice(s, "term-1", endpointSpec{p: w.a, state: notServing}, endpointSpec{p: w.b, state: terminating}, endpointSpec{p: w.cc, state: terminating}))
	w.c.sync()
	got := hits(t, w.cli.path, vip, 60)
	if got["a:8080"] != 0 || got["b:8080"] == 0 || got["c:8080"] == 0 {
		t.Errorf("no ready endpoint: want only the serving terminating b and c, got %v", got)
	}
}

// sessionAffinity: ClientIP pins a client to one endpoint for 50
// connections; another client is pinned on its own.
func TestSessionAffinity(t *testing.T) {
	w := newWeb(t)
	s := newService("sticky", "10.96.0.50", tcpPort("http", 80, 8080))
	s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}}
	w.c.setService(s)
	w.c.setSlice(newSlice(s, "sticky-1", w.eps()...))
	w.c.sync()
	for _, from := range []struct{ name, path string }{{"pod", w.cli.path}, {"pod on another node", w.far.path}, {"node", w.n1.path}} {
		got := hits(t, from.path, ipPort("10.96.0.50", 80), 50)
		if len(got) != 1 {
			t.Errorf("%s: 50 connections with ClientIP affinity reached %v, want one endpoint", from.name, got)
		}
	}
	// Without affinity the same client spreads again.
	s2 := s.DeepCopy()
	s2.Spec.SessionAffinity = corev1.ServiceAffinityNone
	s2.Spec.SessionAffinityConfig = nil
	w.c.setService(s2)
	w.c.sync()
	if got := hits(t, w.cli.path, ipPort("10.96.0.50", 80), 50); len(got) < 2 {
		t.Errorf("affinity removed, still pinned: %v", got)
	}
}

// Named and multiple ports: each Service port reaches its own target port
// (resolved per slice port name), TCP and UDP in one Service.
func TestNamedAndMultiplePorts(t *testing.T) {
	w := newWeb(t)
	for _, p := range w.endpoints {
		p.serveTCP(9090)
	}
	s := newService("multi", "10.96.0.60", tcpPort("http", 80, 8080), tcpPort("metrics", 81, 9090), udpPort("dns", 53, 5353))
	w.c.setService(s)
	w.c.setSlice(newSlice(s, "multi-1", w.eps()...))
	w.c.sync()
	for _, c := range []struct {
		port int
		want string
	}{{80, ":8080"}, {81, ":9090"}} {
		got := hits(t, w.cli.path, ipPort("10.96.0.60", c.port), 30)
		for id, n := range got {
			if !strings.HasSuffix(id, c.want) {
				t.Errorf("port %d reached %s %d times, want target %s", c.port, id, n, c.want)
			}
		}
		if len(got) < 2 {
			t.Errorf("port %d: 30 connections reached %v", c.port, got)
		}
	}
	a, err := udpAsk(w.cli.path, ipPort("10.96.0.60", 53), 2*time.Second)
	if err != nil || !strings.HasSuffix(a.id, ":5353") {
		t.Errorf("udp 53: %v %v", a, err)
	}
	// Two slices of one Service (the controller's 100-endpoint split):
	// endpoints of both are used.
	w.c.setSlice(newSlice(s, "multi-1", epOf(w.a)))
	w.c.setSlice(newSlice(s, "multi-2", epOf(w.b)))
	w.c.sync()
	got := hits(t, w.cli.path, ipPort("10.96.0.60", 80), 40)
	if got["a:8080"] == 0 || got["b:8080"] == 0 || got["c:8080"] != 0 {
		t.Errorf("two slices {a} {b}: %v", got)
	}
}

// Acceptance: a UDP client sending continuously reaches the replacement
// endpoint within 1 s after the endpoint changes. The old endpoint keeps
// answering, so only the deletion of its conntrack entries can move the
// client (a stale entry would pin it there for as long as it sends).
func TestUDPReachesReplacementWithinOneSecond(t *testing.T) {
	w := newWeb(t)
	s := newService("dns", "10.96.0.70", udpPort("dns", 53, 5353))
	w.c.setService(s)
	w.c.setSlice(newSlice(s, "dns-1", epOf(w.a)))
	w.c.sync()
	for _, from := range []struct {
		name, path string
	}{{"pod", w.cli.path}, {"node", w.n1.path}} {
		w.c.setSlice(newSlice(s, "dns-1", epOf(w.a)))
		w.c.sync()
		conn, err := dialIn(from.path, "udp4", ipPort("10.96.0.70", 53), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ask := func() string {
			_ = conn.SetDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := conn.Write([]byte("ping")); err != nil {
				return "error: " + err.Error()
			}
			buf := make([]byte, 200)
			n, err := conn.Read(buf)
			if err != nil {
				return "error: " + err.Error()
			}
			id, _, _ := strings.Cut(string(buf[:n]), " ")
			return id
		}
		if got := ask(); got != "a:5353" {
			// The first datagram may race the listener; give it a few.
			ok := false
			for i := 0; i < 20 && !ok; i++ {
				ok = ask() == "a:5353"
			}
			if !ok {
				t.Fatalf("%s: UDP to the Service before the change: %q", from.name, got)
			}
		}
		for i := 0; i < 20; i++ { // a steady flow, pinned in conntrack
			ask()
		}
		w.c.setSlice(newSlice(s, "dns-1", epOf(w.b)))
		w.c.sync()
		changed := time.Now()
		last := ""
		for time.Since(changed) < 2*time.Second {
			if last = ask(); last == "b:5353" {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		took := time.Since(changed)
		t.Logf("%s: replacement reached %v after the sync", from.name, took)
		if last != "b:5353" || took > time.Second {
			t.Errorf("%s: after the endpoint changed to b the client got %q for %v, want b within 1s", from.name, last, took)
		}
	}
	// A frontend that rejected (no endpoints) starts answering as soon as
	// it has one, although the client kept sending.
	w.c.deleteSlice(newSlice(s, "dns-1"))
	w.c.sync()
	conn, err := dialIn(w.cli.path, "udp4", ipPort("10.96.0.70", 53), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := 0; i < 5; i++ {
		_ = conn.SetDeadline(time.Now().Add(20 * time.Millisecond))
		_, _ = conn.Write([]byte("ping"))
		_, _ = conn.Read(make([]byte, 100))
	}
	w.c.setSlice(newSlice(s, "dns-1", epOf(w.cc)))
	w.c.sync()
	start := time.Now()
	var got string
	for time.Since(start) < 2*time.Second && got != "c:5353" {
		_ = conn.SetDeadline(time.Now().Add(50 * time.Millisecond))
		_, _ = conn.Write([]byte("ping"))
		buf := make([]byte, 100)
		if n, err := conn.Read(buf); err == nil {
			got, _, _ = strings.Cut(string(buf[:n]), " ")
		}
	}
	if got != "c:5353" || time.Since(start) > time.Second {
		t.Errorf("after the first endpoint appeared the client got %q after %v", got, time.Since(start))
	}
}

// Acceptance: NodePort via every node, including one with no endpoint;
// source IP masqueraded under the Cluster policy and kept under Local, a
// node with no local endpoint does not answer under Local. Also
// externalIPs, routed by the outside to n2.
func TestNodePortAndTrafficPolicy(t *testing.T) {
	w := newWeb(t)
	s := newService("np", "10.96.0.80", portSpec{name: "http", proto: corev1.ProtocolTCP, port: 80, targetPort: 8080, nodePort: 30080})
	s.Spec.ExternalIPs = []string{"192.168.60.1"}
	testutil.Run(t, "ip", "-n", w.c.outside, "route", "add", "192.168.60.1/32", "via", w.n2.ip)
	w.c.setService(s)
	w.c.setSlice(newSlice(s, "np-1", w.eps()...))
	w.c.sync()
	out := w.c.outsidePath
	for _, n := range w.c.nodes {
		addr := ipPort(n.ip, 30080)
		checkSpread(t, "NodePort via "+n.name, hits(t, out, addr, 150), 150, w.endpoints...)
		a, err := hit(out, addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if a.peer == outsideIP {
			t.Errorf("Cluster policy via %s: the endpoint saw the client's IP, want it masqueraded", n.name)
		}
	}
	checkSpread(t, "externalIP via n2", hits(t, out, ipPort("192.168.60.1", 80), 150), 150, w.endpoints...)
	// The NodePort from a pod and from the node (to its own address).
	if _, err := hit(w.cli.path, ipPort(w.n1.ip, 30080), 2*time.Second); err != nil {
		t.Errorf("NodePort from a pod: %v", err)
	}
	if _, err := hit(w.n2.path, ipPort(w.n2.ip, 30080), 2*time.Second); err != nil {
		t.Errorf("NodePort from the node itself: %v", err)
	}

	local := s.DeepCopy()
	local.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	w.c.setService(local)
	w.c.sync()
	// n1 has the endpoints: the client IP is kept.
	for i := 0; i < 20; i++ {
		a, err := hit(out, ipPort(w.n1.ip, 30080), 2*time.Second)
		if err != nil {
			t.Fatalf("Local policy via n1: %v", err)
		}
		if a.peer != outsideIP {
			t.Fatalf("Local policy via n1: the endpoint saw %s, want the client's %s", a.peer, outsideIP)
		}
	}
	// n2 has none: it does not answer (no reply, no reset).
	for _, addr := range []string{ipPort(w.n2.ip, 30080), ipPort("192.168.60.1", 80)} {
		a, err := hit(out, addr, 300*time.Millisecond)
		if err == nil {
			t.Errorf("Local policy, no local endpoint: %s answered (%s)", addr, a.id)
		} else if !isTimeout(err) {
			t.Errorf("Local policy, no local endpoint: %s: %v, want no answer (timeout)", addr, err)
		}
	}
	// Pods and the node itself still reach the Service through n2's
	// external address (they take the cluster-wide path).
	if _, err := hit(w.far.path, ipPort(w.n2.ip, 30080), 2*time.Second); err != nil {
		t.Errorf("Local policy: a pod on n2 via its node's NodePort: %v", err)
	}
	if _, err := hit(w.n2.path, ipPort(w.n2.ip, 30080), 2*time.Second); err != nil {
		t.Errorf("Local policy: n2 itself via its NodePort: %v", err)
	}
}

// internalTrafficPolicy Local: only the node's own endpoints; a node with
// none drops (no answer).
func TestInternalTrafficPolicyLocal(t *testing.T) {
	w := newWeb(t)
	s := newService("itp", "10.96.0.90", tcpPort("http", 80, 8080))
	s.Spec.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal)
	w.c.setService(s)
	w.c.setSlice(newSlice(s, "itp-1", w.eps()...))
	w.c.sync()
	checkSpread(t, "itp Local from n1's pod", hits(t, w.cli.path, ipPort("10.96.0.90", 80), 60), 60, w.endpoints...)
	if a, err := hit(w.far.path, ipPort("10.96.0.90", 80), 300*time.Millisecond); err == nil || !isTimeout(err) {
		t.Errorf("itp Local from n2 (no local endpoint): %v %v, want no answer", a, err)
	}
}

// Acceptance: an established connection through a ClusterIP survives 100
// unrelated syncs and a restart of the proxy (a new Proxier, as after kill
// -9, whose first sync diffs against the kernel and changes nothing).
func TestEstablishedConnectionSurvivesSyncsAndRestart(t *testing.T) {
	w := newWeb(t)
	s := newService("keep", "10.96.0.100", tcpPort("http", 80, 8080))
	w.c.setService(s)
	w.c.setSlice(newSlice(s, "keep-1", w.eps()...))
	w.c.sync()
	conn, err := dialIn(w.cli.path, "tcp4", ipPort("10.96.0.100", 80), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := newLineReader(conn)
	first := r.line(t)
	id, _, _ := strings.Cut(first, " ")
	say := func(msg string) {
		t.Helper()
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := fmt.Fprintf(conn, "%s\n", msg); err != nil {
			t.Fatalf("write after %s: %v", msg, err)
		}
		if got := r.line(t); got != id+" "+msg {
			t.Fatalf("after %s: got %q, want %q", msg, got, id+" "+msg)
		}
	}
	say("hello")
	for i := 0; i < 100; i++ {
		o := newService(fmt.Sprintf("other-%d", i), fmt.Sprintf("10.96.1.%d", i+1), tcpPort("http", 80, 8080))
		w.c.setService(o)
		w.c.setSlice(newSlice(o, fmt.Sprintf("other-%d-1", i), epOf(w.endpoints[i%3])))
		if i%10 == 9 { // endpoint churn of the kept Service's neighbours
			w.c.deleteService(newService(fmt.Sprintf("other-%d", i-5), "", tcpPort("http", 80, 8080)))
		}
		w.c.sync()
		if i%20 == 19 {
			say(fmt.Sprintf("after sync %d", i+1))
		}
	}
	before := w.n1.table()
	st := w.n1.restartProxier()
	if st.Changed != 0 {
		t.Errorf("first sync after restart changed %d Services, want 0 (a pure diff)", st.Changed)
	}
	if after := w.n1.table(); after != before {
		t.Errorf("restart changed the table:\n%s", diffLines(before, after))
	}
	say("after restart")
	// A change after the restart is applied, and the connection lives on.
	w.c.setSlice(newSlice(s, "keep-1", w.eps()[:2]...))
	w.c.sync()
	say("after a change")
	// And the restarted proxy still programs new Services.
	n := newService("new", "10.96.2.1", tcpPort("http", 80, 8080))
	w.c.setService(n)
	w.c.setSlice(newSlice(n, "new-1", epOf(w.cc)))
	w.c.sync()
	if a, err := hit(w.cli.path, ipPort("10.96.2.1", 80), 2*time.Second); err != nil || a.id != "c:8080" {
		t.Errorf("a Service added after the restart: %v %v", a, err)
	}
}

// Acceptance: after all Services are deleted the table is back to its
// baseline, byte for byte in `nft list table`.
func TestBackToBaseline(t *testing.T) {
	w := newWeb(t)
	base := []string{w.n1.table(), w.n2.table()}
	var svcs []string
	mk := func(name, ip string, ports ...portSpec) *corev1.Service {
		s := newService(name, ip, ports...)
		svcs = append(svcs, name)
		return s
	}
	all := []*corev1.Service{
		mk("plain", "10.96.0.110", tcpPort("http", 80, 8080)),
		mk("np", "10.96.0.111", portSpec{name: "http", proto: corev1.ProtocolTCP, port: 80, targetPort: 8080, nodePort: 30111}, udpPort("dns", 53, 5353)),
		mk("empty", "10.96.0.112", tcpPort("http", 80, 8080)),
		mk("sticky", "10.96.0.113", tcpPort("http", 80, 8080)),
		mk("local", "10.96.0.114", portSpec{name: "http", proto: corev1.ProtocolTCP, port: 80, targetPort: 8080, nodePort: 30114}),
	}
	all[3].Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	all[4].Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	all[4].Spec.ExternalIPs = []string{"192.168.60.2"}
	for _, s := range all {
		w.c.setService(s)
		if s.Name != "empty" {
			w.c.setSlice(newSlice(s, s.Name+"-1", w.eps()...))
		}
	}
	w.c.sync()
	// Use them, so affinity sets and conntrack have entries.
	hits(t, w.cli.path, ipPort("10.96.0.113", 80), 3)
	hits(t, w.c.outsidePath, ipPort(w.n1.ip, 30111), 3)
	if _, err := udpAsk(w.cli.path, ipPort("10.96.0.111", 53), time.Second); err != nil {
		t.Fatal(err)
	}
	if tb := w.n1.table(); !strings.Contains(tb, "10.96.0.113") || !strings.Contains(tb, "30111") {
		t.Fatalf("Services not programmed:\n%s", tb)
	}
	for _, s := range all {
		w.c.deleteService(s)
		w.c.deleteSlice(newSlice(s, s.Name+"-1"))
	}
	w.c.sync()
	for i, n := range w.c.nodes {
		if got := n.table(); got != base[i] {
			t.Errorf("node %s: table not back to its baseline:\n%s", n.name, diffLines(base[i], got))
		}
	}
	_ = svcs
}

// Two Services with the same nodePort: the kernel takes no two elements
// with one key, so without arbitration every sync would fail. The first
// keeps it, the table programs, and the other takes over when the first
// is deleted.
func TestFrontendConflictOnKernel(t *testing.T) {
	w := newWeb(t)
	a := newService("first", "10.96.0.120", portSpec{name: "http", proto: corev1.ProtocolTCP, port: 80, targetPort: 8080, nodePort: 30120})
	b := newService("second", "10.96.0.121", portSpec{name: "http", proto: corev1.ProtocolTCP, port: 80, targetPort: 8080, nodePort: 30120})
	w.c.setService(a)
	w.c.setService(b)
	w.c.setSlice(newSlice(a, "first-1", epOf(w.a)))
	w.c.setSlice(newSlice(b, "second-1", epOf(w.b)))
	w.c.sync()
	if got := hits(t, w.c.outsidePath, ipPort(w.n1.ip, 30120), 10); got["a:8080"] != 10 {
		t.Errorf("nodePort 30120 of first: %v", got)
	}
	if got := hits(t, w.cli.path, ipPort("10.96.0.121", 80), 10); got["b:8080"] != 10 {
		t.Errorf("second's ClusterIP: %v", got)
	}
	w.c.deleteService(a)
	w.c.sync()
	w.c.sync() // second was refused the port: it is due again
	if got := hits(t, w.c.outsidePath, ipPort(w.n1.ip, 30120), 10); got["b:8080"] != 10 {
		t.Errorf("nodePort 30120 after first's deletion: %v", got)
	}
}
