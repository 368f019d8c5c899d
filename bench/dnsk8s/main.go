// Command dnsk8s benchmarks `podnet dns`'s kubernetes plugin (bench/run.sh
// dnsk8s, in `make bench`). It starts its own embedded store and `podnet dns`
// on 127.0.0.1 only, and measures:
//
//   - with N Services (default 10000): dnsperf's QPS over random Service
//     names, the server's VmRSS/VmHWM, and the time from a Service's
//     creation in the store to its first answer (p50/p99 over 20);
//   - the queries a glibc client (`getent ahostsv4 www.lan`, ndots:5, the
//     cluster search path) sends for an external name, without and with
//     `autopath @kubernetes`, counted in the server's query log. This
//     part runs in a network namespace the bench creates (its own loopback;
//     `ip netns exec` bind-mounts /etc/netns/NAME/resolv.conf), with a pod
//     of address 127.0.0.1 in the store so autopath finds the client.
//
// There is no CoreDNS peer: its kubernetes plugin needs a Kubernetes API
// server, podnet's reads etcd. The numbers are absolute.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func main() {
	podnet := flag.String("podnet", "bin/podnet", "the podnet binary")
	n := flag.Int("services", 10000, "Services in the store")
	dur := flag.Int("duration", 10, "dnsperf seconds")
	inner := flag.Bool("autopath-inner", false, "internal: the autopath part, run inside the bench's netns")
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	onSignal()
	bin, err := filepath.Abs(*podnet)
	if err != nil {
		fail(err)
	}
	if *inner {
		if err := autopathInner(bin); err != nil {
			fail(err)
		}
		return
	}
	if err := k8sBench(bin, *n, *dur); err != nil {
		fail(err)
	}
	if err := autopathOuter(); err != nil {
		fail(err)
	}
}

var (
	exitMu    sync.Mutex
	exitFuncs = map[int]func(){}
	exitNext  int
)

// atExit registers f to run on SIGINT/SIGTERM (deferred calls do not run
// then); the returned func runs it once and unregisters it.
func atExit(f func()) func() {
	exitMu.Lock()
	defer exitMu.Unlock()
	id := exitNext
	exitNext++
	var once sync.Once
	g := func() { once.Do(f) }
	exitFuncs[id] = g
	return func() {
		exitMu.Lock()
		delete(exitFuncs, id)
		exitMu.Unlock()
		g()
	}
}

func onSignal() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-c
		exitMu.Lock()
		fs := exitFuncs
		exitFuncs = map[int]func(){}
		exitMu.Unlock()
		for _, f := range fs {
			f()
		}
		os.Exit(130)
	}()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "dnsk8s:", err)
	os.Exit(1)
}

// env is a store and a `podnet dns`, both on 127.0.0.1, and their cleanup.
type env struct {
	dir      string
	etcd     *store.Embedded
	st       *store.Store
	endpoint string
	dns      *exec.Cmd
	addr     string
	metrics  string
	undo     func()
}

func (e *env) close() {
	if e.undo != nil {
		e.undo()
	}
}

func (e *env) stop() {
	if e.dns != nil && e.dns.Process != nil {
		e.dns.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { e.dns.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			e.dns.Process.Kill()
			<-done
		}
	}
	if e.etcd != nil {
		e.etcd.Close()
	}
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	p := l.Addr().(*net.TCPAddr).Port
	u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
	if err != nil {
		return freePort()
	}
	u.Close()
	return p, nil
}

func startStore(ctx context.Context, e *env) error {
	e.undo = atExit(e.stop)
	dir, err := os.MkdirTemp("", "dnsk8s-")
	if err != nil {
		return err
	}
	e.dir = dir
	cp, err := freePort()
	if err != nil {
		return err
	}
	pp, err := freePort()
	if err != nil {
		return err
	}
	e.endpoint = fmt.Sprintf("http://127.0.0.1:%d", cp)
	e.etcd, err = store.StartEmbedded(ctx, store.EmbeddedConfig{DataDir: filepath.Join(dir, "etcd"), ClientURL: e.endpoint, PeerURL: fmt.Sprintf("http://127.0.0.1:%d", pp)})
	if err != nil {
		return fmt.Errorf("embedded store: %w", err)
	}
	cli, err := store.Connect(store.ClientConfig{Endpoints: e.etcd.Endpoints()})
	if err != nil {
		return fmt.Errorf("connect store: %w", err)
	}
	e.st = store.New(cli)
	if err := e.st.EnsureNamespaces(ctx, "default", "kube-system"); err != nil {
		return fmt.Errorf("namespaces: %w", err)
	}
	if _, err := e.st.EnsureClusterConfig(ctx, api.ClusterConfig{ServiceCIDR: "10.96.0.0/16", NodePortRange: "30000-32767"}); err != nil {
		return fmt.Errorf("cluster config: %w", err)
	}
	return nil
}

// startDNS runs `podnet dns` with the Corefile made by corefile(port,
// metricsPort), port a free one when 0, and waits until probe answers.
func startDNS(e *env, bin, name string, port int, corefile func(port, mport int) string, probe string) error {
	var err error
	if port == 0 {
		if port, err = freePort(); err != nil {
			return err
		}
	}
	mport, err := freePort()
	if err != nil {
		return err
	}
	cf := filepath.Join(e.dir, "Corefile."+name)
	if err := os.WriteFile(cf, []byte(corefile(port, mport)), 0o644); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(e.dir, name+".log"))
	if err != nil {
		return err
	}
	e.dns = exec.Command(bin, "dns", "-conf", cf)
	e.dns.Stdout, e.dns.Stderr = logf, logf
	if err := e.dns.Start(); err != nil {
		return fmt.Errorf("podnet dns: %w", err)
	}
	e.addr = fmt.Sprintf("127.0.0.1:%d", port)
	e.metrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m, err := query(e.addr, probe); err == nil && m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("podnet dns (%s) did not answer %s within 30s: %s", name, probe, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func query(addr, name string) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	c := &dns.Client{Timeout: time.Second}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

func service(name string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
	s.Spec.Type = corev1.ServiceTypeClusterIP
	s.Spec.Ports = []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}
	return s
}

func rss(pid int) (rss, hwm string) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "VmRSS:" {
			rss = f[1]
		}
		if len(f) >= 2 && f[0] == "VmHWM:" {
			hwm = f[1]
		}
	}
	return rss, hwm
}

func k8sBench(bin string, n, dur int) error {
	ctx := context.Background()
	e := &env{}
	defer e.close()
	if err := startStore(ctx, e); err != nil {
		return err
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				if err := e.st.Create(ctx, service(fmt.Sprintf("s%d", i))); err != nil {
					errs <- fmt.Errorf("create service s%d: %w", i, err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	fmt.Printf("dnsk8s: %d Services created in the store in %.1fs\n", n, time.Since(t0).Seconds())
	t0 = time.Now()
	err := startDNS(e, bin, "k8s", 0, func(port, _ int) string {
		return fmt.Sprintf(".:%d {\n  bind 127.0.0.1\n  kubernetes cluster.local {\n    endpoint %s\n    startup_timeout 60s\n  }\n}\n", port, e.endpoint)
	}, fmt.Sprintf("s%d.default.svc.cluster.local", n-1))
	if err != nil {
		return err
	}
	fmt.Printf("dnsk8s: podnet dns start -> s%d answered: %.2fs\n", n-1, time.Since(t0).Seconds())
	r0, h0 := rss(e.dns.Process.Pid)

	// QPS: dnsperf over random Service names (a few NXDOMAINs mixed in).
	qf := filepath.Join(e.dir, "queries")
	f, err := os.Create(qf)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	rnd := rand.New(rand.NewSource(1))
	for i := 0; i < 10000; i++ {
		fmt.Fprintf(w, "s%d.default.svc.cluster.local A\n", rnd.Intn(n))
	}
	w.Flush()
	f.Close()
	host, port, _ := net.SplitHostPort(e.addr)
	perf := exec.Command("dnsperf", "-s", host, "-p", port, "-d", qf, "-c", "8", "-q", "200", "-l", strconv.Itoa(dur))
	if _, err := exec.LookPath("taskset"); err == nil {
		perf = exec.Command("taskset", append([]string{"-c", "0"}, perf.Args...)...)
		exec.Command("taskset", "-a", "-p", "-c", "1", strconv.Itoa(e.dns.Process.Pid)).Run()
	}
	out, err := perf.CombinedOutput()
	if err != nil {
		return fmt.Errorf("dnsperf: %w: %s", err, out)
	}
	qps := regexp.MustCompile(`Queries per second:\s+([0-9.]+)`).FindSubmatch(out)
	lost := regexp.MustCompile(`Queries lost:\s+(\S+)`).FindSubmatch(out)
	if qps == nil {
		return fmt.Errorf("dnsperf: no QPS in %s", out)
	}
	r1, h1 := rss(e.dns.Process.Pid)
	fmt.Printf("dnsk8s: kubernetes, %d Services: QPS %s (dnsperf -c 8 -q 200, %ds, lost %s)\n", n, qps[1], dur, lost[1])
	fmt.Printf("dnsk8s: podnet dns memory: VmRSS %s KiB after load (%s KiB idle), VmHWM %s KiB (%s idle)\n", r1, r0, h1, h0)

	// Creation in the store → first answer, 20 times.
	var lat []time.Duration
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("late%d", i)
		start := time.Now()
		if err := e.st.Create(ctx, service(name)); err != nil {
			return fmt.Errorf("create %s: %w", name, err)
		}
		for {
			m, err := query(e.addr, name+".default.svc.cluster.local")
			if err == nil && m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0 {
				break
			}
			if time.Since(start) > 10*time.Second {
				return fmt.Errorf("%s: not answered 10s after its creation", name)
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(start))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Printf("dnsk8s: Service created -> answered (20, polled every 1ms): p50 %.1fms p99 %.1fms (max)\n", ms(lat[9]), ms(lat[19]))
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// autopathOuter makes the netns and its resolv.conf, and runs the inner part
// there.
func autopathOuter() error {
	ns := fmt.Sprintf("pnb-dnsk8s-%d", os.Getpid())
	etc := filepath.Join("/etc/netns", ns)
	if err := exec.Command("ip", "netns", "add", ns).Run(); err != nil {
		return fmt.Errorf("ip netns add %s: %w", ns, err)
	}
	undo := atExit(func() { exec.Command("ip", "netns", "del", ns).Run(); os.RemoveAll(etc) })
	defer undo()
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return err
	}
	rc := "nameserver 127.0.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
	if err := os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte(rc), 0o644); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"netns", "exec", ns, self, "-autopath-inner"}
	flag.VisitAll(func(f *flag.Flag) {
		if f.Name == "podnet" {
			v, _ := filepath.Abs(f.Value.String())
			args = append(args, "-podnet", v)
		}
	})
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("autopath part in netns %s: %w", ns, err)
	}
	return nil
}

// autopathInner runs inside the netns: its own store and `podnet dns` on port
// 53 of the netns's loopback, a pod at 127.0.0.1, and getent.
func autopathInner(bin string) error {
	if err := exec.Command("ip", "link", "set", "lo", "up").Run(); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	// A pod has an eth0: getaddrinfo's AI_ADDRCONFIG asks nothing when only
	// loopback has an address. A veth pair, both ends in the namespace, with a
	// documentation address
	// on one end stands in; no route leaves the namespace.
	for _, a := range [][]string{{"link", "add", "eth0", "type", "veth", "peer", "name", "eth1"}, {"addr", "add", "192.0.2.1/32", "dev", "eth0"}, {"link", "set", "eth1", "up"}, {"link", "set", "eth0", "up"}} {
		if out, err := exec.Command("ip", a...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %v: %w: %s", a, err, out)
		}
	}
	ctx := context.Background()
	counts := map[bool]int{}
	for _, ap := range []bool{false, true} {
		e := &env{}
		err := func() error {
			defer e.close()
			if err := startStore(ctx, e); err != nil {
				return err
			}
			if err := clientPod(ctx, e.st); err != nil {
				return err
			}
			if err := e.st.Create(ctx, service("web")); err != nil {
				return err
			}
			autopath := ""
			if ap {
				autopath = "  autopath @kubernetes\n"
			}
			err := startDNS(e, bin, fmt.Sprintf("autopath-%v", ap), 53, func(port, mport int) string {
				return fmt.Sprintf(".:%d {\n  bind 127.0.0.1\n  errors\n  log . \"{type} {name} {rcode}\"\n  prometheus 127.0.0.1:%d\n%s  kubernetes cluster.local {\n    endpoint %s\n    pods verified\n  }\n  hosts {\n    192.0.2.80 www.lan\n    fallthrough\n  }\n}\n", port, mport, autopath, e.endpoint)
			}, "web.default.svc.cluster.local")
			if err != nil {
				return err
			}
			before, err := requests(e.metrics)
			if err != nil {
				return err
			}
			logName := filepath.Join(e.dir, fmt.Sprintf("autopath-%v.log", ap))
			fi, err := os.Stat(logName)
			if err != nil {
				return err
			}
			out, err := exec.Command("getent", "ahostsv4", "www.lan").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "192.0.2.80") {
				m, qerr := query(e.addr, "www.lan")
				return fmt.Errorf("getent ahostsv4 www.lan (autopath %v): %v: %s (www.lan asked directly: %v %v)", ap, err, out, m, qerr)
			}
			after, err := requests(e.metrics)
			if err != nil {
				return err
			}
			delta := int(after - before)
			b, err := os.ReadFile(logName)
			if err != nil {
				return err
			}
			var asked []string
			for _, l := range strings.Split(string(b[fi.Size():]), "\n") {
				// Only getent's: the start-up probe's last answer can be
				// logged (and counted) after the counter was read.
				if i := strings.Index(l, "] "); i >= 0 && strings.Contains(l, "www.lan.") {
					asked = append(asked, strings.TrimSpace(l[i+2:]))
				}
			}
			counts[ap] = len(asked)
			fmt.Printf("dnsk8s: autopath %v, queries logged: %s (coredns_dns_requests_total +%d)\n", ap, strings.Join(asked, "; "), delta)
			return nil
		}()
		if err != nil {
			return err
		}
	}
	fmt.Printf("dnsk8s: getent ahostsv4 www.lan (ndots:5, 3 search domains): %d queries without autopath, %d with autopath @kubernetes\n", counts[false], counts[true])
	return nil
}

// clientPod stores the pod autopath finds the client by: default/client at
// 127.0.0.1, the source address of getent's queries.
func clientPod(ctx context.Context, st *store.Store) error {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "client"}}
	p.Spec.Containers = []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sleep", "infinity"}}}
	p.Status.PodIP = "127.0.0.1"
	p.Status.PodIPs = []corev1.PodIP{{IP: "127.0.0.1"}}
	p.Status.Phase = corev1.PodRunning
	if err := st.Create(ctx, p); err != nil {
		return fmt.Errorf("create pod default/client: %w", err)
	}
	k, err := api.ResourceFor("pods")
	if err != nil {
		return err
	}
	o, err := st.Get(ctx, k, "default", "client")
	if err != nil {
		return err
	}
	if got := o.(*corev1.Pod); got.Status.PodIP != "127.0.0.1" {
		return fmt.Errorf("pod default/client: status.podIP %q stored, want 127.0.0.1", got.Status.PodIP)
	}
	return nil
}

// requests sums coredns_dns_requests_total.
func requests(url string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "coredns_dns_requests_total") {
			f := strings.Fields(l)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				sum += v
			}
		}
	}
	return sum, nil
}
