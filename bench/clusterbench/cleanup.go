package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/podnet/podnet/bench/internal/benchutil"
	"github.com/podnet/podnet/internal/cluster"
	"github.com/podnet/podnet/internal/netns"
)

// Prefix starts the name of everything this benchmark names: clusters
// (pnb<run>vx3, whose namespaces are podnet-pnb<run>vx3-…), the joining
// nodes' namespaces (pnb<run>j<n>) and the temp dir (/tmp/pnb-cluster-…).
const Prefix = benchutil.Prefix

// Names of what a run makes; see Prefix.
var (
	joinNS    = regexp.MustCompile(`^` + Prefix + `[0-9a-f]{6}j[0-9]+$`)
	clusterNS = regexp.MustCompile(`^podnet-(` + Prefix + `[0-9a-f]{6}(vx|gw)[0-9]+)-`)
)

// envFor is the environment of podnet commands acting on the clusters
// under dir: the context file and the clusters directory there, no
// inherited store or cluster settings.
func envFor(dir string) []string {
	return append(benchutil.Environ(),
		cluster.ConfigEnv+"="+filepath.Join(dir, "config"),
		cluster.DirEnv+"="+filepath.Join(dir, "clusters"))
}

// sweepStale removes what a killed earlier run left: its clusters (through
// `podnet cluster delete`, which needs only the names), its joining nodes'
// namespaces and processes, and its temp dirs. Only call it holding the
// run lock.
func sweepStale(tmpBase, podnet string) {
	dirs, _ := filepath.Glob(filepath.Join(tmpBase, Prefix+"-cluster-*"))
	names := map[string]string{} // cluster → its temp dir ("" if unknown)
	for _, d := range dirs {
		recs, _ := filepath.Glob(filepath.Join(d, "clusters", "*", cluster.RecordFile))
		for _, r := range recs {
			names[filepath.Base(filepath.Dir(r))] = d
		}
	}
	ents, _ := os.ReadDir(netns.Dir)
	var joins []string
	for _, e := range ents {
		if m := clusterNS.FindStringSubmatch(e.Name()); m != nil {
			if _, ok := names[m[1]]; !ok {
				names[m[1]] = ""
			}
		}
		if joinNS.MatchString(e.Name()) {
			joins = append(joins, e.Name())
		}
	}
	for name, d := range names {
		fmt.Fprintf(os.Stderr, "bench: removing cluster %s left by an earlier run\n", name)
		if d == "" {
			// No record: delete by the namespace names alone, with a
			// scratch context file.
			scratch, err := os.MkdirTemp(tmpBase, Prefix+"-sweep-")
			if err != nil {
				fmt.Fprintf(os.Stderr, "bench: %v\n", err)
				continue
			}
			defer os.RemoveAll(scratch)
			d = scratch
		}
		cmd := exec.Command(podnet, "cluster", "delete", "--name", name)
		cmd.Env = envFor(d)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: podnet cluster delete --name %s: %v: %s\n", name, err, out)
		}
	}
	for _, ns := range joins {
		fmt.Fprintf(os.Stderr, "bench: removing namespace %s left by an earlier run\n", ns)
		if _, err := (cluster.ProcessMatcher{NetNS: []string{netns.Path(ns)}}).KillAll(5 * time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		}
		if err := netns.Delete(ns); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		}
	}
	for _, d := range dirs {
		fmt.Fprintf(os.Stderr, "bench: removing %s left by an earlier run\n", d)
		killUnder(d)
		_ = os.RemoveAll(d)
	}
}

// killUnder kills every podnet or iperf3 process whose command line names
// a path under dir: the last resort when a cluster's own delete failed.
func killUnder(dir string) []string {
	return benchutil.KillProcesses(func(args []string) bool {
		if b := filepath.Base(args[0]); b != "podnet" && b != "iperf3" {
			return false
		}
		return slices.ContainsFunc(args, func(a string) bool { return strings.Contains(a, dir+"/") })
	})
}

// leftovers lists what of this run still exists after its clean-up:
// namespaces carrying its names and processes naming its temp dir.
func (b *bench) leftovers() []string {
	var out []string
	if b.dir != "" {
		out = append(out, killUnder(b.dir)...)
	}
	ents, _ := os.ReadDir(netns.Dir)
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "podnet-"+Prefix+b.runID) || strings.HasPrefix(n, Prefix+b.runID+"j") {
			out = append(out, "namespace "+n)
			_, _ = cluster.ProcessMatcher{NetNS: []string{netns.Path(n)}}.KillAll(5 * time.Second)
			_ = netns.Delete(n)
		}
	}
	return out
}

func lookPath(f string) (string, error) { return exec.LookPath(f) }
