package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/cluster"
	"github.com/podnet/podnet/internal/netns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// webApp is the sample app behind the Services tests: a Deployment of the
// echo server (HTTP on the named port http, UDP echo on the named port
// echo), gated by an HTTP readiness probe, and the Services in front of it.
const webApp = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        command: [%q, echo-server, --listen, ":8080", --udp, ":8081"]
        ports:
        - {name: http, containerPort: 8080}
        - {name: echo, containerPort: 8081, protocol: UDP}
        readinessProbe:
          httpGet: {path: /healthz, port: http}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: echo, port: 8081, targetPort: echo, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata:
  name: web-np
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {port: 80, targetPort: 8080, nodePort: 30080}
---
apiVersion: v1
kind: Service
metadata:
  name: web-local
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: web}
  ports:
  - {port: 80, targetPort: 8080, nodePort: 30081}
---
apiVersion: v1
kind: Service
metadata:
  name: web-sticky
spec:
  sessionAffinity: ClientIP
  selector: {app: web}
  ports:
  - {port: 80, targetPort: 8080}
---
apiVersion: v1
kind: Service
metadata:
  name: nothing
spec:
  selector: {app: no-such-pod}
  ports:
  - {port: 80, targetPort: 8080}
`

// applyErr applies a manifest that must be refused, and returns the error
// output.
func (c *localCluster) applyErr(manifest string) string {
	c.t.Helper()
	f := filepath.Join(c.t.TempDir(), "bad.yaml")
	if err := os.WriteFile(f, []byte(manifest), 0o644); err != nil {
		c.t.Fatal(err)
	}
	out, err := c.podnet("apply", "-f", f)
	if err == nil {
		c.t.Fatalf("apply of a bad manifest succeeded:\n%s\n%s", manifest, out)
	}
	return out
}

func (c *localCluster) service(name string) *corev1.Service {
	c.t.Helper()
	var s corev1.Service
	out := c.must("get", "svc", name, "-o", "json")
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		c.t.Fatalf("decode service %s: %v\n%s", name, err, out)
	}
	return &s
}

// readyEndpoints lists the ready endpoint addresses of a Service's slices
// with the node each is on.
func (c *localCluster) readyEndpoints(svc string) map[string]string {
	c.t.Helper()
	out, err := c.podnet("get", "endpointslices", "-l", "kubernetes.io/service-name="+svc, "-o", "json")
	if err != nil {
		return nil
	}
	var list struct {
		Items []discoveryv1.EndpointSlice `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		c.t.Fatalf("decode endpointslices of %s: %v\n%s", svc, err, out)
	}
	eps := map[string]string{}
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready && len(e.Addresses) > 0 {
				node := ""
				if e.NodeName != nil {
					node = *e.NodeName
				}
				eps[e.Addresses[0]] = node
			}
		}
	}
	return eps
}

// waitReady waits until the Service has n ready endpoints and every node's
// table carries exactly those in service-eps; it returns the endpoints and
// how long the nodes lagged behind the EndpointSlices.
func (c *localCluster) waitReady(svc string, n int, timeout time.Duration) (map[string]string, time.Duration) {
	c.t.Helper()
	var eps map[string]string
	eventually(c.t, fmt.Sprintf("%d ready endpoints of %s", n, svc), timeout, func() (bool, string) {
		eps = c.readyEndpoints(svc)
		return len(eps) == n, fmt.Sprint(eps)
	})
	seen := time.Now()
	eventually(c.t, fmt.Sprintf("the %d endpoints of %s on every node", n, svc), timeout, func() (bool, string) {
		for _, h := range c.rec.Topology.Nodes() {
			out, _ := c.hostExec(h.Name, "nft", "list", "map", "inet", "podnet", "service-eps")
			for ip := range eps {
				if !strings.Contains(out, ip+" . ") {
					return false, h.Name + " lacks " + ip + ":\n" + out
				}
			}
		}
		return true, ""
	})
	return eps, time.Since(seen)
}

// answers runs n HTTP requests, each on a new connection, from a shell in
// where (a pod with `pod:NAME`, a cluster host with `host:NAME`) and counts
// the answering pods ("FAIL" for failed requests).
func (c *localCluster) answers(where, url string, n int) map[string]int {
	c.t.Helper()
	script := fmt.Sprintf(`for i in $(seq %d); do curl -sS -m 2 %s 2>/dev/null | head -n1 || true; echo; done`, n, url)
	out := c.shell(where, script)
	got := map[string]int{}
	lines := 0
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		lines++
		if name, ok := strings.CutPrefix(l, "hello from "); ok {
			got[name]++
		}
	}
	if fails := n - sum(got); fails > 0 {
		got["FAIL"] = fails
	}
	return got
}

func sum(m map[string]int) int {
	n := 0
	for k, v := range m {
		if k != "FAIL" {
			n += v
		}
	}
	return n
}

// shell runs a shell script in a pod (pod:NAME) or a cluster host
// (host:NAME).
func (c *localCluster) shell(where, script string) string {
	c.t.Helper()
	kind, name, _ := strings.Cut(where, ":")
	var out string
	var err error
	if kind == "pod" {
		out, err = c.podnet("exec", name, "--", "sh", "-c", script)
	} else {
		out, err = c.hostExec(name, "sh", "-c", script)
	}
	if err != nil {
		c.t.Fatalf("%s: %v\n%s", where, err, out)
	}
	return out
}

// spread fails unless n requests reached every endpoint at least 20% of
// the time and none failed.
func spread(t *testing.T, what string, got map[string]int, endpoints, n int) {
	t.Helper()
	if got["FAIL"] > 0 || len(got) != endpoints {
		t.Fatalf("%s: %d requests reached %v, want all of %d endpoints and no failure", what, n, got, endpoints)
	}
	for name, k := range got {
		if k*5 < n {
			t.Errorf("%s: endpoint %s got %d of %d requests (< 20%%): %v", what, name, k, n, got)
		}
	}
}

// TestClusterServices: the Services acceptance in one 3-node cluster. A
// 3-replica Deployment behind ClusterIP, NodePort (Cluster and Local) and
// ClientIP-affinity Services is reached from a pod on another node, from a
// node, from a host-network pod, from itself (hairpin) and from outside;
// a Service without endpoints refuses at once; endpoints follow scaling;
// UDP moves to a replacement endpoint; an established connection survives
// an agent kill -9 and 100 unrelated syncs; after everything is deleted
// the nodes' tables are back to what they were.
func TestClusterServices(t *testing.T) {
	c, _, _ := newLocalCluster(t, clusterOpts{nodes: 3, backend: "vxlan"})
	// The baseline: the table once the agent's proxy has laid out its
	// static part, before any Service of the test's, with podnet's own
	// ingress Service (kube-system/podnet-ingress: every node's proxy
	// behind a LoadBalancer address) fully programmed: its load-balancer
	// address and both ports' endpoints on every node.
	baseline := map[string]string{}
	nodeCount := len(c.rec.Topology.Nodes())
	for _, h := range c.rec.Topology.Nodes() {
		eventually(t, "the service layout and the ingress Service on "+h.Name, 30*time.Second, func() (bool, string) {
			out, err := c.hostExec(h.Name, "nft", "list", "table", "inet", "podnet")
			baseline[h.Name] = out
			return err == nil && strings.Contains(out, "set services-layout-") &&
				strings.Contains(out, "goto ext-kube-system/podnet-ingress/tcp/443") &&
				strings.Count(out, `"kube-system/podnet-ingress/tcp/80/cluster"`) == nodeCount &&
				strings.Count(out, `"kube-system/podnet-ingress/tcp/443/cluster"`) == nodeCount, out
		})
	}
	// The client and the host-network pod go first, so that the scheduler
	// (fewest pods) spreads the replicas over all three nodes.
	client := c.run("client", 2, nil, "sleep", "infinity")
	c.run("hostpod", 3, []string{"--network", "host"}, "sleep", "infinity")
	c.apply(fmt.Sprintf(webApp, filepath.Join(c.bin, "podnet")))
	eps, lag := c.waitReady("web", 3, 60*time.Second)
	t.Logf("3 endpoints on every node %s after the EndpointSlice", lag)
	nodes := map[string]bool{}
	for _, n := range eps {
		nodes[n] = true
	}
	if len(nodes) < 2 {
		t.Errorf("the 3 replicas are all on one node: %v", eps)
	}
	web := c.service("web")
	vip := web.Spec.ClusterIP
	if net.ParseIP(vip) == nil {
		t.Fatalf("service web has no cluster IP: %+v", web.Spec)
	}
	url := "http://" + vip + "/"

	t.Run("get svc shows kubectl's columns", func(t *testing.T) {
		out := c.must("get", "svc")
		for _, want := range []string{"NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "web-np", "NodePort", "80:30080/TCP", vip} {
			if !strings.Contains(out, want) {
				t.Errorf("get svc lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("ClusterIP from a pod on another node spreads over the 3 endpoints", func(t *testing.T) {
		spread(t, "client pod", c.answers("pod:client", url, 300), 3, 300)
	})
	t.Run("ClusterIP from a node", func(t *testing.T) {
		spread(t, "node "+c.node(1).Name, c.answers("host:"+c.node(1).Name, url, 300), 3, 300)
	})
	t.Run("ClusterIP from a host-network pod", func(t *testing.T) {
		spread(t, "hostpod", c.answers("pod:hostpod", url, 300), 3, 300)
	})
	t.Run("pod to Service to pod keeps the client's pod IP", func(t *testing.T) {
		out := c.shell("pod:client", "curl -sS -m 2 "+url)
		if !strings.Contains(out, "client: "+client.Status.PodIP+"\n") {
			t.Fatalf("the endpoint saw another address than the client's %s:\n%s", client.Status.PodIP, out)
		}
	})
	t.Run("hairpin: a pod reaches itself through its Service", func(t *testing.T) {
		pods := c.podsOf("app=web")
		self := pods[0]
		got := c.answers("pod:"+self, url, 60)
		if got["FAIL"] > 0 || got[self] == 0 {
			t.Fatalf("%s through its Service: %v (want no failure and some answers from itself)", self, got)
		}
	})
	t.Run("session affinity pins a client to one endpoint for 50 requests", func(t *testing.T) {
		sticky := c.service("web-sticky").Spec.ClusterIP
		got := c.answers("pod:client", "http://"+sticky+"/", 50)
		if len(got) != 1 || got["FAIL"] > 0 {
			t.Fatalf("50 requests with ClientIP affinity reached %v, want one endpoint", got)
		}
	})
	t.Run("a Service without ready endpoints refuses within 10 ms", func(t *testing.T) {
		// From the client pod's namespace, 20 connects; the median counts,
		// so a scheduling hiccup of this shared machine does not.
		addr := c.service("nothing").Spec.ClusterIP + ":80"
		var took []time.Duration
		for range 20 {
			var err error
			start := time.Now()
			c.inPod("client", func() error {
				var conn net.Conn
				conn, err = net.DialTimeout("tcp", addr, 2*time.Second)
				if err == nil {
					conn.Close()
				}
				return nil
			})
			took = append(took, time.Since(start))
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("connect to %s (no endpoints): %v, want connection refused", addr, err)
			}
		}
		sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
		if took[len(took)/2] > 10*time.Millisecond {
			t.Errorf("refused after a median of %s (all: %v), want ≤ 10 ms", took[len(took)/2], took)
		}
	})
	t.Run("an unallocated service IP is rejected, not routed", func(t *testing.T) {
		out := c.shell("pod:client", "curl -sS -o /dev/null -m 2 -w '%{exitcode}\\n' http://10.111.222.123/ 2>/dev/null || true")
		if strings.TrimSpace(out) != "7" {
			t.Fatalf("curl to an unallocated service IP: exit %q, want 7 (refused)", out)
		}
	})
	t.Run("UDP moves to the replacement endpoint within 1 s", func(t *testing.T) {
		c.checkUDPFailover(t, "client", vip+":8081")
	})
	t.Run("an established connection survives an agent kill -9 and 100 unrelated syncs", func(t *testing.T) {
		c.checkConnSurvives(t, "client", url)
	})
	t.Run("endpoints follow scaling 3 -> 10 -> 1 within 1 s on every node", func(t *testing.T) {
		for _, n := range []int{10, 1} {
			c.must("scale", "deployment", "web", "--replicas", strconv.Itoa(n))
			_, lag := c.waitReady("web", n, 90*time.Second)
			if lag > time.Second {
				t.Errorf("scale to %d: the nodes followed the EndpointSlices after %s, want ≤ 1 s", n, lag)
			}
		}
	})
	t.Run("NodePort via every node; Cluster masquerades, Local keeps the source", func(t *testing.T) {
		// The pods scaled away must be gone: a terminating endpoint still
		// serves Local traffic on its node when no ready one is there.
		eventually(t, "1 pod of web left", 60*time.Second, func() (bool, string) {
			out, _ := c.podnet("get", "pods", "-l", "app=web", "-o", "name")
			return len(strings.Fields(out)) == 1, out
		})
		eps := c.readyEndpoints("web")
		if len(eps) != 1 {
			t.Fatalf("want 1 endpoint after scaling, have %v", eps)
		}
		var epNode string
		for _, n := range eps {
			epNode = n
		}
		outside := c.rec.Topology.Host(cluster.RoleOutside)
		for _, h := range c.rec.Topology.Nodes() {
			out := c.shell("host:outside", fmt.Sprintf("curl -sS -m 3 http://%s:30080/", h.IP()))
			if !strings.Contains(out, "hello from ") {
				t.Errorf("NodePort via %s: %q", h.Name, out)
			} else if strings.Contains(out, "client: "+outside.IP().String()+"\n") {
				t.Errorf("NodePort via %s with the Cluster policy kept the outside address:\n%s", h.Name, out)
			}
			out, err := c.hostExec("outside", "curl", "-sS", "-m", "1", fmt.Sprintf("http://%s:30081/", h.IP()))
			switch {
			case h.Name == epNode && (err != nil || !strings.Contains(out, "client: "+outside.IP().String()+"\n")):
				t.Errorf("Local NodePort via %s (has the endpoint) must answer and keep the source %s: %v\n%s", h.Name, outside.IP(), err, out)
			case h.Name != epNode && err == nil:
				t.Errorf("Local NodePort via %s (no local endpoint) answered:\n%s", h.Name, out)
			}
		}
	})
	t.Run("bad input is refused with the field named, and nothing is stored", func(t *testing.T) {
		c.checkBadServices(t, vip)
	})
	t.Run("after everything is deleted the tables are back to their baseline", func(t *testing.T) {
		c.must("delete", "deployment", "web")
		for _, s := range []string{"web", "web-np", "web-local", "web-sticky", "nothing"} {
			c.must("delete", "svc", s)
		}
		c.must("delete", "pod", "client")
		c.must("delete", "pod", "hostpod")
		for _, h := range c.rec.Topology.Nodes() {
			eventually(t, h.Name+"'s table back to its baseline", 60*time.Second, func() (bool, string) {
				now, _ := c.hostExec(h.Name, "nft", "list", "table", "inet", "podnet")
				return now == baseline[h.Name], diffLines(baseline[h.Name], now)
			})
		}
	})
}

// podsOf lists the names of the running pods with a label selector.
func (c *localCluster) podsOf(selector string) []string {
	c.t.Helper()
	var list struct {
		Items []corev1.Pod `json:"items"`
	}
	out := c.must("get", "pods", "-l", selector, "-o", "json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		c.t.Fatalf("decode pods: %v\n%s", err, out)
	}
	var names []string
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			names = append(names, p.Name)
		}
	}
	sort.Strings(names)
	return names
}

// podNetNS returns the network namespace of a pod from its agent's record.
func (c *localCluster) podNetNS(pod string) string {
	c.t.Helper()
	recs, _ := filepath.Glob(filepath.Join(c.parent, c.name, "agent", "*", "pods", "*", "pod.json"))
	for _, p := range recs {
		b, _ := os.ReadFile(p)
		var r struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
			NetNS     string `json:"netns"`
		}
		if json.Unmarshal(b, &r) == nil && r.Name == pod && r.Namespace == "default" && r.NetNS != "" {
			return r.NetNS
		}
	}
	c.t.Fatalf("no record of pod %s", pod)
	return ""
}

// inPod runs f on a thread inside a pod's network namespace.
func (c *localCluster) inPod(pod string, f func() error) error {
	return netns.Do(netns.Path(c.podNetNS(pod)), f)
}

// checkUDPFailover: a client sends a datagram every 10 ms to the UDP port
// of a Service; the endpoint that answers is deleted; replies must come
// from another endpoint within 1 s of the delete.
func (c *localCluster) checkUDPFailover(t *testing.T, from, addr string) {
	var conn net.Conn
	if err := c.inPod(from, func() (err error) {
		conn, err = net.Dial("udp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	type reply struct {
		name string
		at   time.Time
	}
	replies := make(chan reply, 1024)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		buf := make([]byte, 1500)
		for {
			conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, err := conn.Read(buf)
			select {
			case <-stop:
				return
			default:
			}
			if err != nil {
				continue
			}
			name, _, _ := strings.Cut(string(buf[:n]), " ")
			replies <- reply{name, time.Now()}
		}
	}()
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			fmt.Fprintf(conn, "ping %d", i)
		}
	}()
	var first string
	select {
	case r := <-replies:
		first = r.name
	case <-time.After(10 * time.Second):
		t.Fatalf("no UDP reply from %s", addr)
	}
	out, err := c.podnet("delete", "pod", first, "--wait=false")
	if err != nil {
		t.Fatalf("delete pod %s: %v\n%s", first, err, out)
	}
	deleted := time.Now()
	for {
		select {
		case r := <-replies:
			if r.name != first {
				if d := r.at.Sub(deleted); d > time.Second {
					t.Errorf("UDP reached the replacement endpoint %s %s after the delete of %s, want ≤ 1 s", r.name, d, first)
				} else {
					t.Logf("UDP moved from %s to %s %s after the delete", first, r.name, d.Round(time.Millisecond))
				}
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("UDP still answered only by %s 10 s after its delete", first)
		}
	}
}

// checkConnSurvives: a keep-alive HTTP connection through the ClusterIP,
// then the agent of the client's node and of the endpoint's node killed
// with -9 and restarted, and 100 syncs of unrelated Services; the same
// connection (same local port) answers every request.
func (c *localCluster) checkConnSurvives(t *testing.T, from, url string) {
	var conn net.Conn
	host := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
	if err := c.inPod(from, func() (err error) {
		conn, err = net.DialTimeout("tcp", host+":80", 2*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 4096)
	var server string
	get := func(what string) {
		t.Helper()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(conn, "GET /%s HTTP/1.1\r\nHost: web\r\n\r\n", strings.ReplaceAll(what, " ", "-")); err != nil {
			t.Fatalf("%s: write: %v", what, err)
		}
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("%s: the connection broke: %v", what, err)
		}
		body := string(buf[:n])
		i := strings.Index(body, "hello from ")
		if i < 0 {
			t.Fatalf("%s: answer %q", what, body)
		}
		name, _, _ := strings.Cut(body[i+len("hello from "):], "\n")
		if server == "" {
			server = name
		} else if name != server {
			t.Fatalf("%s: answered by %s, the connection was with %s", what, name, server)
		}
	}
	get("before")
	clientNode := c.pod(from).Spec.NodeName
	serverNode := c.pod(server).Spec.NodeName
	for _, node := range uniq(clientNode, serverNode) {
		a := c.rec.Agent(node)
		pid := a.PID()
		if pid == 0 {
			t.Fatalf("agent of %s not running", node)
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, "agent of "+node+" gone", 5*time.Second, func() (bool, string) { return a.PID() == 0, "" })
		get("agent of " + node + " dead")
		lease := c.nodeLease(node)
		if _, err := a.Start(); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the restarted agent of "+node+" holds a new lease", 20*time.Second, func() (bool, string) {
			l := c.nodeLease(node)
			return l != 0 && l != lease, fmt.Sprintf("lease %x (old %x)", l, lease)
		})
		get("agent of " + node + " restarted")
	}
	// 100 syncs: 50 Services created and deleted one by one, each waited
	// for on the client's node.
	for i := range 50 {
		name := fmt.Sprintf("unrelated-%d", i)
		c.must("create", "service", "clusterip", name, "--tcp=80:8080")
		ip := c.service(name).Spec.ClusterIP
		// No selector, no endpoints: its verdict is a reject.
		eventually(t, name+" on "+clientNode, 10*time.Second, func() (bool, string) {
			out, _ := c.hostExec(clientNode, "nft", "list", "map", "inet", "podnet", "service-noep")
			return strings.Contains(out, ip+" . "), out
		})
		c.must("delete", "svc", name)
		eventually(t, name+" gone from "+clientNode, 10*time.Second, func() (bool, string) {
			out, _ := c.hostExec(clientNode, "nft", "list", "table", "inet", "podnet")
			return !strings.Contains(out, ip+" . "), out
		})
		if i%10 == 9 {
			get(fmt.Sprintf("after %d syncs", 2*(i+1)))
		}
	}
	get("after 100 syncs")
}

func uniq(s ...string) []string {
	var out []string
	for _, x := range s {
		if len(out) == 0 || out[len(out)-1] != x {
			out = append(out, x)
		}
	}
	return out
}

// checkBadServices: manifests the API must refuse, each naming the field,
// and none stored.
func (c *localCluster) checkBadServices(t *testing.T, takenIP string) {
	cases := []struct{ name, manifest, want string }{
		{"port out of range", `apiVersion: v1
kind: Service
metadata: {name: bad1}
spec:
  selector: {app: web}
  ports: [{port: 70000}]`, "spec.ports[0].port"},
		{"duplicate port names", `apiVersion: v1
kind: Service
metadata: {name: bad2}
spec:
  selector: {app: web}
  ports: [{name: a, port: 80}, {name: a, port: 81}]`, "spec.ports[1].name"},
		{"taken clusterIP", fmt.Sprintf(`apiVersion: v1
kind: Service
metadata: {name: bad3}
spec:
  clusterIP: %s
  selector: {app: web}
  ports: [{port: 80}]`, takenIP), "spec.clusterIP"},
		{"clusterIP outside the range", `apiVersion: v1
kind: Service
metadata: {name: bad4}
spec:
  clusterIP: 192.168.1.1
  selector: {app: web}
  ports: [{port: 80}]`, "spec.clusterIP"},
		{"taken nodePort", `apiVersion: v1
kind: Service
metadata: {name: bad5}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, nodePort: 30080}]`, "nodePort"},
		{"nodePort out of range", `apiVersion: v1
kind: Service
metadata: {name: bad6}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 80, nodePort: 80}]`, "spec.ports[0].nodePort"},
		{"invalid selector", `apiVersion: v1
kind: Service
metadata: {name: bad7}
spec:
  selector: {"app": "not a valid value!"}
  ports: [{port: 80}]`, "spec.selector"},
		{"unknown field", `apiVersion: v1
kind: Service
metadata: {name: bad8}
spec:
  selectr: {app: web}
  ports: [{port: 80}]`, "selectr"},
		{"Deployment selector not matching its template", `apiVersion: apps/v1
kind: Deployment
metadata: {name: bad9}
spec:
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: b}}
    spec:
      containers: [{name: c, command: [sleep, infinity]}]`, "selector"},
	}
	for _, tc := range cases {
		out := c.applyErr(tc.manifest)
		if !strings.Contains(out, tc.want) {
			t.Errorf("%s: the error does not name %q:\n%s", tc.name, tc.want, out)
		}
	}
	for i := 1; i <= 8; i++ {
		if out, err := c.podnet("get", "svc", fmt.Sprintf("bad%d", i)); err == nil {
			t.Errorf("a refused Service was stored:\n%s", out)
		}
	}
	if out, err := c.podnet("get", "deployment", "bad9"); err == nil {
		t.Errorf("a refused Deployment was stored:\n%s", out)
	}
}

// load sends new-connection HTTP requests from a pod in a loop until
// stopped, and reports the status of each ("200", or "000" for a failure).
type load struct {
	cmd  *exec.Cmd
	out  lockedBuffer
	stop string
}

// lockedBuffer is a bytes.Buffer written by a command and read meanwhile.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// requests is how many requests the load has finished so far.
func (l *load) requests() int { return strings.Count(l.out.String(), "\n") }

// waitRequests waits until the load has finished n more requests.
func (l *load) waitRequests(t *testing.T, n int) {
	t.Helper()
	from := l.requests()
	eventually(t, fmt.Sprintf("%d more requests of the load", n), 60*time.Second, func() (bool, string) {
		return l.requests() >= from+n, l.out.String()
	})
}

func (c *localCluster) startLoad(pod, url string) *load {
	c.t.Helper()
	return c.runLoad("pod:"+pod, func(stop string) string {
		return fmt.Sprintf(`while [ ! -e %s ]; do curl -s -o /dev/null -m 3 -w '%%{http_code}\n' %s || true; sleep 0.02; done`, stop, url)
	})
}

// runLoad runs a load script in where (pod:NAME or host:NAME, as shell);
// script gets the file whose creation must stop it.
func (c *localCluster) runLoad(where string, script func(stop string) string) *load {
	c.t.Helper()
	l := &load{stop: filepath.Join(c.t.TempDir(), "stop")}
	kind, name, _ := strings.Cut(where, ":")
	args := []string{"exec", name, "--", "sh", "-c", script(l.stop)}
	if kind != "pod" {
		args = append([]string{"cluster"}, args...)
	}
	l.cmd = exec.Command(filepath.Join(c.bin, "podnet"), args...)
	l.cmd.Env = c.env()
	l.cmd.Stdout = &l.out
	l.cmd.Stderr = os.Stderr
	if err := l.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { os.WriteFile(l.stop, nil, 0o644); l.cmd.Process.Kill(); l.cmd.Wait() })
	return l
}

// finish stops the load and returns the number of requests and failures.
func (l *load) finish(t *testing.T) (total, failed int) {
	t.Helper()
	if err := os.WriteFile(l.stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("load: %v", err)
		}
	case <-time.After(15 * time.Second):
		l.cmd.Process.Kill()
		t.Fatalf("load did not stop")
	}
	for _, s := range strings.Fields(l.out.String()) {
		total++
		if s != "200" {
			failed++
		}
	}
	return total, failed
}

// TestClusterServiceRollingUpdate: a rolling update of the 3-replica
// Deployment behind its Service, under a steady load of new connections
// from a pod on another node, fails no request; neither does a kill -9 and
// restart of every agent under the same load.
func TestClusterServiceRollingUpdate(t *testing.T) {
	c, _, _ := newLocalCluster(t, clusterOpts{nodes: 3, backend: "vxlan"})
	c.run("client", 2, nil, "sleep", "infinity")
	c.apply(fmt.Sprintf(webApp, filepath.Join(c.bin, "podnet")))
	eps, _ := c.waitReady("web", 3, 60*time.Second)
	url := "http://" + c.service("web").Spec.ClusterIP + "/"
	before := c.podsOf("app=web")

	t.Run("rolling update", func(t *testing.T) {
		l := c.startLoad("client", url)
		l.waitRequests(t, 10)
		c.must("rollout", "restart", "deployment/web")
		c.must("rollout", "status", "deployment/web", "--timeout", "120s")
		newEPs, _ := c.waitReady("web", 3, 60*time.Second)
		total, failed := l.finish(t)
		t.Logf("%d requests during the rollout, %d failed", total, failed)
		if total < 50 {
			t.Errorf("only %d requests during the rollout", total)
		}
		if failed != 0 {
			t.Errorf("%d of %d requests failed during the rolling update", failed, total)
		}
		for ip := range newEPs {
			if _, old := eps[ip]; old {
				t.Errorf("endpoint %s survived the rollout (old pods %v)", ip, before)
			}
		}
	})
	t.Run("kill -9 and restart of every agent", func(t *testing.T) {
		l := c.startLoad("client", url)
		for _, h := range c.rec.Topology.Nodes() {
			a := c.rec.Agent(h.Name)
			lease := c.nodeLease(h.Name)
			if err := syscall.Kill(a.PID(), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			eventually(t, "agent of "+h.Name+" gone", 5*time.Second, func() (bool, string) { return a.PID() == 0, "" })
			if _, err := a.Start(); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the restarted agent of "+h.Name+" holds a new lease", 20*time.Second, func() (bool, string) {
				l := c.nodeLease(h.Name)
				return l != 0 && l != lease, fmt.Sprintf("lease %x (old %x)", l, lease)
			})
			l.waitRequests(t, 20)
		}
		c.waitReady("web", 3, 30*time.Second)
		total, failed := l.finish(t)
		t.Logf("%d requests across the agent restarts, %d failed", total, failed)
		if failed != 0 {
			t.Errorf("%d of %d requests failed across kill -9 and restart of every agent", failed, total)
		}
	})
}

// TestClusterServiceNodeDeath: a node dies (its agent killed, its
// underlay link down); after the eviction timeout its pods are replaced on
// the other nodes and the Service answers every request again.
func TestClusterServiceNodeDeath(t *testing.T) {
	c, _, _ := newLocalCluster(t, clusterOpts{nodes: 3, backend: "vxlan", args: []string{"--pod-eviction-timeout", "5s"}})
	c.run("client", 1, nil, "sleep", "infinity")
	c.apply(fmt.Sprintf(webApp, filepath.Join(c.bin, "podnet")))
	eps, _ := c.waitReady("web", 3, 60*time.Second)
	url := "http://" + c.service("web").Spec.ClusterIP + "/"
	victim := c.node(3)
	onVictim := 0
	for _, n := range eps {
		if n == victim.Name {
			onVictim++
		}
	}
	if onVictim == 0 {
		t.Fatalf("no replica on %s: %v", victim.Name, eps)
	}
	a := c.rec.Agent(victim.Name)
	if err := syscall.Kill(a.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	check(t)(c.hostExec(victim.Name, "ip", "link", "set", cluster.UplinkName, "down"))
	died := time.Now()
	eventually(t, "3 ready endpoints, none on the dead node "+victim.Name, 90*time.Second, func() (bool, string) {
		eps := c.readyEndpoints("web")
		for _, n := range eps {
			if n == victim.Name {
				return false, fmt.Sprint(eps)
			}
		}
		return len(eps) == 3, fmt.Sprint(eps)
	})
	t.Logf("replicas replaced %s after the node died", time.Since(died).Round(time.Second))
	c.waitReadyOn("web", 3, c.node(1).Name, c.node(2).Name)
	got := c.answers("pod:client", url, 30)
	if got["FAIL"] > 0 {
		t.Fatalf("after the replacement: %v", got)
	}
}

// waitReadyOn waits until the named nodes' tables carry exactly the
// Service's n ready endpoints.
func (c *localCluster) waitReadyOn(svc string, n int, nodes ...string) {
	c.t.Helper()
	eps := c.readyEndpoints(svc)
	eventually(c.t, fmt.Sprintf("the %d endpoints of %s on %v", n, svc, nodes), 30*time.Second, func() (bool, string) {
		for _, h := range nodes {
			out, _ := c.hostExec(h, "nft", "list", "map", "inet", "podnet", "service-eps")
			if strings.Count(out, " . ") < n {
				return false, out
			}
			for ip := range eps {
				if !strings.Contains(out, ip+" . ") {
					return false, h + " lacks " + ip + ":\n" + out
				}
			}
		}
		return true, ""
	})
}
