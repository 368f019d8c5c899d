// Command ingress benchmarks podnet's ingress proxy (internal/ingress/proxy
// serving a route.Table) against nginx (Debian) and Go's
// httputil.ReverseProxy with its default transport (bench/run.sh ingress,
// in `make bench`). All three serve the same routes, built by route.Build
// from typed Ingresses, Services and EndpointSlices; nginx's config and the
// httputil peer's ServeMux are generated from the table's Routes(). Every
// peer runs as its own process on 127.0.0.1, pinned to the last CPU; wrk
// and the backend (an nginx answering 200 "hello, world") share CPU 0.
//
// Cases: one route with a small response; 1000 Ingresses (1000 hosts, wrk
// asks for the one in the middle); HTTPS with keep-alive. Per case and
// peer: req/s and p99 from `wrk -t2 -c64 -d10s --latency`, the ratios
// podnet/nginx and podnet/httputil, and each peer's memory. Then, in
// process, route.Build + Swap time at 10 and 1000 Ingresses and the time
// from Swap to a new host's first request served.
//
// Cleanup: the processes run in their own process groups, recorded in the
// run's temp dir; they are stopped on exit and on SIGINT/SIGTERM, and a
// later run kills what a SIGKILLed one left.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/podnet/podnet/bench/internal/benchutil"
	"github.com/podnet/podnet/internal/ingress/proxy"
	"github.com/podnet/podnet/internal/ingress/route"
	"github.com/prometheus/client_golang/prometheus"
)

type config struct {
	tmp, lock  string
	duration   int
	warmup     int
	threads    int
	conns      int
	rounds     int
	hosts      int
	cases      map[string]bool
	peers      []string
	pin        bool
	accessLog  bool
	cpuProfile string
	swapIters  int
	self       string
}

func main() {
	var so serveOpts
	flag.StringVar(&so.role, "serve", "", "internal: run a peer (podnet or httputil) and exit")
	flag.IntVar(&so.n, "serve-n", 1, "internal: Ingresses of the served table")
	flag.StringVar(&so.backend, "serve-backend", "", "internal: the backend address")
	flag.StringVar(&so.http, "serve-http", "", "internal: HTTP listen address")
	flag.StringVar(&so.https, "serve-https", "", "internal: HTTPS listen address")
	flag.StringVar(&so.cert, "serve-cert", "", "internal: certificate file")
	flag.StringVar(&so.key, "serve-key", "", "internal: key file")
	flag.StringVar(&so.accessLog, "serve-access-log", "", "internal: podnet's JSON access log file")
	flag.StringVar(&so.cpuProfile, "serve-cpuprofile", "", "internal: CPU profile file")

	var c config
	flag.StringVar(&c.tmp, "tmp", os.TempDir(), "where the run's temp directory goes")
	flag.StringVar(&c.lock, "lock", "bench/.cache/run.lock", "lock file: one benchmark at a time")
	flag.IntVar(&c.duration, "duration", 10, "wrk seconds per measurement")
	flag.IntVar(&c.warmup, "warmup", 2, "wrk warm-up seconds before each measurement")
	flag.IntVar(&c.threads, "threads", 2, "wrk threads (-t)")
	flag.IntVar(&c.conns, "conns", 64, "wrk connections (-c)")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds (the peers' order rotates; the table is the median)")
	flag.IntVar(&c.hosts, "hosts", 1000, "Ingresses (hosts) of the many-hosts case and the memory figure")
	cases := flag.String("cases", "one,hosts,https,swap", "cases: one, hosts, https, swap")
	peers := flag.String("peers", "podnet,nginx,httputil", "peers (podnet first: the ratios are against it)")
	flag.BoolVar(&c.pin, "pin", true, "pin the peer to the last CPU, wrk and the backend to CPU 0 (taskset)")
	flag.BoolVar(&c.accessLog, "access-log", false, "podnet and nginx write access logs (to the temp dir); off by default for both")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write the podnet peer's CPU profile per case to PREFIX.<case>.pprof")
	flag.IntVar(&c.swapIters, "swap-iters", 20, "Build+Swap measurements per table size")
	flag.Parse()

	if so.role != "" {
		if err := serve(so); err != nil {
			fmt.Fprintln(os.Stderr, "ingress peer:", err)
			os.Exit(1)
		}
		return
	}
	c.cases = benchutil.Phases(*cases)
	for _, p := range strings.Split(*peers, ",") {
		c.peers = append(c.peers, strings.TrimSpace(p))
	}
	self, err := os.Executable()
	if err != nil {
		fail(err)
	}
	c.self = self
	for _, p := range []*string{&c.tmp, &c.lock} {
		if *p, err = filepath.Abs(*p); err != nil {
			fail(err)
		}
	}
	if c.cpuProfile != "" {
		if c.cpuProfile, err = filepath.Abs(c.cpuProfile); err != nil {
			fail(err)
		}
	}
	for _, bin := range []string{"nginx", "wrk", "taskset"} {
		if _, err := exec.LookPath(bin); err != nil {
			fail(fmt.Errorf("%s missing: run `make bench-deps` (scripts/deps.sh nginx wrk)", bin))
		}
	}
	os.Exit(benchutil.Run("ingress", c.lock, func() { sweep(c.tmp) }, func(ctx context.Context) int {
		if err := run(ctx, c); err != nil {
			fmt.Fprintln(os.Stderr, "ingress:", err)
			return 1
		}
		return 0
	}))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "ingress:", err)
	os.Exit(1)
}

// result is one wrk measurement of one peer.
type result struct {
	rps           float64
	p99           time.Duration
	errs          string // socket errors and non-2xx counts, "" when none
	rss, pss, hwm int    // KiB, after the load
	measured      bool
	roundRPS      []float64
	roundP99s     []time.Duration
}

type benchCase struct {
	name, what string
	n          int
	host       string
	tls        bool
}

func run(ctx context.Context, c config) error {
	dir, err := os.MkdirTemp(c.tmp, benchutil.Prefix+"-ingress-")
	if err != nil {
		return err
	}
	ps := &procs{dir: dir}
	defer func() {
		ps.stopAll()
		os.RemoveAll(dir)
	}()
	fmt.Println(benchutil.Machine())
	cpuPeer, cpuLoad := -1, -1
	if c.pin && runtime.NumCPU() > 1 {
		cpuPeer, cpuLoad = runtime.NumCPU()-1, 0
	}
	fmt.Printf("nginx %s, wrk %s; ", nginxVersion(), wrkVersion())
	if cpuPeer >= 0 {
		fmt.Printf("peer pinned to CPU %d (nginx worker_processes 1, Go GOMAXPROCS 1), wrk and the backend to CPU %d\n", cpuPeer, cpuLoad)
	} else {
		fmt.Println("nothing pinned (nginx worker_processes auto)")
	}
	certFile, keyFile, err := writeCert(dir)
	if err != nil {
		return err
	}

	// The backend: nginx answering 200 "hello, world\n", one worker, on
	// wrk's CPU; the same for every peer.
	backend, err := freeAddr()
	if err != nil {
		return err
	}
	bdir := filepath.Join(dir, "backend")
	if err := os.MkdirAll(bdir, 0o755); err != nil {
		return err
	}
	bconf := fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    default_type text/plain;
    server {
        listen %[2]s reuseport;
        location / { return 200 "hello, world\n"; }
    }
}
`, bdir, backend)
	if err := os.WriteFile(filepath.Join(bdir, "nginx.conf"), []byte(bconf), 0o644); err != nil {
		return err
	}
	bp, err := ps.start("backend", cpuLoad, "nginx", "-p", bdir, "-c", "nginx.conf", "-g", "daemon off;")
	if err != nil {
		return err
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	if err := waitServing(ctx, hc, "http://"+backend+"/", "backend", "hello, world\n", bp, filepath.Join(dir, "backend.log")); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	fmt.Printf("backend: nginx `return 200` on %s (1 worker); wrk -t%d -c%d -d%ds --latency after a %ds warm-up\n\n",
		backend, c.threads, c.conns, c.duration, c.warmup)

	cases := []benchCase{
		{"one", "1 Ingress, HTTP, 13-byte response", 1, hostName(0), false},
		{"hosts", fmt.Sprintf("%d Ingresses (hosts), wrk asks for %s", c.hosts, hostName(c.hosts/2)), c.hosts, hostName(c.hosts / 2), false},
		{"https", "1 Ingress, HTTPS (TLS 1.3, keep-alive)", 1, hostName(0), true},
	}
	results := map[string]map[string]*result{}
	var order []benchCase
	for _, bc := range cases {
		if !c.cases[bc.name] {
			continue
		}
		order = append(order, bc)
		results[bc.name] = map[string]*result{}
		for _, p := range c.peers {
			results[bc.name][p] = &result{}
		}
	}
	for round := 0; round < c.rounds; round++ {
		for _, bc := range order {
			fmt.Fprintf(os.Stderr, "ingress: round %d/%d, case %s\n", round+1, c.rounds, bc.name)
			peers := append([]string(nil), c.peers...)
			for i := 0; i < round%len(peers); i++ { // rotate the order per round
				peers = append(peers[1:], peers[0])
			}
			for _, peer := range peers {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if err := measure(ctx, c, ps, dir, bc, peer, backend, certFile, keyFile, cpuPeer, cpuLoad, round, results[bc.name][peer]); err != nil {
					return fmt.Errorf("case %s, %s: %w", bc.name, peer, err)
				}
			}
		}
	}
	if len(order) > 0 {
		report(c, order, results)
	}
	if c.cases["swap"] && ctx.Err() == nil {
		if err := swapBench(ctx, c, backend); err != nil {
			return fmt.Errorf("swap: %w", err)
		}
	}
	return ctx.Err()
}

// measure starts peer for case bc, checks that it serves the host, runs
// the warm-up and the measured wrk, reads its memory and stops it.
func measure(ctx context.Context, c config, ps *procs, dir string, bc benchCase, peer, backend, certFile, keyFile string, cpuPeer, cpuLoad, round int, res *result) error {
	httpAddr, err := freeAddr()
	if err != nil {
		return err
	}
	httpsAddr, err := freeAddr()
	if err != nil {
		return err
	}
	pdir := filepath.Join(dir, fmt.Sprintf("%s-%s-%d", peer, bc.name, round))
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		return err
	}
	var argv []string
	switch peer {
	case "nginx":
		t, err := buildTable(bc.n, backend)
		if err != nil {
			return err
		}
		al := ""
		if c.accessLog {
			al = filepath.Join(pdir, "access.log")
		}
		workers := "auto"
		if cpuPeer >= 0 {
			workers = "1"
		}
		conf := nginxConf(t, pdir, workers, httpAddr, httpsAddr, certFile, keyFile, al)
		if err := os.WriteFile(filepath.Join(pdir, "nginx.conf"), []byte(conf), 0o644); err != nil {
			return err
		}
		argv = []string{"nginx", "-p", pdir, "-c", "nginx.conf", "-g", "daemon off;"}
	case "podnet", "httputil":
		argv = []string{c.self, "-serve", peer, "-serve-n", strconv.Itoa(bc.n), "-serve-backend", backend,
			"-serve-http", httpAddr, "-serve-https", httpsAddr, "-serve-cert", certFile, "-serve-key", keyFile}
		if peer == "podnet" && c.accessLog {
			argv = append(argv, "-serve-access-log", filepath.Join(pdir, "access.log"))
		}
		if peer == "podnet" && c.cpuProfile != "" {
			argv = append(argv, "-serve-cpuprofile", fmt.Sprintf("%s.%s.pprof", c.cpuProfile, bc.name))
		}
	default:
		return fmt.Errorf("unknown peer %q", peer)
	}
	name := filepath.Base(pdir)
	p, err := ps.start(name, cpuPeer, argv...)
	if err != nil {
		return err
	}
	defer ps.remove(p)
	scheme, addr := "http", httpAddr
	if bc.tls {
		scheme, addr = "https", httpsAddr
	}
	url := scheme + "://" + addr + "/"
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil, TLSClientConfig: insecureTLS()}}
	defer hc.CloseIdleConnections()
	if err := waitServing(ctx, hc, url, bc.host, "hello, world\n", p, filepath.Join(dir, name+".log")); err != nil {
		return err
	}
	// Another host must not be served by this route (404), so the routing
	// is real in every peer.
	if bc.n > 1 {
		if _, code, err := get(hc, url, "nope.bench.test"); err != nil || code != 404 {
			return fmt.Errorf("unknown host: status %d, %v; want 404", code, err)
		}
	}
	if c.warmup > 0 {
		if _, err := wrk(ctx, c, cpuLoad, c.warmup, url, bc.host); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	r, err := wrk(ctx, c, cpuLoad, c.duration, url, bc.host)
	if err != nil {
		return err
	}
	if p.exited() {
		return fmt.Errorf("%s exited during the load", peer)
	}
	res.roundRPS = append(res.roundRPS, r.rps)
	res.roundP99s = append(res.roundP99s, r.p99)
	if r.errs != "" {
		res.errs = r.errs
	}
	rss, pss, hwm := memory(p.cmd.Process.Pid)
	res.rss, res.pss, res.hwm = max(res.rss, rss), max(res.pss, pss), max(res.hwm, hwm)
	res.measured = true
	fmt.Fprintf(os.Stderr, "ingress:   %-8s %9.0f req/s  p99 %-9v %s\n", peer, r.rps, r.p99, r.errs)
	return nil
}

var (
	reqsRe  = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	p99Re   = regexp.MustCompile(`(?m)^\s+99%\s+([0-9.]+)(us|ms|s)\s*$`)
	sockRe  = regexp.MustCompile(`Socket errors: .*`)
	non2xRe = regexp.MustCompile(`Non-2xx or 3xx responses: \d+`)
)

// wrk runs wrk for secs against url with Host host and parses req/s and
// p99.
func wrk(ctx context.Context, c config, cpu, secs int, url, host string) (result, error) {
	argv := []string{"wrk", fmt.Sprintf("-t%d", c.threads), fmt.Sprintf("-c%d", c.conns), fmt.Sprintf("-d%ds", secs), "--latency", "-H", "Host: " + host, url}
	if cpu >= 0 {
		argv = append([]string{"taskset", "-c", strconv.Itoa(cpu)}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscallAttr
	out, err := cmd.CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	return parseWrk(string(out))
}

// parseWrk reads req/s, p99 and errors from wrk --latency's output.
func parseWrk(s string) (result, error) {
	m := reqsRe.FindStringSubmatch(s)
	l := p99Re.FindStringSubmatch(s)
	if m == nil || l == nil {
		return result{}, fmt.Errorf("wrk output not understood: %s", s)
	}
	var r result
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	v, _ := strconv.ParseFloat(l[1], 64)
	unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[l[2]]
	r.p99 = time.Duration(v * float64(unit))
	var errs []string
	if e := sockRe.FindString(s); e != "" {
		errs = append(errs, e)
	}
	if e := non2xRe.FindString(s); e != "" {
		errs = append(errs, e)
	}
	r.errs = strings.Join(errs, "; ")
	return r, nil
}

func report(c config, order []benchCase, results map[string]map[string]*result) {
	fmt.Printf("%-6s %-9s %10s %15s %10s %9s %9s %9s  %s\n", "case", "peer", "req/s", "(min-max)", "p99_ms", "RSS_MiB", "PSS_MiB", "HWM_MiB", "errors")
	for _, bc := range order {
		for _, p := range c.peers {
			r := results[bc.name][p]
			if !r.measured {
				continue
			}
			r.rps = benchutil.Median(r.roundRPS)
			r.p99 = benchutil.Median(r.roundP99s)
			errs := r.errs
			if errs == "" {
				errs = "-"
			}
			spread := fmt.Sprintf("(%.0f-%.0f)", slices.Min(r.roundRPS), slices.Max(r.roundRPS))
			fmt.Printf("%-6s %-9s %10.0f %15s %10.3f %9.1f %9.1f %9.1f  %s\n", bc.name, p, r.rps, spread, ms(r.p99), mib(r.rss), mib(r.pss), mib(r.hwm), errs)
		}
	}
	fmt.Println()
	for _, bc := range order {
		fmt.Printf("%s: %s\n", bc.name, bc.what)
	}
	fmt.Println()
	pod := c.peers[0]
	fmt.Println("ratios " + pod + "/peer (goal: >= nginx req/s with p99 no worse: req/s >= 1.00, p99 <= 1.00)")
	fmt.Printf("%-6s %-9s %8s %8s %8s  %s\n", "case", "peer", "req/s", "p99", "PSS", "goal")
	for _, bc := range order {
		a := results[bc.name][pod]
		for _, p := range c.peers[1:] {
			b := results[bc.name][p]
			if !a.measured || !b.measured {
				continue
			}
			goal := ""
			if p == "nginx" {
				goal = "not met"
				if a.rps >= b.rps && a.p99 <= b.p99 {
					goal = "met"
				}
			}
			fmt.Printf("%-6s %-9s %8.2f %8.2f %8.2f  %s\n", bc.name, p, a.rps/b.rps, float64(a.p99)/float64(b.p99), float64(a.pss)/float64(b.pss), goal)
		}
	}
	fmt.Println()
}

func mib(kib int) float64 { return float64(kib) / 1024 }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// swapBench measures, in this process, route.Build and Proxy.Swap for a
// table of n Ingresses plus one new one, and the time from Swap to the new
// host's first request served (polled with a keep-alive client), at 10
// and at c.hosts Ingresses.
func swapBench(ctx context.Context, c config, backend string) error {
	p := proxy.New(proxy.Options{Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Serve(sctx, ln, nil) }()
	defer func() { cancel(); <-done }()
	url := "http://" + ln.Addr().String() + "/"
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	defer hc.CloseIdleConnections()

	fmt.Printf("change -> served, in process (median / max of %d): route.Build of n+1 Ingresses, Swap, then GETs of the new host until 200\n", c.swapIters)
	fmt.Printf("%-10s %12s %12s %14s %14s\n", "ingresses", "build_ms", "swap_us", "first_req_ms", "total_ms")
	for _, n := range []int{10, c.hosts} {
		in, err := input(n, backend)
		if err != nil {
			return err
		}
		base, _ := route.Build(in)
		p.Swap(base)
		var builds, swaps, firsts, totals []time.Duration
		for i := 0; i < c.swapIters; i++ {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			host := fmt.Sprintf("new%d-%d.bench.test", n, i)
			in, err := input(n, backend, host)
			if err != nil {
				return err
			}
			// Not served before the change.
			if _, code, err := get(hc, url, host); err != nil || code != 404 {
				return fmt.Errorf("%s before the change: status %d, %v", host, code, err)
			}
			t0 := time.Now()
			t, probs := route.Build(in)
			t1 := time.Now()
			p.Swap(t)
			t2 := time.Now()
			if len(probs) > 0 {
				return fmt.Errorf("build: %v", probs[0])
			}
			for {
				body, code, err := get(hc, url, host)
				if err != nil {
					return err
				}
				if code == 200 && body == "hello, world\n" {
					break
				}
				if time.Since(t2) > 5*time.Second {
					return fmt.Errorf("%s not served 5s after Swap (status %d)", host, code)
				}
			}
			t3 := time.Now()
			builds = append(builds, t1.Sub(t0))
			swaps = append(swaps, t2.Sub(t1))
			firsts = append(firsts, t3.Sub(t2))
			totals = append(totals, t3.Sub(t0))
			p.Swap(base)
		}
		mx := func(v []time.Duration) time.Duration {
			s := append([]time.Duration(nil), v...)
			sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
			return s[len(s)-1]
		}
		fmt.Printf("%-10d %5.2f / %-5.2f %5.0f / %-5.0f %6.3f / %-6.3f %6.2f / %-6.2f\n", n,
			ms(benchutil.Median(builds)), ms(mx(builds)),
			float64(benchutil.Median(swaps))/1e3, float64(mx(swaps))/1e3,
			ms(benchutil.Median(firsts)), ms(mx(firsts)),
			ms(benchutil.Median(totals)), ms(mx(totals)))
	}
	fmt.Println("(not measured here: the store -> watch -> table path of `podnet ingress`, nor other nodes)")
	return nil
}

func nginxVersion() string {
	out, _ := exec.Command("nginx", "-v").CombinedOutput()
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: "))
}

func wrkVersion() string {
	out, _ := exec.Command("wrk", "-v").CombinedOutput()
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	if sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 1 {
			return f[1]
		}
	}
	return "?"
}
