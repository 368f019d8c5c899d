package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/podnet/podnet/bench/internal/benchutil"
)

// memory is the resident memory of a cluster's processes, in KiB.
type memory struct {
	agents []int // VmRSS of each agent
	anon   []int // RssAnon of each agent: its private memory (heap, stacks)
	hwm    []int // VmHWM (peak) of each agent
	server int
	missed int // agents whose /proc entry could not be read
}

// measureMemory reads VmRSS and VmHWM of every agent and the server from
// /proc, through the pids the cluster's record names.
func measureMemory(cr *clusterRun) *memory {
	m := &memory{}
	for i := range cr.rec.Agents {
		rss, anon, hwm, err := procMem(cr.rec.Agents[i].PID())
		if err != nil {
			m.missed++
			continue
		}
		m.agents = append(m.agents, rss)
		m.anon = append(m.anon, anon)
		m.hwm = append(m.hwm, hwm)
	}
	m.server, _, _, _ = procMem(cr.rec.Server.PID())
	return m
}

func procMem(pid int) (rss, anon, hwm int, err error) {
	if pid == 0 {
		return 0, 0, 0, fmt.Errorf("not running")
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.Atoi(f[0])
		switch k {
		case "VmRSS":
			rss = n
		case "RssAnon":
			anon = n
		case "VmHWM":
			hwm = n
		}
	}
	if rss == 0 {
		return 0, 0, 0, fmt.Errorf("pid %d: no VmRSS", pid)
	}
	return rss, anon, hwm, sc.Err()
}

func mib(kib int) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func medianF(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func secs(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	if d < time.Millisecond {
		return "<1 ms"
	}
	if d < time.Second {
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func printLifecycle(w io.Writer, all []*clusterRun) {
	fmt.Fprintln(w, "local cluster lifecycle: wall time of `podnet cluster create` and `delete` (the CLI, exec to exit)")
	fmt.Fprintf(w, "%-22s %12s %18s %12s\n", "cluster", "create", "→ full route mesh", "delete")
	fmt.Fprintln(w, strings.Repeat("-", 80))
	for _, cr := range all {
		fmt.Fprintf(w, "%-22s %12s %18s %12s\n", cr.label(), secs(cr.create), secs(cr.mesh), secs(cr.del))
	}
	fmt.Fprintln(w, strings.Repeat("-", 80))
	fmt.Fprintln(w, "create returns when every node is Ready; \"→ full route mesh\" is until every node also routes to every")
	fmt.Fprintln(w, "peer's pod CIDR (polled every 5 ms). No peer: no kind/k3d on this machine, so no ratio.")
	fmt.Fprintln(w)
}

func printJoins(w io.Writer, all []*clusterRun) {
	type col struct {
		name string
		get  func(joinResult) time.Duration
	}
	cols := []col{
		{"Node has CIDR", func(j joinResult) time.Duration { return j.registered }},
		{"every peer routed", func(j joinResult) time.Duration { return j.peers }},
		{"new node routed", func(j joinResult) time.Duration { return j.own }},
		{"usable→peers", func(j joinResult) time.Duration { return max(j.propagation(), time.Microsecond) }},
		{"leave", func(j joinResult) time.Duration { return j.leave }},
	}
	fmt.Fprintln(w, "node join → every peer's route programmed: an extra `podnet agent` started in a namespace on the")
	fmt.Fprintln(w, "cluster's switch; times from its exec, as median / max over the joins (kernel route events per namespace)")
	fmt.Fprintf(w, "%-20s %5s", "cluster", "joins")
	for _, c := range cols {
		fmt.Fprintf(w, " %17s", c.name)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, strings.Repeat("-", 116))
	met, goals := 0, 0
	var worst time.Duration
	for _, cr := range all {
		if len(cr.joins) == 0 {
			continue
		}
		fmt.Fprintf(w, "%-20s %5d", cr.label(), len(cr.joins))
		for _, c := range cols {
			var ds []time.Duration
			for _, j := range cr.joins {
				ds = append(ds, c.get(j))
			}
			fmt.Fprintf(w, " %17s", secs(benchutil.Median(ds))+" / "+secs(slices.Max(ds)))
		}
		fmt.Fprintln(w)
		for _, j := range cr.joins {
			for _, d := range []time.Duration{j.propagation(), j.leave} {
				goals++
				if d <= time.Second {
					met++
				}
				worst = max(worst, d)
			}
		}
	}
	fmt.Fprintln(w, strings.Repeat("-", 116))
	fmt.Fprintln(w, "Node has CIDR: the agent registered and claimed its pod CIDR (store watch). every peer routed: the last")
	fmt.Fprintln(w, "existing node got its route to the new CIDR. new node routed: it routes to every existing node.")
	fmt.Fprintln(w, "usable→peers: from the Node carrying what peers need (CIDR, IP, vxlan's VTEP MAC) to the last peer route;")
	fmt.Fprintln(w, "  the peers watch the store as this benchmark does, so <1 ms means \"as fast as the benchmark saw the Node\".")
	fmt.Fprintln(w, "leave: from deleting the stopped node's Node in the store to the last peer's route being removed.")
	verdict := "met"
	if met < goals {
		verdict = "MISSED"
	}
	fmt.Fprintf(w, "goal (issue 3): a join or leave reaches every other node's datapath within 1 s: %d of %d %s (worst %s)\n", met, goals, verdict, secs(worst))
	fmt.Fprintln(w, "No peer: no other cluster network (flannel, weave) can run here to compare with, so no ratio.")
	fmt.Fprintln(w)
}

func printMemory(w io.Writer, all []*clusterRun) {
	fmt.Fprintln(w, "resident memory (VmRSS from /proc/PID/status), per process")
	fmt.Fprintf(w, "%-20s %6s %13s %11s %13s %11s %11s\n", "cluster", "agents", "agent median", "agent max", "anon median", "peak max", "server")
	fmt.Fprintln(w, strings.Repeat("-", 92))
	for _, cr := range all {
		m := cr.mem
		if m == nil || len(m.agents) == 0 {
			continue
		}
		n := fmt.Sprint(len(m.agents))
		if m.missed > 0 {
			n += fmt.Sprintf(" (%d?)", m.missed)
		}
		fmt.Fprintf(w, "%-20s %6s %13s %11s %13s %11s %11s\n", cr.label(), n, mib(benchutil.Median(m.agents)), mib(slices.Max(m.agents)), mib(benchutil.Median(m.anon)), mib(slices.Max(m.hwm)), mib(m.server))
	}
	fmt.Fprintln(w, strings.Repeat("-", 92))
	fmt.Fprintln(w, "anon = RssAnon, the agent's private memory; the rest of VmRSS is the podnet binary's pages, shared by")
	fmt.Fprintln(w, "every agent and the server (one binary). peak = VmHWM. The server embeds etcd and runs the controllers.")
	fmt.Fprintln(w, "3-node clusters measured after the other phases (the two throughput pods, the joins).")
	fmt.Fprintln(w)
}
