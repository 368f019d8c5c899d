// Command clusterbench measures local multi-node clusters made by
// `podnet cluster create` (issue 3's benchmark):
//
//  1. cross-node pod-to-pod TCP throughput with iperf3 over vxlan and over
//     host-gw, each against the raw underlay between the same two node
//     namespaces, interleaved in one run and printed as ratios;
//  2. the wall time of `podnet cluster create` (and delete) for 3 and 20
//     nodes, and until every node routes to every peer;
//  3. the time from a node joining (an extra `podnet agent` started in a
//     namespace attached to the cluster's switch) to every peer's route
//     being programmed, and from its Node being deleted to the routes
//     being gone;
//  4. the resident memory of every agent and of the server.
//
// Everything runs in the clusters' namespaces (podnet-pnb<run>…) and in
// namespaces it creates (pnb<run>j<n>); the context file and the clusters'
// directories live in a temp dir (/tmp/pnb-cluster-…), so ~/.podnet and
// /var/lib/podnet are untouched. Every cluster is deleted at the end, on
// error and on SIGINT/SIGTERM. Run it through bench/run.sh (`make bench`);
// see bench/README.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/podnet/podnet/bench/internal/benchutil"
)

type options struct {
	benchutil.Common
	secs     int
	rounds   int
	joins    int
	bigJoins int
	bigNodes int
	phases   string
}

func main() {
	var o options
	o.Register(flag.CommandLine, "where the temp directory (context file, clusters) goes")
	flag.IntVar(&o.secs, "secs", 5, "seconds per iperf3 run (plus 1 s of slow start, omitted)")
	flag.IntVar(&o.rounds, "rounds", 3, "iperf3 rounds per path, interleaved (the median is reported)")
	flag.IntVar(&o.joins, "joins", 5, "node joins (and leaves) per 3-node cluster")
	flag.IntVar(&o.bigJoins, "big-joins", 3, "node joins (and leaves) in the large vxlan cluster")
	flag.IntVar(&o.bigNodes, "big-nodes", 20, "nodes of the large clusters")
	flag.StringVar(&o.phases, "phases", "throughput,create,join,memory", "what to run (3-node clusters are always created)")
	flag.Parse()
	os.Exit(run(o))
}

func run(o options) int {
	if err := o.Prepare(); err != nil {
		fmt.Fprintln(os.Stderr, "clusterbench:", err)
		return 2
	}
	for _, f := range []string{"podnet", "podnet-cni"} {
		if _, err := os.Stat(filepath.Join(o.PodnetBin, f)); err != nil {
			fmt.Fprintf(os.Stderr, "clusterbench: %v (run `make build`)\n", err)
			return 2
		}
	}
	if _, err := lookPath("iperf3"); err != nil && strings.Contains(o.phases, "throughput") {
		fmt.Fprintln(os.Stderr, "clusterbench: iperf3 missing: run `make bench` (it installs it)")
		return 2
	}
	sweep := func() { sweepStale(o.Tmp, filepath.Join(o.PodnetBin, "podnet")) }
	return benchutil.Run("clusterbench", o.Lock, sweep, func(ctx context.Context) int {
		bn := &bench{o: o, runID: benchutil.RunID(), want: benchutil.Phases(o.phases)}
		if err := bn.run(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "clusterbench:", err)
			return 1
		}
		return 0
	})
}

func machine() string { return benchutil.Machine() + ", " + iperfVersion() }

// bench holds one run: its temp dir, its clusters and what they measured.
type bench struct {
	o       options
	runID   string
	want    map[string]bool
	c       *benchutil.Cleaner
	dir     string // temp dir: config, clusters/
	small   []*clusterRun
	big     []*clusterRun
	tput    *throughput
	joinSeq int // joins so far: names and addresses of joining nodes
}

func (b *bench) run(ctx context.Context) (err error) {
	b.c = &benchutil.Cleaner{}
	defer func() {
		if !b.c.Run() && err == nil {
			err = fmt.Errorf("cleanup failed")
		}
		if left := b.leftovers(); len(left) > 0 {
			fmt.Printf("LEAK: after deleting the clusters these were still there: %s\n", strings.Join(left, "; "))
			if err == nil {
				err = fmt.Errorf("left behind: %s", strings.Join(left, "; "))
			}
		}
	}()
	if b.dir, err = b.c.TempDir(b.o.Tmp, "cluster"); err != nil {
		return err
	}
	fmt.Println(machine())
	fmt.Println()

	// Two 3-node clusters side by side, one per backend: their creation
	// is timed, then they carry the throughput and join measurements.
	for _, backend := range []string{"vxlan", "host-gw"} {
		cr, err := b.create(ctx, b.name(backend, 3), 3, backend)
		if err != nil {
			return err
		}
		b.small = append(b.small, cr)
	}
	if b.want["throughput"] {
		if b.tput, err = b.throughput(ctx); err != nil {
			return err
		}
		b.tput.print(os.Stdout, b.o)
	}
	if b.want["join"] {
		for _, cr := range b.small {
			if err := b.joinLeave(ctx, cr, b.o.joins); err != nil {
				return err
			}
		}
	}
	if b.want["memory"] {
		for _, cr := range b.small {
			cr.mem = measureMemory(cr)
		}
	}
	// The large clusters one after the other (one at a time on the box).
	if b.want["create"] || b.want["join"] || b.want["memory"] {
		for _, backend := range []string{"vxlan", "host-gw"} {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			cr, err := b.create(ctx, b.name(backend, b.o.bigNodes), b.o.bigNodes, backend)
			if err != nil {
				return err
			}
			b.big = append(b.big, cr)
			if b.want["join"] && backend == "vxlan" && b.o.bigJoins > 0 {
				if err := b.joinLeave(ctx, cr, b.o.bigJoins); err != nil {
					return err
				}
			}
			if b.want["memory"] {
				cr.mem = measureMemory(cr)
			}
			if err := b.delete(cr); err != nil {
				return err
			}
		}
	}
	for _, cr := range b.small {
		if err := b.delete(cr); err != nil {
			return err
		}
	}
	all := append(append([]*clusterRun{}, b.small...), b.big...)
	if b.want["create"] {
		printLifecycle(os.Stdout, all)
	}
	if b.want["join"] {
		printJoins(os.Stdout, all)
	}
	if b.want["memory"] {
		printMemory(os.Stdout, all)
	}
	return ctx.Err()
}

// name is a cluster's name: pnb, the run ID, then the backend and size
// (e.g. pnb1a2b3cvx3), at most 24 characters as `podnet cluster` wants.
func (b *bench) name(backend string, nodes int) string {
	short := "vx"
	if backend == "host-gw" {
		short = "gw"
	}
	return fmt.Sprintf("%s%s%s%d", Prefix, b.runID, short, nodes)
}
