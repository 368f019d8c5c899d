// Command svcbench is the Services benchmark (issue 6): podnet's service
// proxy (internal/proxy) against the real kube-proxy, its nftables and
// iptables proxiers from k8s.io/kubernetes, side by side in one run:
//
//  1. full sync of N Services × 10 endpoints (10, 1k, 10k), and one
//     Service changed afterwards (a partial sync), the same objects for
//     every proxy; the driver's memory after it;
//  2. TCP connect latency through a ClusterIP with those N Services
//     installed, from a client namespace through the "node" namespace
//     holding the rules to a server namespace;
//  3. iperf3 throughput through a ClusterIP against the server's pod IP
//     directly.
//
// Each proxy runs as a driver process inside the node namespace of a
// fresh topology (topo.go): podnet's is this binary's `podnet-driver`
// subcommand, kube-proxy's the bench-only module bench/svcbench/kubeproxy
// (built by bench/run.sh into /var/cache/podnet-bench). Both read the same
// objects file and print the same JSON. Everything runs in namespaces this
// benchmark creates (pnb<run>s<n>{n,c,s}), removed at the end, on error and
// on SIGINT/SIGTERM. Run it through bench/run.sh (`make bench`); see
// bench/README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/podnet/podnet/bench/internal/benchutil"
)

type options struct {
	benchutil.Common
	kubeProxy   string
	scales      string
	peers       string
	eps         int
	updates     int
	connects    int
	iperfSecs   int
	iperfRounds int
	iperfPeers  string
	phases      string
	agentSvcs   int
	podnetKnft  bool
}

// peer names: podnet, and the kube-proxy driver's modes.
var peerLabel = map[string]string{
	"podnet":       "podnet",
	"nftables":     "kube-proxy nftables",
	"iptables":     "kube-proxy iptables",
	"iptables-nft": "kube-proxy iptables-nft",
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "podnet-driver" {
		os.Exit(podnetDriver(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		os.Exit(probeCmd(os.Args[2:]))
	}
	var o options
	o.Register(flag.CommandLine, "where the temp directory (objects files, logs) goes")
	flag.StringVar(&o.kubeProxy, "kube-proxy-driver", "/var/cache/podnet-bench/kube-proxy-driver", "the kube-proxy driver (bench/svcbench/kubeproxy; bench/run.sh builds it)")
	flag.StringVar(&o.scales, "scales", "10,1000,10000", "numbers of Services")
	flag.StringVar(&o.peers, "peers", "podnet,nftables,iptables", "proxies: podnet, nftables, iptables (kube-proxy iptables-legacy), iptables-nft (slow: minutes at 5k)")
	flag.IntVar(&o.eps, "endpoints", 10, "endpoints per Service")
	flag.IntVar(&o.updates, "updates", 5, "single-Service changes after each full sync (partial syncs)")
	flag.IntVar(&o.connects, "connects", 1000, "timed connects through the ClusterIPs per proxy and scale")
	flag.IntVar(&o.iperfSecs, "iperf-secs", 3, "seconds per iperf3 run (plus 1 s omitted)")
	flag.IntVar(&o.iperfRounds, "iperf-rounds", 5, "iperf3 rounds, each one run to the pod IP and one to the ClusterIP (median of the per-round ratios reported)")
	flag.StringVar(&o.iperfPeers, "iperf-peers", "podnet,nftables", "proxies whose ClusterIP throughput is measured")
	flag.StringVar(&o.phases, "phases", "sync,latency,iperf,apply", "what to run: sync, latency (loads each proxy as sync does), iperf, apply (a local cluster), agentmem (then loads -agent-services into that cluster: minutes; needs apply)")
	flag.BoolVar(&o.podnetKnft, "podnet-knftables", false, "podnet's driver programs through knftables (exec nft) instead of the agent's netlink path")
	flag.IntVar(&o.agentSvcs, "agent-services", 10000, "Services (× -endpoints) loaded into the local cluster for the agents' memory")
	flag.Parse()
	os.Exit(run(o))
}

func run(o options) int {
	if err := o.Prepare(&o.kubeProxy); err != nil {
		fmt.Fprintln(os.Stderr, "svcbench:", err)
		return 2
	}
	want := benchutil.Phases(o.phases)
	scales, err := parseInts(o.scales)
	if err != nil {
		fmt.Fprintln(os.Stderr, "svcbench: -scales:", err)
		return 2
	}
	peers := splitList(o.peers)
	for _, p := range append(append([]string{}, peers...), splitList(o.iperfPeers)...) {
		if peerLabel[p] == "" {
			fmt.Fprintf(os.Stderr, "svcbench: unknown proxy %q (want podnet, nftables, iptables or iptables-nft)\n", p)
			return 2
		}
		if p != "podnet" {
			if _, err := os.Stat(o.kubeProxy); err != nil {
				fmt.Fprintf(os.Stderr, "svcbench: kube-proxy driver: %v (bench/run.sh builds it: cd bench/svcbench/kubeproxy && go build -o %s .)\n", err, o.kubeProxy)
				return 2
			}
		}
	}
	if want["iperf"] {
		if _, err := exec.LookPath("iperf3"); err != nil {
			fmt.Fprintln(os.Stderr, "svcbench: iperf3 missing: run `make bench` (it installs it)")
			return 2
		}
	}
	for _, t := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(t); err != nil {
			fmt.Fprintf(os.Stderr, "svcbench: %s missing: run `make deps`\n", t)
			return 2
		}
	}
	if want["apply"] {
		if _, err := os.Stat(filepath.Join(o.PodnetBin, "podnet")); err != nil {
			fmt.Fprintf(os.Stderr, "svcbench: %v (run `make build`)\n", err)
			return 2
		}
	}
	sweep := func() { sweepStale(o.Tmp, filepath.Join(o.PodnetBin, "podnet")) }
	return benchutil.Run("svcbench", o.Lock, sweep, func(ctx context.Context) int {
		b := &bench{o: o, runID: benchutil.RunID(), want: want, scales: scales, peers: peers,
			runs: map[string]map[int]*peerRun{}}
		err := b.run(ctx)
		b.print(os.Stdout)
		if err != nil {
			fmt.Fprintln(os.Stderr, "svcbench:", err)
			return 1
		}
		if b.failed > 0 {
			fmt.Fprintf(os.Stderr, "svcbench: %d measurement(s) failed (reasons above)\n", b.failed)
			return 1
		}
		return 0
	})
}

// bench is one run.
type bench struct {
	o      options
	runID  string
	want   map[string]bool
	scales []int
	peers  []string
	c      *benchutil.Cleaner
	dir    string
	seq    int
	runs   map[string]map[int]*peerRun // peer → scale → what it measured
	iperf  []*iperfRun
	apply  *applyRun
	failed int
}

// peerRun is one proxy at one scale.
type peerRun struct {
	sync *syncResult
	lat  *latency
	load float64 // 1-minute load average when the full sync ended
	err  error
}

func (b *bench) run(ctx context.Context) (err error) {
	b.c = &benchutil.Cleaner{}
	defer func() {
		if !b.c.Run() && err == nil {
			err = errors.New("cleanup failed")
		}
		if left := b.leftovers(); len(left) > 0 {
			fmt.Printf("LEAK: after clean-up these were still there: %s\n", strings.Join(left, "; "))
			if err == nil {
				err = fmt.Errorf("left behind: %s", strings.Join(left, "; "))
			}
		}
	}()
	if b.dir, err = b.c.TempDir(b.o.Tmp, "svc"); err != nil {
		return err
	}
	if b.want["sync"] || b.want["latency"] {
		for _, n := range b.scales {
			file := filepath.Join(b.dir, fmt.Sprintf("objects-%d.json", n))
			g := genSpec{services: n, eps: b.o.eps, targets: 10, updates: b.o.updates}
			if err := writeObjects(file, generate(g)); err != nil {
				return err
			}
			for _, p := range b.peers {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				pr, err := b.measure(ctx, p, n, file, g)
				if err != nil {
					return err
				}
				if b.runs[p] == nil {
					b.runs[p] = map[int]*peerRun{}
				}
				b.runs[p][n] = pr
				if pr.err != nil {
					b.failed++
					fmt.Fprintf(os.Stderr, "svcbench: %s, %d Services: FAILED: %v\n", peerLabel[p], n, pr.err)
				}
			}
		}
	}
	if b.want["iperf"] {
		for _, p := range splitList(b.o.iperfPeers) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			ir := b.throughput(ctx, p)
			b.iperf = append(b.iperf, ir)
			if ir.err != nil {
				b.failed++
				fmt.Fprintf(os.Stderr, "svcbench: iperf3 through %s: FAILED: %v\n", peerLabel[p], ir.err)
			}
		}
	}
	if b.want["apply"] && ctx.Err() == nil {
		b.apply = b.applyPhase(ctx)
		if b.apply.err != nil {
			b.failed++
			fmt.Fprintf(os.Stderr, "svcbench: apply → traffic: FAILED: %v\n", b.apply.err)
		}
	}
	return ctx.Err()
}

// measure loads the objects of one scale with one proxy in a fresh
// topology, then measures connects through it.
// A topology that cannot be made is fatal (the next would fail alike).
func (b *bench) measure(ctx context.Context, peer string, n int, file string, g genSpec) (*peerRun, error) {
	pr := &peerRun{}
	b.seq++
	t, err := b.newTopo(b.seq)
	if err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	defer b.teardown(t)
	fmt.Fprintf(os.Stderr, "svcbench: %d Services × %d endpoints: %s …\n", n, b.o.eps, peerLabel[peer])
	pr.sync, pr.err = b.runDriver(ctx, t, peer, file, fmt.Sprintf("%s-%d", peer, n))
	pr.load = load1()
	if pr.err != nil {
		return pr, nil
	}
	extra := ""
	if pr.sync.NFTSeconds > 0 {
		extra = fmt.Sprintf(" (nft -f: %s)", secs(pr.sync.NFTSeconds))
	}
	fmt.Fprintf(os.Stderr, "svcbench:   full sync %s%s, one change %s (median of %d), RSS %s, load %.1f\n",
		secs(pr.sync.FullSync), extra, secs(median(pr.sync.Partial)), len(pr.sync.Partial), mib(pr.sync.RSSKiB), pr.load)
	if b.want["latency"] {
		pr.lat, pr.err = measureLatency(t, g.targetIndexes(), b.o.connects)
		if pr.err != nil {
			pr.err = fmt.Errorf("connect latency: %w", pr.err)
		}
	}
	return pr, nil
}

// runDriver runs a proxy's driver in the topology's node namespace.
func (b *bench) runDriver(ctx context.Context, t *topo, peer, file, logName string) (*syncResult, error) {
	args := []string{"-objects", file, "-node-ip", nodeIP.String(), "-cluster-cidr", clusterCIDR.String(),
		"-service-cidr", serviceCIDR.String()}
	bin := b.o.kubeProxy
	if peer == "podnet" {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		bin, args = self, append([]string{"podnet-driver"}, args...)
		if b.o.podnetKnft {
			args = append(args, "-knftables")
		}
	} else {
		args = append([]string{"-mode", peer}, args...)
	}
	dctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	out, err := inNS(dctx, t.node, filepath.Join(b.dir, logName+".log"), bin, args...)
	if err != nil {
		return nil, fmt.Errorf("driver: %w", err)
	}
	var res syncResult
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("driver output %q: %w", strings.TrimSpace(string(out)), err)
	}
	return &res, nil
}

// teardown flushes the node's rules synchronously (so the kernel does not
// free 10k chains in the background of the next measurement), then
// removes the topology.
func (b *bench) teardown(t *topo) {
	_, _ = inNS(context.Background(), t.node, filepath.Join(b.dir, "flush.log"), "nft", "flush", "ruleset")
	if err := t.destroy(); err != nil {
		fmt.Fprintf(os.Stderr, "svcbench: remove topology: %v\n", err)
	}
}

// leftovers lists this run's namespaces still there after the clean-up.
func (b *bench) leftovers() []string {
	var out []string
	ents, _ := os.ReadDir("/run/netns")
	for _, e := range ents {
		if ourNS.MatchString(e.Name()) && strings.HasPrefix(e.Name(), Prefix+b.runID) ||
			strings.HasPrefix(e.Name(), "podnet-"+b.clusterName()+"-") {
			out = append(out, "namespace "+e.Name())
		}
	}
	return out
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
