// Command cnibench compares podnet-cni with the reference CNI plugins
// (bridge + host-local + portmap from containernetworking/plugins), side by
// side in one run, and times `podnet run --wait` against `podnet up`.
//
// Everything happens in network namespaces it creates (named pnb…) and temp
// directories (/tmp/pnb-…), removed at the end, on error and on SIGINT or
// SIGTERM. Run it through bench/run.sh (`make bench`); see bench/README.md.
package main

import (
	"context"
	"debug/buildinfo"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/podnet/podnet/bench/internal/benchutil"
)

type options struct {
	benchutil.Common
	refBin  string // dir with bridge, host-local, portmap
	iters   int
	batch   int
	rounds  int
	upPods  int
	profile int
	phases  string
	backend string
}

func main() {
	var o options
	o.Register(flag.CommandLine, "where the temp directories (plugin state, podnet up) go")
	flag.StringVar(&o.refBin, "ref-bin", "bench/.cache/bin", "directory holding the reference plugins bridge, host-local, portmap")
	flag.IntVar(&o.iters, "iters", 100, "ADD+DEL latency: iterations per plugin")
	flag.IntVar(&o.batch, "batch", 50, "pods per sequential/parallel batch")
	flag.IntVar(&o.rounds, "rounds", 3, "batches per plugin and mode (the median is reported)")
	flag.IntVar(&o.upPods, "up-pods", 20, "pods started with `podnet run --wait`")
	flag.IntVar(&o.profile, "profile", 30, "podnet-cni ADDs traced with PODNET_CNI_TRACE for the time breakdown (0: skip)")
	flag.StringVar(&o.phases, "phases", "cni,up", "what to run: cni, up, or both")
	flag.StringVar(&o.backend, "ref-backend", "", "reference masquerade/portmap backend: \"\" (their default: iptables) or nftables")
	flag.Parse()
	os.Exit(run(o))
}

func run(o options) int {
	if err := o.Prepare(&o.refBin); err != nil {
		fmt.Fprintln(os.Stderr, "cnibench:", err)
		return 2
	}
	// The first SIGINT/SIGTERM stops the measurements; cleanup then runs
	// to the end, ignoring further signals.
	return benchutil.Run("cnibench", o.Lock, func() { sweepStale(o.Tmp) }, func(ctx context.Context) int {
		runID := benchutil.RunID()
		status := 0
		want := benchutil.Phases(o.phases)
		fmt.Println(benchutil.Machine())
		if want["cni"] {
			if err := cniPhase(ctx, o, runID); err != nil {
				fmt.Fprintln(os.Stderr, "cnibench: cni:", err)
				status = 1
			}
		}
		if want["up"] && ctx.Err() == nil {
			if err := upPhase(ctx, o, runID); err != nil {
				fmt.Fprintln(os.Stderr, "cnibench: up:", err)
				status = 1
			}
		}
		return status
	})
}

func progress(what string, total int) func(int) {
	step := total / 10
	if step < 1 {
		step = 1
	}
	return func(i int) {
		if i%step == 0 || i == total {
			fmt.Fprintf(os.Stderr, "  %s %d/%d\n", what, i, total)
		}
	}
}

func refVersion(dir string) string {
	bi, err := buildinfo.ReadFile(filepath.Join(dir, "bridge"))
	if err != nil {
		return "unknown version"
	}
	for _, d := range bi.Deps {
		if d.Path == "github.com/containernetworking/plugins" {
			return d.Version
		}
	}
	return bi.Main.Version
}

func cniPhase(ctx context.Context, o options, runID string) (err error) {
	for _, f := range []string{filepath.Join(o.PodnetBin, "podnet-cni"), filepath.Join(o.refBin, "bridge"), filepath.Join(o.refBin, "host-local"), filepath.Join(o.refBin, "portmap")} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("missing plugin: %w (run `make bench`)", err)
		}
	}
	c := &benchutil.Cleaner{}
	defer func() {
		if !c.Run() && err == nil {
			err = errors.New("cleanup failed")
		}
	}()
	tmp, err := c.TempDir(o.Tmp, "cni")
	if err != nil {
		return err
	}
	d, err := mkdirs(tmp, "podnet-data", "podnet-cache", "ref-ipam", "ref-cache")
	if err != nil {
		return err
	}
	b, err := newCNIBench(c, runID)
	if err != nil {
		return err
	}
	pSub, rSub := netip.MustParsePrefix("10.97.0.0/24"), netip.MustParsePrefix("10.98.0.0/24")
	pn, err := newContender("podnet-cni", o.PodnetBin, d["podnet-cache"], pSub, podnetConflist(Prefix+"p0", pSub, d["podnet-data"]))
	if err != nil {
		return err
	}
	ref, err := newContender("reference", o.refBin, d["ref-cache"], rSub, referenceConflist(Prefix+"r0", rSub, d["ref-ipam"], o.backend))
	if err != nil {
		return err
	}
	cs := []*contender{pn, ref}
	version := refVersion(o.refBin)
	backend := "iptables " + iptablesVersion()
	if o.backend != "" {
		backend = o.backend + " backend"
	}
	fmt.Printf("reference: containernetworking/plugins %s bridge(isGateway, ipMasq, host-local) + portmap(snat), %s\n", version, backend)
	fmt.Printf("podnet-cni: %s (one plugin: bridge, IPAM, nftables masquerade and port mapping)\n\n", filepath.Join(o.PodnetBin, "podnet-cni"))

	// Warm-up: bridges, nft table, iptables chains and page cache exist
	// before anything is timed.
	fmt.Fprintln(os.Stderr, "cnibench: warm-up")
	if err := b.verify(ctx, cs); err != nil {
		return err
	}
	if _, err := b.latency(ctx, cs, 3, func(int) {}); err != nil {
		return err
	}
	var prof *profile
	if o.profile > 0 {
		fmt.Fprintf(os.Stderr, "cnibench: tracing %d podnet-cni ADDs (PODNET_CNI_TRACE)\n", o.profile)
		if prof, err = b.traceProfile(ctx, pn, cs, o.profile); err != nil {
			return err
		}
	}
	fmt.Fprintf(os.Stderr, "cnibench: ADD+DEL latency, %d iterations each, alternating\n", o.iters)
	lat, err := b.latency(ctx, cs, o.iters, progress("iteration", o.iters))
	if err != nil {
		return err
	}
	seq := map[string][]batch{}
	par := map[string][]batch{}
	for r := 0; r < o.rounds; r++ {
		for _, mode := range []struct {
			parallel bool
			out      map[string][]batch
		}{{false, seq}, {true, par}} {
			for k := range cs {
				c := cs[(r+k)%len(cs)]
				kind := "sequential"
				if mode.parallel {
					kind = "parallel"
				}
				fmt.Fprintf(os.Stderr, "cnibench: round %d/%d: %d %s ADDs, %s\n", r+1, o.rounds, o.batch, kind, c.name)
				res, err := b.batch(ctx, c, o.batch, mode.parallel)
				if err != nil {
					return err
				}
				mode.out[c.name] = append(mode.out[c.name], res)
			}
		}
	}
	if s := pn.stderr.take() + ref.stderr.take(); strings.TrimSpace(s) != "" {
		fmt.Fprintf(os.Stderr, "cnibench: the plugins wrote to stderr:\n%s\n", s)
	}
	printCNI(os.Stdout, o, lat, seq, par)
	if prof != nil {
		prof.print(os.Stdout)
	}
	return nil
}

func iptablesVersion() string {
	out, err := execOut("iptables", "--version")
	if err != nil {
		return "(iptables missing!)"
	}
	return strings.TrimSpace(strings.TrimPrefix(out, "iptables "))
}

const goal = 0.5

type row struct {
	name   string
	p, r   time.Duration
	isGoal bool
}

func printCNI(w io.Writer, o options, lat map[string]*latency, seq, par map[string][]batch) {
	p, r := lat["podnet-cni"], lat["reference"]
	bm := func(bs []batch, del bool) time.Duration {
		var ds []time.Duration
		for _, b := range bs {
			if del {
				ds = append(ds, b.del)
			} else {
				ds = append(ds, b.add)
			}
		}
		return median(ds)
	}
	rows := []row{
		{"ADD+DEL per pod, median", median(p.both), median(r.both), true},
		{"ADD+DEL per pod, p90", p90(p.both), p90(r.both), true},
		{"  ADD, median", median(p.add), median(r.add), true},
		{"  ADD, p90", p90(p.add), p90(r.add), true},
		{"  DEL, median", median(p.del), median(r.del), true},
		{"  DEL, p90", p90(p.del), p90(r.del), true},
		{fmt.Sprintf("%d sequential ADDs, total", o.batch), bm(seq["podnet-cni"], false), bm(seq["reference"], false), true},
		{fmt.Sprintf("%d parallel ADDs, wall", o.batch), bm(par["podnet-cni"], false), bm(par["reference"], false), true},
		{fmt.Sprintf("  (info) %d sequential DELs", o.batch), bm(seq["podnet-cni"], true), bm(seq["reference"], true), false},
		{fmt.Sprintf("  (info) %d parallel DELs", o.batch), bm(par["podnet-cni"], true), bm(par["reference"], true), false},
	}
	fmt.Fprintf(w, "podnet-cni vs reference: %d ADD+DEL iterations each; batches: median of %d rounds; interleaved\n", o.iters, o.rounds)
	fmt.Fprintf(w, "%-32s %12s %12s %7s  %s\n", "metric", "podnet-cni", "reference", "ratio", "goal ≤ 0.50")
	fmt.Fprintln(w, strings.Repeat("-", 80))
	met := 0
	goals := 0
	for _, x := range rows {
		ratio := float64(x.p) / float64(x.r)
		verdict := ""
		if x.isGoal {
			goals++
			if ratio <= goal {
				verdict = "met"
				met++
			} else {
				verdict = "MISSED"
			}
		}
		fmt.Fprintf(w, "%-32s %12s %12s %7.2f  %s\n", x.name, ms(x.p), ms(x.r), ratio, verdict)
	}
	fmt.Fprintln(w, strings.Repeat("-", 80))
	fmt.Fprintf(w, "ratio = podnet-cni / reference (lower is better; 0.50 = twice as fast). goal: ≤ %.2f on every row: %d of %d met\n", goal, met, goals)
	for _, n := range []string{"podnet-cni", "reference"} {
		var s, q []string
		for i := range seq[n] {
			s = append(s, ms(seq[n][i].add))
			q = append(q, ms(par[n][i].add))
		}
		fmt.Fprintf(w, "rounds %-10s sequential: %s; parallel: %s\n", n, strings.Join(s, ", "), strings.Join(q, ", "))
	}
	fmt.Fprintln(w)
}

func upPhase(ctx context.Context, o options, runID string) (err error) {
	podnet := filepath.Join(o.PodnetBin, "podnet")
	if _, err := os.Stat(podnet); err != nil {
		return fmt.Errorf("%w (run `make build`)", err)
	}
	c := &benchutil.Cleaner{}
	fmt.Fprintf(os.Stderr, "cnibench: podnet up in a node namespace; %d × podnet run --wait\n", o.upPods)
	res, err := runUp(ctx, c, runID, o.Tmp, podnet, o.upPods, progress("pod", o.upPods))
	// Delete the pods through podnet, stop up, reap, remove: before the
	// report, which includes the delete time.
	if !c.Run() && err == nil {
		err = errors.New("cleanup failed")
	}
	if res == nil || len(res.run) == 0 {
		return err
	}
	lo, hi := minMax(res.run)
	fmt.Printf("podnet run NAME --wait -- sleep infinity → Running with an IP (podnet up in its own node namespace)\n")
	fmt.Printf("%-32s %12s\n", "metric", "podnet")
	fmt.Println(strings.Repeat("-", 80))
	fmt.Printf("%-32s %12s\n", fmt.Sprintf("run → Running, median of %d", len(res.run)), ms(median(res.run)))
	fmt.Printf("%-32s %12s\n", "run → Running, p90", ms(p90(res.run)))
	fmt.Printf("%-32s %12s\n", "  min / max", ms(lo)+" / "+ms(hi))
	fmt.Printf("%-32s %12s\n", "  first pod (creates the bridge)", ms(res.run[0]))
	if res.cli > 0 {
		fmt.Printf("%-32s %12s\n", "(info) CLI floor: podnet get pod", ms(res.cli))
	}
	fmt.Printf("%-32s %12s\n", "(info) podnet up → store ready", ms(res.start))
	if res.delete > 0 {
		fmt.Printf("%-32s %12s\n", fmt.Sprintf("(info) delete %d pods, --wait", res.deleted), ms(res.delete))
	}
	fmt.Println(strings.Repeat("-", 80))
	fmt.Println("no peer: there is no Docker/containerd engine on this machine to compare with, so no ratio.")
	if len(res.leaks) > 0 {
		fmt.Printf("WARNING: after podnet deleted its pods and stopped, these were still there (removed by force): %s\n", strings.Join(res.leaks, "; "))
	}
	fmt.Println()
	return err
}
