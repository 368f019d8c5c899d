package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ingressApp: the echo server (it answers with the path it saw) behind a
// Service. %[1]q is the podnet binary.
const ingressApp = `apiVersion: apps/v1
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
        command: [%[1]q, echo-server, --listen, ":8080"]
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
`

// ingressWeb is the Ingress with two hosts, a rewrite-target, and TLS on
// web.test; %[1]s is more paths of plain.test.
const ingressWeb = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  annotations:
    nginx.ingress.kubernetes.io/use-regex: "true"
    nginx.ingress.kubernetes.io/rewrite-target: /$2
spec:
  tls:
  - hosts: [web.test]
    secretName: web-tls
  rules:
  - host: web.test
    http:
      paths:
      - path: /app(/|$)(.*)
        pathType: ImplementationSpecific
        backend: {service: {name: web, port: {number: 80}}}
  - host: plain.test
    http:
      paths:
      - path: /app(/|$)(.*)
        pathType: ImplementationSpecific
        backend: {service: {name: web, port: {name: http}}}
%[1]s`

// ingressPath is one more path of plain.test in ingressWeb.
const ingressPath = `      - path: %s
        pathType: ImplementationSpecific
        backend: {service: {name: web, port: {number: 80}}}
`

// ingressChurn is an Ingress of its own on plain.test (%[1]s its name,
// %[2]s its path), to change many times.
const ingressChurn = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: %[1]s
spec:
  rules:
  - host: plain.test
    http:
      paths:
      - path: %[2]s
        pathType: Prefix
        backend: {service: {name: web, port: {number: 80}}}
`

// ingressBroken names a Service that does not exist.
const ingressBroken = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: broken
spec:
  rules:
  - host: broken.test
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: nope, port: {number: 80}}}
`

// TestClusterIngress: the Ingress acceptance on a 2-node cluster, from the
// outside host through either node's IP: HTTP by Host header with the
// rewritten path seen by the backend; HTTPS with the Secret's certificate
// (verified by curl against the test's CA); the 308 redirect of a TLS host;
// the default backend's 404; 503 and a described problem for a missing
// Service; the node IPs in ADDRESS; a new path served on every node within
// a second; no failed request under load across 100 changes of Ingresses
// and endpoints, nor across a kill -9 and restart of every agent (the
// proxy is a process of its own, adopted by the new agent).
func TestClusterIngress(t *testing.T) {
	c, _, _ := newLocalCluster(t, clusterOpts{nodes: 2, backend: "vxlan"})
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, h := range c.rec.Topology.Nodes() {
			log, _ := os.ReadFile(filepath.Join(c.rec.AgentStateDir(), h.Name, "ingress", "ingress.log"))
			var lines []string
			for _, l := range strings.Split(string(log), "\n") {
				if !strings.Contains(l, `"msg":"request"`) || !strings.Contains(l, `"status":200`) {
					lines = append(lines, l)
				}
			}
			t.Logf("---- %s ingress.log (without 200s):\n%s", h.Name, lastLines(strings.Join(lines, "\n"), 40))
		}
	})
	var ips []string
	for _, h := range c.rec.Topology.Nodes() {
		ips = append(ips, h.IP().String())
	}
	bin := filepath.Join(c.bin, "podnet")
	c.apply(fmt.Sprintf(ingressApp, bin))
	caFile := c.tlsSecret("web-tls", "web.test")
	c.apply(fmt.Sprintf(ingressWeb, "") + "---\n" + ingressBroken)
	c.waitReady("web", 2, 60*time.Second)

	curl := func(args ...string) string {
		out, _ := c.hostExec("outside", append([]string{"curl", "-sS", "-m", "3"}, args...)...)
		return out
	}
	status := func(host, url string) string {
		return curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "-H", "Host: "+host, url)
	}
	for _, ip := range ips {
		eventually(t, "plain.test served on "+ip, 20*time.Second, func() (bool, string) {
			out := curl("-H", "Host: plain.test", "http://"+ip+"/app/hello/there")
			return strings.HasPrefix(out, "hello from web-") && strings.Contains(out, "\npath: /hello/there\n"), out
		})
		if got := status("web.test", "http://"+ip+"/app/x?y=1"); got != "308 https://web.test/app/x?y=1" {
			t.Errorf("%s: HTTP to a TLS host: %q, want a 308 to https", ip, got)
		}
		out := curl("--cacert", caFile, "--resolve", "web.test:443:"+ip, "https://web.test/app/secure")
		if !strings.Contains(out, "\npath: /secure\n") {
			t.Errorf("%s: HTTPS web.test with the Secret's certificate: %q", ip, out)
		}
		// The default certificate for another name fails verification.
		if out := curl("--cacert", caFile, "--resolve", "other.test:443:"+ip, "https://other.test/"); !strings.Contains(out, "curl: (60)") {
			t.Errorf("%s: HTTPS other.test verified against the test's CA: %q", ip, out)
		}
		if got := status("nope.test", "http://"+ip+"/"); got != "404 " {
			t.Errorf("%s: unknown host: %q, want 404 from the default backend", ip, got)
		}
		eventually(t, "503 for the Ingress naming a missing Service on "+ip, 10*time.Second, func() (bool, string) {
			got := status("broken.test", "http://"+ip+"/")
			return got == "503 ", got
		})
	}
	eventually(t, "the node IPs in ADDRESS", 20*time.Second, func() (bool, string) {
		out, _ := c.podnet("get", "ingress", "web")
		return strings.Contains(out, strings.Join(ips, ",")), out
	})
	// The ingress Service (type LoadBalancer, the nodes as endpoints) gives
	// the Ingresses one address of the LAN: listed first in ADDRESS, and
	// outside reaches the proxies through it, over HTTP and HTTPS.
	var lbIP string
	eventually(t, "the ingress Service's LoadBalancer address", 20*time.Second, func() (bool, string) {
		out, _ := c.podnet("get", "svc", "-n", "kube-system", "podnet-ingress", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}")
		lbIP = strings.TrimSpace(out)
		return net.ParseIP(lbIP) != nil, out
	})
	eventually(t, "the LB address first in ADDRESS", 20*time.Second, func() (bool, string) {
		out, _ := c.podnet("get", "ingress", "web")
		return strings.Contains(out, lbIP+","+strings.Join(ips, ",")), out
	})
	eventually(t, "plain.test through the LB address "+lbIP, 20*time.Second, func() (bool, string) {
		out := curl("-H", "Host: plain.test", "http://"+lbIP+"/app/via-lb")
		return strings.Contains(out, "\npath: /via-lb\n"), out
	})
	if out := curl("--cacert", caFile, "--resolve", "web.test:443:"+lbIP, "https://web.test/app/secure-lb"); !strings.Contains(out, "\npath: /secure-lb\n") {
		t.Errorf("HTTPS web.test through the LB address: %q", out)
	}
	eventually(t, "the missing Service described", 20*time.Second, func() (bool, string) {
		out, _ := c.podnet("describe", "ingress", "broken")
		return strings.Contains(out, "Problems") && strings.Contains(out, "nope"), out
	})

	t.Run("a new path served on every node", func(t *testing.T) {
		c.checkNewPathLatency(t, ips)
	})
	t.Run("100 changes under load", func(t *testing.T) {
		l := c.startOutsideLoad(ips, "plain.test", "/app/load")
		l.waitRequests(t, 20)
		dir := t.TempDir()
		changes := 0
		for round := range 20 {
			docs := []string{fmt.Sprintf(ingressWeb, fmt.Sprintf(ingressPath, fmt.Sprintf("/round-%d", round)))}
			for i := range 4 {
				docs = append(docs, fmt.Sprintf(ingressChurn, fmt.Sprintf("churn-%d", i), fmt.Sprintf("/churn-%d-%d", i, round)))
			}
			f := filepath.Join(dir, fmt.Sprintf("round-%d.yaml", round))
			if err := os.WriteFile(f, []byte(strings.Join(docs, "---\n")), 0o644); err != nil {
				t.Fatal(err)
			}
			c.must("apply", "-f", f)
			changes += len(docs)
			// Endpoints change too: a third replica joins, then leaves.
			switch round {
			case 6:
				c.must("scale", "deployment/web", "--replicas", "3")
			case 10:
				eventually(t, "3 ready endpoints", 30*time.Second, func() (bool, string) {
					eps := c.readyEndpoints("web")
					return len(eps) == 3, fmt.Sprint(eps)
				})
			case 13:
				c.must("scale", "deployment/web", "--replicas", "2")
			}
		}
		eventually(t, "2 ready endpoints", 30*time.Second, func() (bool, string) {
			eps := c.readyEndpoints("web")
			return len(eps) == 2, fmt.Sprint(eps)
		})
		l.waitRequests(t, 20)
		total, failed := l.finish(t)
		t.Logf("%d Ingress changes and endpoints scaled 2 -> 3 -> 2: %d requests, %d failed", changes, total, failed)
		if failed != 0 {
			t.Errorf("%d of %d requests failed across %d Ingress changes and scaling", failed, total, changes)
		}
	})
	t.Run("a rolling update of the backend under load", func(t *testing.T) {
		// Every pod is replaced: terminating endpoints are drained (no new
		// requests, kept-alive connections to them retried on a fresh
		// one), new ones join as they turn ready.
		l := c.startOutsideLoad(ips, "plain.test", "/app/load")
		l.waitRequests(t, 10)
		c.must("rollout", "restart", "deployment/web")
		c.must("rollout", "status", "deployment/web", "--timeout", "90s")
		eventually(t, "2 ready endpoints after the rollout", 30*time.Second, func() (bool, string) {
			eps := c.readyEndpoints("web")
			return len(eps) == 2, fmt.Sprint(eps)
		})
		l.waitRequests(t, 10)
		total, failed := l.finish(t)
		t.Logf("%d requests across a rolling update, %d failed", total, failed)
		if failed != 0 {
			t.Errorf("%d of %d requests failed across a rolling update of the backend", failed, total)
		}
	})
	t.Run("agent kill -9 under load", func(t *testing.T) {
		l := c.startOutsideLoad(ips, "plain.test", "/app/load")
		l.waitRequests(t, 10)
		for _, h := range c.rec.Topology.Nodes() {
			pidFile := filepath.Join(c.rec.AgentStateDir(), h.Name, "ingress", "ingress.pid")
			before, _ := os.ReadFile(pidFile)
			a := c.rec.Agent(h.Name)
			lease := c.nodeLease(h.Name)
			if err := syscall.Kill(a.PID(), syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			eventually(t, "agent of "+h.Name+" gone", 5*time.Second, func() (bool, string) { return a.PID() == 0, "" })
			l.waitRequests(t, 10)
			if _, err := a.Start(); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the restarted agent of "+h.Name+" holds a new lease", 20*time.Second, func() (bool, string) {
				l := c.nodeLease(h.Name)
				return l != 0 && l != lease, fmt.Sprintf("lease %x (old %x)", l, lease)
			})
			l.waitRequests(t, 10)
			if after, _ := os.ReadFile(pidFile); string(after) != string(before) {
				t.Errorf("%s: the ingress proxy was restarted with its agent: pid %q, then %q", h.Name, before, after)
			}
		}
		total, failed := l.finish(t)
		t.Logf("%d requests across kill -9 and restart of every agent, %d failed", total, failed)
		if failed != 0 {
			t.Errorf("%d of %d requests failed across kill -9 and restart of every agent", failed, total)
		}
	})
}

// tlsSecret makes a CA and a certificate for hosts signed by it, stores
// the pair as the kubernetes.io/tls Secret name with `podnet create secret
// tls`, and returns the CA's file.
func (c *localCluster) tlsSecret(name string, hosts ...string) string {
	t := c.t
	t.Helper()
	dir := t.TempDir()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(file, typ string, der []byte) string {
		p := filepath.Join(dir, file)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "podnet e2e CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafKey := key()
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: hosts[0]}, DNSNames: hosts,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(leafKey)
	if err != nil {
		t.Fatal(err)
	}
	c.must("create", "secret", "tls", name, "--cert", write("tls.crt", "CERTIFICATE", leafDER), "--key", write("tls.key", "EC PRIVATE KEY", keyDER))
	return write("ca.crt", "CERTIFICATE", caDER)
}

// checkNewPathLatency adds a path to the Ingress while the outside host
// polls it on every node, and checks that each node serves it within a
// second of the apply (and logs how soon).
func (c *localCluster) checkNewPathLatency(t *testing.T, ips []string) {
	ready := filepath.Join(t.TempDir(), "ready")
	// The poller prints "IP NANOSECONDS" for each node the first time it
	// answers 200 for the new path; it gives up after 10s.
	script := fmt.Sprintf(`touch %s; end=$(( $(date +%%s) + 10 ))
for ip in %s; do
  until [ "$(curl -s -o /dev/null -m 1 -w '%%{http_code}' -H 'Host: plain.test' http://$ip/new/x)" = 200 ]; do
    [ $(date +%%s) -gt $end ] && { echo "$ip timeout"; break; }
  done
  echo "$ip $(date +%%s%%N)"
done`, ready, strings.Join(ips, " "))
	cmd := exec.Command(filepath.Join(c.bin, "podnet"), "cluster", "exec", "outside", "--", "sh", "-c", script)
	cmd.Env = c.env()
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the poller started", 10*time.Second, func() (bool, string) { return exists(ready), out.String() })
	time.Sleep(50 * time.Millisecond) // its first 404s
	f := filepath.Join(t.TempDir(), "ing.yaml")
	if err := os.WriteFile(f, []byte(fmt.Sprintf(ingressWeb, fmt.Sprintf(ingressPath, "/new"))), 0o644); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	c.must("apply", "-f", f)
	after := time.Now()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("poller: %v\n%s", err, out.String())
	}
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		f := strings.Fields(l)
		ns, err := strconv.ParseInt(f[len(f)-1], 10, 64)
		if len(f) != 2 || err != nil {
			t.Errorf("new path not served: %s", l)
			continue
		}
		at := time.Unix(0, ns)
		t.Logf("%s served the new path %v after the apply started, %v after it returned (apply took %v)",
			f[0], at.Sub(before).Round(time.Millisecond), at.Sub(after).Round(time.Millisecond), after.Sub(before).Round(time.Millisecond))
		if at.Sub(after) > time.Second {
			t.Errorf("%s served the new path %v after the apply returned (> 1s)", f[0], at.Sub(after))
		}
	}
	// The proxies' own measure: change event to swap.
	re := regexp.MustCompile(`msg="routing table swapped".* latency=(\S+)`)
	for _, h := range c.rec.Topology.Nodes() {
		log, _ := os.ReadFile(filepath.Join(c.rec.AgentStateDir(), h.Name, "ingress", "ingress.log"))
		var lat []string
		for _, m := range re.FindAllStringSubmatch(string(log), -1) {
			lat = append(lat, m[1])
		}
		t.Logf("%s: %d swaps so far, change-to-swap latency of the last ones: %v", h.Name, len(lat), lastN(lat, 5))
	}
}

func lastN(s []string, n int) []string { return s[max(0, len(s)-n):] }

// startOutsideLoad sends new-connection HTTP requests for host+path from
// the outside host to each node IP in turn until stopped; each request's
// status is one line ("000" for a failure), as startLoad's.
func (c *localCluster) startOutsideLoad(ips []string, host, path string) *load {
	c.t.Helper()
	return c.runLoad("host:outside", func(stop string) string {
		return fmt.Sprintf(`while [ ! -e %s ]; do for ip in %s; do curl -s -o /dev/null -m 3 -w '%%{http_code}\n' -H 'Host: %s' http://$ip%s || true; done; sleep 0.01; done`,
			stop, strings.Join(ips, " "), host, path)
	})
}
