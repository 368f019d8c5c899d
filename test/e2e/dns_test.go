package e2e

import (
	"syscall"

	"fmt"
	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/cluster"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dnsApp: the echo server behind a ClusterIP Service and a headless one
// (whose pods have hostnames under it).
const dnsApp = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        command: [%q, echo-server, --listen, ":8080"]
        ports:
        - {name: http, containerPort: 8080}
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
---
apiVersion: v1
kind: Service
metadata:
  name: web-headless
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - {name: http, port: 8080, targetPort: http}
---
apiVersion: v1
kind: Service
metadata:
  name: ext
spec:
  type: ExternalName
  externalName: web.default.svc.cluster.local
`

// TestClusterDNS: cluster DNS answered on every node at 10.96.0.10, from
// pods on two nodes: resolv.conf, the spec's record types with dig,
// glibc's getent and curl by short name, and a new Service answered on
// every node within a second.
func TestClusterDNS(t *testing.T) {
	c, _, _ := newLocalCluster(t, clusterOpts{nodes: 2, backend: "vxlan"})
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, h := range c.rec.Topology.Nodes() {
			dir := filepath.Join(c.rec.AgentStateDir(), h.Name, "dns")
			log, _ := os.ReadFile(filepath.Join(dir, "dns.log"))
			cf, _ := os.ReadFile(filepath.Join(dir, "Corefile"))
			rules, _ := c.hostExec(h.Name, "sh", "-c", `ip -br addr; nft list ruleset | grep -n -B3 -A3 "10.96.0.10\|notrack"; ss -lnup; dig +time=1 +tries=1 @10.96.0.10 web.default.svc.cluster.local; dig +time=1 +tries=1 @10.96.0.10 dns-version.cluster.local TXT | grep -A2 ANSWER; dig +tcp +time=1 +tries=1 @10.96.0.10 web.default.svc.cluster.local | grep -A2 -i "answer\|status"`)
			t.Logf("%s node DNS:\n%s\n%s\n%s", h.Name, lastLines(string(log), 30), cf, rules)
		}
	})
	c.run("client", 2, nil, "sleep", "infinity")
	c.run("client1", 1, nil, "sleep", "infinity")
	c.apply(fmt.Sprintf(dnsApp, filepath.Join(c.bin, "podnet")))
	c.waitReady("web", 2, 60*time.Second)
	vip := c.service("web").Spec.ClusterIP

	resolv := c.shell("pod:client", "cat /etc/resolv.conf")
	for _, want := range []string{"nameserver 10.96.0.10", "search default.svc.cluster.local svc.cluster.local cluster.local", "options ndots:5"} {
		if !strings.Contains(resolv, want) {
			t.Errorf("resolv.conf lacks %q:\n%s", want, resolv)
		}
	}
	dig := func(pod string, args ...string) string {
		out, _ := c.podnet(append([]string{"exec", pod, "--", "dig", "+short", "+time=2", "+tries=1"}, args...)...)
		return strings.TrimSpace(out)
	}
	eventually(t, "web answered by the node's DNS", 20*time.Second, func() (bool, string) {
		got := dig("client", "web.default.svc.cluster.local")
		return got == vip, got
	})
	for _, q := range []struct {
		args []string
		want func(string) bool
	}{
		{[]string{"dns-version.cluster.local", "TXT"}, func(s string) bool { return s == `"1.1.0"` }},
		{[]string{"_http._tcp.web.default.svc.cluster.local", "SRV"}, func(s string) bool { return s == "0 100 80 web.default.svc.cluster.local." }},
		{[]string{"-x", vip}, func(s string) bool { return s == "web.default.svc.cluster.local." }},
		{[]string{"web-headless.default.svc.cluster.local"}, func(s string) bool { return len(strings.Fields(s)) == 2 }},
		{[]string{"ext.default.svc.cluster.local"}, func(s string) bool { return strings.HasPrefix(s, "web.default.svc.cluster.local.\n"+vip) }},
		{[]string{"kube-dns.kube-system.svc.cluster.local"}, func(s string) bool { return s == "10.96.0.10" }},
		{[]string{"+search", "web"}, func(s string) bool { return s == vip }},
	} {
		if got := dig("client", q.args...); !q.want(got) {
			t.Errorf("dig %v: %q", q.args, got)
		}
	}
	if got := c.shell("pod:client", "getent hosts web"); !strings.HasPrefix(got, vip+" ") {
		t.Errorf("getent hosts web: %q", got)
	}
	if got := c.shell("pod:client", "curl -sf --max-time 5 http://web/healthz && echo OK"); !strings.Contains(got, "OK") {
		t.Errorf("curl http://web/: %q", got)
	}
	// A pod's own records: hostname + subdomain under a headless Service
	// of that name, and the pod A record (pods insecure).
	c.apply(`apiVersion: v1
kind: Service
metadata:
  name: sub
spec:
  clusterIP: None
  selector: {app: sub}
  ports:
  - {name: x, port: 9, targetPort: 9}
---
apiVersion: v1
kind: Pod
metadata:
  name: named
  labels: {app: sub}
spec:
  hostname: h1
  subdomain: sub
  containers:
  - {name: c, command: [sleep, infinity]}
`)
	var namedIP string
	eventually(t, "named running with an IP", 30*time.Second, func() (bool, string) {
		p := c.pod("named")
		namedIP = p.Status.PodIP
		return p.Status.Phase == "Running" && namedIP != "", string(p.Status.Phase)
	})
	eventually(t, "h1.sub.default.svc.cluster.local answered from the other node", 10*time.Second, func() (bool, string) {
		got := dig("client1", "h1.sub.default.svc.cluster.local")
		return got == namedIP, got
	})
	podName := strings.ReplaceAll(namedIP, ".", "-") + ".default.pod.cluster.local"
	if got := dig("client", podName); got != namedIP {
		t.Errorf("dig %s: %q, want %s", podName, got, namedIP)
	}
	// nslookup, the other client the seed uses.
	if got := c.shell("pod:client", "nslookup web"); !strings.Contains(got, "web.default.svc.cluster.local") || !strings.Contains(got, "Address: "+vip) {
		t.Errorf("nslookup web:\n%s", got)
	}
	// /etc/hosts before DNS: a hostAlias named like the Service wins, and
	// another alias resolves without DNS.
	c.apply(`apiVersion: v1
kind: Pod
metadata:
  name: aliased
spec:
  hostAliases:
  - {ip: 192.0.2.7, hostnames: [web, db.example]}
  containers:
  - {name: c, command: [sleep, infinity]}
`)
	eventually(t, "aliased running", 30*time.Second, func() (bool, string) {
		ph := c.pod("aliased").Status.Phase
		return ph == "Running", string(ph)
	})
	if got := c.shell("pod:aliased", "getent hosts web; getent hosts db.example"); !strings.HasPrefix(got, "192.0.2.7 ") || strings.Contains(got, vip) || strings.Count(got, "192.0.2.7") != 2 {
		t.Errorf("hostAliases before DNS: getent hosts web, db.example:\n%s", got)
	}
	if got := c.shell("pod:aliased", "dig +short +time=2 +tries=1 web.default.svc.cluster.local"); strings.TrimSpace(got) != vip {
		t.Errorf("dig in the aliased pod (DNS itself unchanged): %q", got)
	}
	// dnsPolicy None takes dnsConfig only. A host-network pod sees its
	// node's resolv.conf under ClusterFirst, the cluster's under
	// ClusterFirstWithHostNet.
	c.apply(`apiVersion: v1
kind: Pod
metadata:
  name: nonedns
spec:
  dnsPolicy: None
  dnsConfig:
    nameservers: [10.96.0.10]
    searches: [svc.cluster.local]
    options: [{name: ndots, value: "2"}]
  containers:
  - {name: c, command: [sleep, infinity]}
`)
	c.apply(`apiVersion: v1
kind: Pod
metadata:
  name: hostwithnet
spec:
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  containers:
  - {name: c, command: [sleep, infinity]}
---
apiVersion: v1
kind: Pod
metadata:
  name: hostfirst
spec:
  hostNetwork: true
  containers:
  - {name: c, command: [sleep, infinity]}
`)
	for _, p := range []string{"nonedns", "hostwithnet", "hostfirst"} {
		eventually(t, p+" running", 30*time.Second, func() (bool, string) {
			ph := c.pod(p).Status.Phase
			return ph == "Running", string(ph)
		})
	}
	if got := c.shellOut("pod:nonedns", "cat /etc/resolv.conf; getent hosts web.default"); got != "nameserver 10.96.0.10\nsearch svc.cluster.local\noptions ndots:2\n"+vip+"      web.default.svc.cluster.local\n" && !strings.Contains(got, vip) {
		t.Errorf("None + dnsConfig:\n%s", got)
	}

	if got := c.shell("pod:hostwithnet", "cat /etc/resolv.conf"); got != "nameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n" {
		t.Errorf("ClusterFirstWithHostNet host-network pod's resolv.conf:\n%s", got)
	}
	if got := c.shell("pod:hostwithnet", "getent hosts web"); !strings.HasPrefix(got, vip+" ") {
		t.Errorf("getent hosts web in the ClusterFirstWithHostNet pod: %q", got)
	}
	nodeResolv := c.shell("node:"+c.pod("hostfirst").Spec.NodeName, "cat /etc/resolv.conf")
	if got := c.shell("pod:hostfirst", "cat /etc/resolv.conf"); got != nodeResolv || strings.Contains(got, "10.96.0.10") {
		t.Errorf("ClusterFirst host-network pod's resolv.conf:\n%s\nwant its node's:\n%s", got, nodeResolv)
	}

	// Outside names through the nodes' forward to the LAN's DNS server on
	// the outside host: its zone and its hosts file.
	outIP := c.rec.Topology.Host(cluster.RoleOutside).IP().String()
	if got := dig("client", "outside.lan"); got != outIP {
		t.Errorf("dig outside.lan: %q", got)
	}
	if got := dig("client", "www.lan"); got != "outside.lan.\n"+outIP {
		t.Errorf("dig www.lan: %q", got)
	}
	if got := c.shell("pod:client1", "getent hosts outside"); !strings.HasPrefix(got, outIP+" ") {
		t.Errorf("getent hosts outside: %q", got)
	}
	if got, _ := c.podnet("exec", "client", "--", "dig", "+time=2", "+tries=1", "nothing.lan"); !strings.Contains(got, "NXDOMAIN") {
		t.Errorf("dig nothing.lan:\n%s", got)
	}
	// An unknown outside name fails fast (SERVFAIL from outside), never
	// waiting for a timeout.
	start := time.Now()
	c.podnet("exec", "client", "--", "getent", "hosts", "nothing.invalid")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("an unknown name took %v", d)
	}

	// A new Service is answered by every node within a second.
	c.apply("apiVersion: v1\nkind: Service\nmetadata:\n  name: late\nspec:\n  selector: {app: web}\n  ports:\n  - {port: 81, targetPort: 8080}\n")
	created := time.Now()
	late := c.service("late").Spec.ClusterIP
	for _, pod := range []string{"client", "client1"} {
		eventually(t, "late on "+pod, 2*time.Second, func() (bool, string) {
			got := dig(pod, "late.default.svc.cluster.local")
			return got == late, got
		})
	}
	t.Logf("a new Service answered on both nodes %v after its creation returned", time.Since(created).Round(time.Millisecond))
	if d := time.Since(created); d > 1500*time.Millisecond {
		t.Errorf("a new Service took %v to be answered everywhere", d)
	}

	// 0 failed lookups while the node's agent is killed -9 and restarted,
	// and while the Corefile is reloaded.
	loop := make(chan string, 1)
	go func() {
		out, _ := c.podnet("exec", "client", "--", "sh", "-c",
			"n=0; f=0; end=$(($(date +%s)+10)); while [ $(date +%s) -lt $end ]; do n=$((n+1)); dig +short +time=1 +tries=1 web.default.svc.cluster.local | grep -q . || f=$((f+1)); sleep 0.05; done; echo lookups=$n failed=$f")
		loop <- strings.TrimSpace(out)
	}()
	time.Sleep(time.Second)
	a := c.rec.Agent(c.node(2).Name)
	if pid := a.PID(); pid == 0 {
		t.Fatalf("agent of node 2 not running")
	} else if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "agent gone", 5*time.Second, func() (bool, string) { return a.PID() == 0, "" })
	time.Sleep(time.Second)
	if _, err := a.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	edited := strings.Replace(api.DefaultCorefile, "    ready\n", "    ready\n    hosts {\n       10.1.2.3 edited.test\n       fallthrough\n    }\n", 1)
	var cm strings.Builder
	cm.WriteString("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: coredns\n  namespace: kube-system\ndata:\n  Corefile: |\n")
	for _, l := range strings.Split(strings.TrimSuffix(edited, "\n"), "\n") {
		cm.WriteString("    " + l + "\n")
	}
	c.apply(cm.String())
	edit := time.Now()
	for _, pod := range []string{"client", "client1"} {
		eventually(t, "the edited Corefile on "+pod, 3*time.Second, func() (bool, string) {
			got := dig(pod, "edited.test")
			return got == "10.1.2.3", got
		})
	}
	t.Logf("the edited Corefile served on both nodes %v after apply", time.Since(edit).Round(time.Millisecond))
	if got := <-loop; !strings.HasSuffix(got, "failed=0") {
		t.Errorf("lookups during the agent's kill -9 and the reload: %s", got)
	} else {
		t.Logf("during kill -9 and reload: %s", got)
	}

	// python3 -m http.server does a reverse lookup before it listens: with
	// a node DNS server that answers at once it listens within 1s. Timed
	// inside a pod (the process started to its port answering), so the
	// CLI's own round trips on a loaded machine do not count.
	out := c.shellOut("pod:client", `python3 -m http.server 8000 >/dev/null 2>&1 & pid=$!; s=$(date +%s%N)
for i in $(seq 500); do curl -s -o /dev/null --max-time 1 http://127.0.0.1:8000/ && break; sleep 0.01; done
e=$(date +%s%N); kill $pid; echo "listening-after-ms $(( (e - s) / 1000000 ))"`)
	var ms int
	if _, err := fmt.Sscanf(strings.TrimSpace(out[strings.LastIndex(out, "listening-after-ms"):]), "listening-after-ms %d", &ms); err != nil || !strings.Contains(out, "listening-after-ms") {
		t.Fatalf("timing python3 -m http.server: %v\n%s", err, out)
	}
	if d := time.Duration(ms) * time.Millisecond; d > time.Second {
		t.Errorf("python3 -m http.server listened %v after it started", d)
	} else {
		t.Logf("python3 -m http.server listening %v after it started", d)
	}
}

// shellOut is shell without failing the test on a non-zero exit.
func (c *localCluster) shellOut(where, script string) string {
	_, name, _ := strings.Cut(where, ":")
	out, _ := c.podnet("exec", name, "--", "sh", "-c", script)
	return out
}
