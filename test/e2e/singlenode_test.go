package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/agent"
	"github.com/podnet/podnet/internal/cni"
	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/overlay"
	"github.com/podnet/podnet/internal/sandbox"
	"github.com/podnet/podnet/internal/store"
)

// TestSingleNode is the first half of the networking notes, for real: pods
// on a bridge reach each other and the gateway, leave through masquerade,
// and are reached through published ports from outside, from the node and
// from themselves; none and host modes behave as Docker's.
func TestSingleNode(t *testing.T) {
	n := newNode(t)
	echo := filepath.Join(n.bin, "podnet")
	n.mustPodnet("run", "web", "--wait", "-p", "8080:8080", "-p", "9090:9091/udp", "--",
		echo, "echo-server", "--listen", ":8080", "--udp", ":9091", "--name", "web")
	n.mustPodnet("run", "client", "--wait", "--", "sleep", "infinity")
	web, client := n.pod("web"), n.pod("client")
	if web.Status.PodIP == "" || client.Status.PodIP == "" || web.Status.PodIP == client.Status.PodIP {
		t.Fatalf("pod IPs: web %q client %q", web.Status.PodIP, client.Status.PodIP)
	}
	if web.Status.HostIP != nodeIP {
		t.Fatalf("hostIP %q, want %s", web.Status.HostIP, nodeIP)
	}

	t.Run("pods ping each other and the gateway", func(t *testing.T) {
		check(t)(n.podnet("exec", "client", "--", "ping", "-c1", "-W2", web.Status.PodIP))
		check(t)(n.podnet("exec", "web", "--", "ping", "-c1", "-W2", client.Status.PodIP))
		check(t)(n.podnet("exec", "client", "--", "ping", "-c1", "-W2", "10.244.0.1"))
	})

	t.Run("egress is masqueraded to the node address", func(t *testing.T) {
		ln := make(chan string, 1)
		go func() {
			out, _ := inNS(n.extPath, "socat", "-T5", "TCP-LISTEN:7777,reuseaddr", "SYSTEM:echo $SOCAT_PEERADDR")
			ln <- out
		}()
		var out string
		var err error
		for i := 0; i < 50; i++ {
			if out, err = n.podnet("exec", "client", "--", "socat", "-T3", "-", "TCP:"+extIP+":7777"); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil || strings.TrimSpace(out) != nodeIP {
			t.Fatalf("external host saw %q (err %v), want the node's %s", out, err, nodeIP)
		}
		<-ln
	})

	t.Run("published TCP port from outside, node, localhost and hairpin", func(t *testing.T) {
		cases := []struct {
			name       string
			run        func() (string, error)
			wantClient string
		}{
			{"external host", func() (string, error) { return inNS(n.extPath, "curl", "-sS", "-m5", "http://"+nodeIP+":8080/ext") }, extIP},
			{"node address", func() (string, error) { return inNS(n.path, "curl", "-sS", "-m5", "http://"+nodeIP+":8080/node") }, ""},
			{"node localhost", func() (string, error) { return inNS(n.path, "curl", "-sS", "-m5", "http://127.0.0.1:8080/lo") }, ""},
			{"hairpin", func() (string, error) {
				return n.podnet("exec", "web", "--", "curl", "-sS", "-m5", "http://"+nodeIP+":8080/self")
			}, ""},
			{"other pod via node", func() (string, error) {
				return n.podnet("exec", "client", "--", "curl", "-sS", "-m5", "http://"+nodeIP+":8080/other")
			}, ""},
		}
		for _, c := range cases {
			out, err := c.run()
			if err != nil || !strings.Contains(out, "hello from web") {
				t.Errorf("%s: %v\n%s", c.name, err, out)
				continue
			}
			if c.wantClient != "" && !strings.Contains(out, "client: "+c.wantClient) {
				t.Errorf("%s: the pod should see the real client %s:\n%s", c.name, c.wantClient, out)
			}
		}
	})

	t.Run("the node's ingress proxy answers on the node address", func(t *testing.T) {
		// No Ingress: the built-in default backend's 404, over HTTP and
		// HTTPS (its self-signed default certificate).
		for _, url := range []string{"http://" + nodeIP + "/", "https://" + nodeIP + "/"} {
			eventually(t, "the ingress proxy at "+url, 20*time.Second, func() (bool, string) {
				out, _ := inNS(n.extPath, "curl", "-sk", "-m2", "-o", "/dev/null", "-w", "%{http_code}", url)
				return out == "404", out
			})
		}
	})

	t.Run("published UDP port", func(t *testing.T) {
		out, err := inNS(n.extPath, "sh", "-c", "echo ping | socat -T2 - UDP:"+nodeIP+":9090")
		if err != nil || !strings.Contains(out, "web from "+extIP) {
			t.Fatalf("UDP: %v\n%s", err, out)
		}
	})

	t.Run("a taken host port is refused with a clear error", func(t *testing.T) {
		n.mustPodnet("run", "web2", "-p", "8080:80", "--", "sleep", "infinity")
		eventually(t, "port conflict reported", 20*time.Second, func() (bool, string) {
			p := n.pod("web2")
			return strings.Contains(p.Status.Message, "8080") && strings.Contains(p.Status.Message, "allocated"), p.Status.Message
		})
		if p := n.pod("web2"); p.Status.PodIP != "" || exists(netns.Path(sandbox.NetNSName(p.UID))) {
			t.Fatalf("a refused pod kept an IP or namespace: %+v", p.Status)
		}
		out, _ := inNS(n.extPath, "curl", "-sS", "-m5", "http://"+nodeIP+":8080/still")
		if !strings.Contains(out, "hello from web") {
			t.Fatalf("the first owner lost its port:\n%s", out)
		}
		n.mustPodnet("delete", "pod", "web2")
	})

	t.Run("none mode has only loopback; host mode sees the node", func(t *testing.T) {
		n.mustPodnet("run", "lonely", "--network", "none", "--wait", "--", "sleep", "infinity")
		n.mustPodnet("run", "hosty", "--network", "host", "--wait", "--", "sleep", "infinity")
		out := check(t)(n.podnet("exec", "lonely", "--", "ip", "-o", "link"))
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(lines[0], ": lo:") {
			t.Fatalf("none-mode pod links:\n%s", out)
		}
		if p := n.pod("lonely"); p.Status.PodIP != "" {
			t.Fatalf("none-mode pod got an IP %q", p.Status.PodIP)
		}
		if out := check(t)(inNS(n.path, filepath.Join(n.bin, "podnet"), "exec", "hosty", "--", "ip", "-o", "link")); !strings.Contains(out, uplink) {
			t.Fatalf("host-mode pod does not see the node's %s:\n%s", uplink, out)
		}
		if p := n.pod("hosty"); p.Status.PodIP != nodeIP {
			t.Fatalf("host-mode pod IP %q, want the node's %s", p.Status.PodIP, nodeIP)
		}
	})

	t.Run("resolv.conf and hosts are the pod's", func(t *testing.T) {
		out := check(t)(n.podnet("exec", "client", "--", "cat", "/etc/hosts"))
		if !strings.Contains(out, client.Status.PodIP+"\tclient") {
			t.Fatalf("/etc/hosts:\n%s", out)
		}
	})

	t.Run("cluster DNS under podnet up", func(t *testing.T) {
		// podnet up runs the node-local DNS too: pods get 10.96.0.10 and
		// the search path, cluster names come from the kubernetes plugin
		// and outside names through the node's upstream (the LAN server).
		rc := check(t)(n.podnet("exec", "client", "--", "cat", "/etc/resolv.conf"))
		for _, want := range []string{"nameserver 10.96.0.10", "search default.svc.cluster.local svc.cluster.local cluster.local", "options ndots:5"} {
			if !strings.Contains(rc, want) {
				t.Fatalf("resolv.conf lacks %q:\n%s", want, rc)
			}
		}
		n.mustPodnet("expose", "pod", "web", "--port", "80", "--target-port", "8080")
		defer n.mustPodnet("delete", "svc", "web")
		eventually(t, "the Service answered by name", 20*time.Second, func() (bool, string) {
			out, err := n.podnet("exec", "client", "--", "dig", "+short", "+time=1", "+tries=1", "web.default.svc.cluster.local")
			ip, perr := netip.ParseAddr(strings.TrimSpace(out))
			return err == nil && perr == nil && netip.MustParsePrefix("10.96.0.0/12").Contains(ip), out
		})
		if out, err := n.podnet("exec", "client", "--", "curl", "-sS", "-m5", "http://web/"); err != nil || !strings.Contains(out, "hello from web") {
			t.Fatalf("curl http://web/ (search path): %v\n%s", err, out)
		}
		if out, err := n.podnet("exec", "client", "--", "getent", "hosts", "outside.lan"); err != nil || !strings.HasPrefix(out, extIP) {
			t.Fatalf("getent hosts outside.lan (forwarded to the LAN server): %v\n%s", err, out)
		}
		start := time.Now()
		out, _ := n.podnet("exec", "client", "--", "dig", "+time=2", "+tries=1", "nobody.example.invalid")
		if took := time.Since(start); !strings.Contains(out, "status: SERVFAIL") && !strings.Contains(out, "status: NXDOMAIN") || took > 2*time.Second {
			t.Fatalf("an unknown name must fail fast (took %v):\n%s", took, out)
		}
	})

	t.Run("deleting pods removes their namespaces, links and rules", func(t *testing.T) {
		var netnsNames []string
		for _, name := range []string{"web", "client", "lonely", "hosty"} {
			netnsNames = append(netnsNames, sandbox.NetNSName(n.pod(name).UID))
			n.mustPodnet("delete", "pod", name)
		}
		for _, ns := range netnsNames {
			if exists(netns.Path(ns)) || exists(filepath.Join(sandbox.EtcNetnsDir, ns)) {
				t.Errorf("pod namespace %s or its /etc/netns left behind", ns)
			}
		}
		links := check(t)(inNS(n.path, "ip", "-o", "link"))
		// lo, the uplink, the bridge, the overlay's podnet.vxlan (and the
		// node DNS address's dummy link, where the kernel has the driver)
		want := []string{"lo", uplink, cni.DefaultBridge, overlay.DefaultVXLANDevice}
		slices.Sort(want)
		got := slices.DeleteFunc(linkNames(links), func(l string) bool { return l == "podnet-dns" })
		if !slices.Equal(got, want) {
			t.Errorf("links after deleting every pod: %v, want %v:\n%s", got, want, links)
		}
		if left := podElements(t, n.path); len(left) > 0 {
			t.Errorf("nftables elements left behind: %v", left)
		}
	})
}

// linkNames returns the sorted names of the links in `ip -o link` output,
// without any @peer suffix.
func linkNames(out string) []string {
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// podElements lists the sets and maps of the node's podnet table that hold
// elements, leaving out the table's layout marker and the elements of the
// system Services podnet itself creates (the ingress Service in front of
// the node's own proxy: commented kube-system/..., or naming the node's
// address, an endpoint no pod has).
func podElements(t *testing.T, nsPath string) []string {
	t.Helper()
	out := check(t)(inNS(nsPath, "nft", "-j", "list", "table", "inet", "podnet"))
	var doc struct {
		Nftables []map[string]struct {
			Name string            `json:"name"`
			Elem []json.RawMessage `json:"elem"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j: %v", err)
	}
	var left []string
	for _, obj := range doc.Nftables {
		for _, kind := range []string{"set", "map"} {
			o, ok := obj[kind]
			if !ok || strings.HasPrefix(o.Name, "layout-") {
				continue
			}
			for _, e := range o.Elem {
				if !strings.Contains(string(e), "kube-system/") && !strings.Contains(string(e), `"`+nodeIP+`"`) {
					left = append(left, o.Name+": "+string(e))
				}
			}
		}
	}
	return left
}

// TestAgentRestart: kill -9 of the node (store and agent), then a restart:
// the pods are adopted untouched and an established connection through a
// published port survives. While nothing runs, the node's table is broken
// (the pod's masquerade and published-port elements deleted, the hostports
// chain flushed); the restarted agent must repair it and take a new node
// lease before the kernel state is compared with the one before the kill.
func TestAgentRestart(t *testing.T) {
	n := newNode(t)
	n.mustPodnet("run", "echo", "--wait", "-p", "5000:5000", "--", "socat", "TCP-LISTEN:5000,fork,reuseaddr", "EXEC:cat")
	before := n.pod("echo")
	podIP := before.Status.PodIP
	dial := func() (net.Conn, error) {
		var conn net.Conn
		err := netns.Do(n.extPath, func() error {
			var err error
			for i := 0; i < 50; i++ {
				if conn, err = net.DialTimeout("tcp", nodeIP+":5000", 2*time.Second); err == nil {
					return nil
				}
				time.Sleep(100 * time.Millisecond)
			}
			return err
		})
		return conn, err
	}
	conn, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	roundTrip := func(conn net.Conn, msg string) {
		t.Helper()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatalf("write %q: %v", msg, err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo %q: got %q, %v", msg, buf, err)
		}
	}
	roundTrip(conn, "before")
	kernel := func() string {
		rules := check(t)(inNS(n.path, "nft", "list", "table", "inet", "podnet"))
		links := check(t)(inNS(n.path, "ip", "-br", "link"))
		addrs := check(t)(inNS(n.path, "ip", "-br", "addr"))
		return rules + links + addrs
	}
	nftSays := func(args ...string) string {
		out, _ := inNS(n.path, "nft", append([]string{"list"}, args...)...)
		return out
	}
	// What the agent programs for the pod: its masquerade element, its
	// published port, the chain that DNATs published ports.
	repaired := func() (bool, string) {
		masq := nftSays("set", "inet", "podnet", "masq-src4")
		hp := nftSays("map", "inet", "podnet", "hostports4")
		chain := nftSays("chain", "inet", "podnet", "hostports")
		ok := strings.Contains(masq, podIP) && strings.Contains(hp, podIP+" . 5000") && strings.Contains(chain, "dnat")
		return ok, fmt.Sprintf("masq-src4:\n%s\nhostports4:\n%s\nchain hostports:\n%s", masq, hp, chain)
	}
	if ok, last := repaired(); !ok {
		t.Fatalf("before the kill the table lacks the pod's elements or the hostports rule:\n%s", last)
	}
	stateBefore := kernel()
	lease := n.nodeLease()
	if lease == 0 {
		t.Fatal("node1 holds no lease before the kill")
	}

	n.kill9()
	roundTrip(conn, "while-down")
	// Break the node's table while nothing runs: an agent that never
	// reconciles leaves it so.
	check(t)(inNS(n.path, "nft", "delete", "element", "inet", "podnet", "masq-src4", "{ "+podIP+" }"))
	check(t)(inNS(n.path, "nft", "flush", "map", "inet", "podnet", "hostports4"))
	check(t)(inNS(n.path, "nft", "flush", "chain", "inet", "podnet", "hostports"))
	if ok, last := repaired(); ok {
		t.Fatalf("could not break the table:\n%s", last)
	}
	roundTrip(conn, "table-broken") // conntrack carries the established connection

	n.start()
	eventually(t, "pod still Running after restart", 20*time.Second, func() (bool, string) {
		p := n.pod("echo")
		return p.Status.Phase == "Running" && p.Status.PodIP == before.Status.PodIP, string(p.Status.Phase)
	})
	eventually(t, "the restarted agent repairs the table", 20*time.Second, repaired)
	eventually(t, "the restarted agent holds a new node lease", 20*time.Second, func() (bool, string) {
		l := n.nodeLease()
		return l != 0 && l != lease, fmt.Sprintf("lease %x (old %x)", l, lease)
	})
	roundTrip(conn, "after")
	// A new connection goes through the repaired published port.
	conn2, err := dial()
	if err != nil {
		t.Fatalf("new connection through the published port after the restart: %v", err)
	}
	defer conn2.Close()
	roundTrip(conn2, "new-after")
	after := n.pod("echo")
	if after.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Fatalf("container restarted across the agent restart: %+v", after.Status.ContainerStatuses[0])
	}
	if got := kernel(); got != stateBefore {
		t.Fatalf("kernel state after the restart is not what it was:\n%s\nbefore:\n%s\nafter:\n%s", diffLines(stateBefore, got), stateBefore, got)
	}
}

// nodeLease returns the etcd lease ID of node1's lease key (0 if none),
// read from the node's embedded store: each agent start grants a new one.
func (n *node) nodeLease() int64 {
	n.t.Helper()
	cli, err := store.Connect(store.ClientConfig{NetNS: n.ns})
	if err != nil {
		n.t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, agent.NodeLeaseKey("node1"))
	if err != nil || len(resp.Kvs) == 0 {
		return 0
	}
	return resp.Kvs[0].Lease
}
