package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/podnet/podnet/bench/internal/benchutil"
)

func median[T float64 | time.Duration](v []T) T { return benchutil.Median(v) }

func secs(s float64) string {
	switch {
	case s == 0:
		return "-"
	case s >= 10:
		return fmt.Sprintf("%.1f s", s)
	case s >= 1:
		return fmt.Sprintf("%.2f s", s)
	case s >= 0.01:
		return fmt.Sprintf("%.0f ms", s*1000)
	default:
		return fmt.Sprintf("%.1f ms", s*1000)
	}
}

func usec(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}

func mib(kib int) string {
	if kib == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", float64(kib)/1024)
}

func scaleName(n int) string {
	if n >= 1000 && n%1000 == 0 {
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

// row is one line of the table: a value per peer (0: none), a formatter,
// and an optional goal judged on podnet's value and the peers'.
type row struct {
	label string
	vals  map[string]float64
	fmt   func(float64) string
	goal  func(v map[string]float64) (desc string, met bool, ok bool)
	// noRatio: the row's values are not comparable as ratios.
	noRatio bool
}

func (b *bench) print(w io.Writer) {
	if len(b.runs) == 0 && len(b.iperf) == 0 && b.apply == nil {
		return
	}
	peers := b.peers
	others := slices.DeleteFunc(slices.Clone(peers), func(p string) bool { return p == "podnet" })
	fmt.Fprintln(w)
	fmt.Fprintln(w, benchutil.Machine()+", "+nftVersion()+", "+loadAvg())
	if len(b.runs) > 0 {
		fmt.Fprintf(w, "Services: podnet (internal/proxy) vs kube-proxy %s, same objects (N Services × %d endpoints, ClusterIP/TCP), one driver process per proxy in its own node namespace\n",
			kubeProxyVersion, b.o.eps)
		b.printSync(w, peers, others)
	}
	if len(b.iperf) > 0 {
		b.printIperf(w)
	}
	if b.apply != nil {
		b.printApply(w)
	}
}

func (b *bench) printApply(w io.Writer) {
	a := b.apply
	fmt.Fprintln(w)
	fmt.Fprintf(w, "podnet apply of a Service → a connect through its ClusterIP succeeds from a pod on every node (local cluster, 3 nodes, %d probed)\n", a.nodes)
	head := fmt.Sprintf("%-42s%12s%12s", "metric", "p50", "p99")
	fmt.Fprintln(w, head)
	line := strings.Repeat("-", len(head)+20)
	fmt.Fprintln(w, line)
	if a.err != nil && len(a.all) == 0 {
		fmt.Fprintf(w, "FAILED: %v\n", firstLine(a.err.Error()))
		fmt.Fprintln(w, line)
		return
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }
	for _, r := range []struct {
		label string
		v     []time.Duration
	}{
		{fmt.Sprintf("apply → a pod on every node (%d Svcs)", len(a.all)), a.all},
		{"apply → a pod on the first node", a.first},
		{fmt.Sprintf("apply → every node itself (%d Svcs)", len(a.hosts)), a.hosts},
		{"  (info) the podnet apply exec alone", a.cli},
	} {
		if len(r.v) == 0 {
			fmt.Fprintf(w, "%-42s%12s%12s\n", r.label, "-", "-")
			continue
		}
		fmt.Fprintf(w, "%-42s%12s%12s\n", r.label, ms(benchutil.Median(r.v)), ms(benchutil.Quantile(r.v, 0.99)))
	}
	fmt.Fprintln(w, line)
	fmt.Fprintln(w, "from the start of the `podnet apply` exec (clusterIP requested, selector on a ready 3-replica Deployment) to each pod's probe")
	fmt.Fprintln(w, "(a connect every 1 ms from inside the pod) first succeeding: store → EndpointSlice controller → every agent's sync. No peer:")
	fmt.Fprintln(w, "no kube-proxy cluster runs here. p99 of 20 (nearest rank) is the slowest.")
	fmt.Fprintln(w, "\"every node itself\": the same probe in each node's own namespace (host network), started with ip netns exec.")
	if a.hostErr != "" {
		fmt.Fprintf(w, "NOTE: probing from the nodes themselves stopped: %s\n", firstLine(a.hostErr))
	}
	if a.err != nil {
		fmt.Fprintf(w, "FAILED after %d Services: %v\n", len(a.all), firstLine(a.err.Error()))
	}
	if m := a.mem; m != nil {
		b.printAgentMem(w, m)
	}
}

func (b *bench) printAgentMem(w io.Writer, m *agentMem) {
	fmt.Fprintln(w)
	fmt.Fprintf(w, "agent memory in the same cluster with %d more Services × %d endpoints (selector-less, hand-written EndpointSlices)\n", m.services, b.o.eps)
	head := fmt.Sprintf("%-42s%14s%14s", "metric", "median", "max")
	fmt.Fprintln(w, head)
	line := strings.Repeat("-", len(head)+20)
	fmt.Fprintln(w, line)
	if m.err != nil {
		fmt.Fprintf(w, "FAILED: %v\n", firstLine(m.err.Error()))
		fmt.Fprintln(w, line)
		return
	}
	med := func(v []int) string { return mib(benchutil.Median(v)) }
	mx := func(v []int) string { return mib(slices.Max(append([]int{0}, v...))) }
	fmt.Fprintf(w, "%-42s%14s%14s\n", "agent VmRSS with 20 Services", med(m.before), mx(m.before))
	fmt.Fprintf(w, "%-42s%14s%14s\n", fmt.Sprintf("agent VmRSS with %s Services", scaleName(m.services+20)), med(m.after), mx(m.after))
	fmt.Fprintf(w, "%-42s%14s%14s\n", "  of which RssAnon (its own)", med(m.anon), mx(m.anon))
	fmt.Fprintf(w, "%-42s%14s\n", "server VmRSS (etcd + controllers)", mib(m.server))
	fmt.Fprintf(w, "%-42s%14s\n", "  (info) the 16 parallel podnet applys", m.apply.Round(100*time.Millisecond))
	fmt.Fprintf(w, "%-42s%14s\n", "  (info) apply start → all on every node", m.programmed.Round(100*time.Millisecond))
	fmt.Fprintln(w, line)
	fmt.Fprintln(w, "compare: the drivers' VmRSS at 10k in the first table (kube-proxy's driver holds its proxier and the decoded objects,")
	fmt.Fprintln(w, "an agent its informers' caches and the proxier).")
}

func (b *bench) val(peer string, n int, f func(*peerRun) float64) float64 {
	pr := b.runs[peer][n]
	if pr == nil || pr.sync == nil {
		return 0
	}
	return f(pr)
}

func (b *bench) printSync(w io.Writer, peers, others []string) {
	var rows []row
	per := func(label string, n int, f func(*peerRun) float64, fm func(float64) string, goal func(map[string]float64) (string, bool, bool)) {
		v := map[string]float64{}
		for _, p := range peers {
			v[p] = b.val(p, n, f)
		}
		rows = append(rows, row{label: label, vals: v, fmt: fm, goal: goal})
	}
	full := func(pr *peerRun) float64 { return pr.sync.FullSync }
	part := func(pr *peerRun) float64 { return median(pr.sync.Partial) }
	partMax := func(pr *peerRun) float64 { return slices.Max(append([]float64{0}, pr.sync.Partial...)) }
	rss := func(pr *peerRun) float64 { return float64(pr.sync.RSSKiB) }
	max := slices.Max(b.scales)
	if b.want["sync"] {
		for _, n := range b.scales {
			var goal func(map[string]float64) (string, bool, bool)
			if n == 10000 {
				goal = func(v map[string]float64) (string, bool, bool) {
					if v["podnet"] == 0 {
						return "", false, false
					}
					if v["nftables"] == 0 {
						return "≤ 1 s", v["podnet"] <= 1, true
					}
					return "≤ 1 s, ≤ 0.10 × nft", v["podnet"] <= 1 && v["podnet"] <= 0.1*v["nftables"], true
				}
			}
			per(fmt.Sprintf("full sync, %s Services", scaleName(n)), n, full, secs, goal)
		}
		for _, n := range b.scales {
			var goal func(map[string]float64) (string, bool, bool)
			if n == 10000 {
				goal = func(v map[string]float64) (string, bool, bool) {
					return "≤ 50 ms", v["podnet"] <= 0.050, v["podnet"] > 0
				}
			}
			per(fmt.Sprintf("one Service changed, %s (median)", scaleName(n)), n, part, secs, goal)
		}
		per(fmt.Sprintf("  (info) slowest of %d changes, %s", b.o.updates, scaleName(max)), max, partMax, secs, nil)
		per(fmt.Sprintf("driver RSS at %s Services", scaleName(max)), max, rss, func(f float64) string { return mib(int(f)) }, nil)
		nftPart := func(pr *peerRun) float64 { return pr.sync.NFTSeconds }
		if b.val("podnet", max, nftPart) > 0 { // only with -podnet-knftables
			per(fmt.Sprintf("  (info) its nft -f alone, %s", scaleName(max)), max, nftPart, secs, nil)
		}
		for _, n := range b.scales {
			n := n
			ld := func(pr *peerRun) float64 { return pr.load }
			per(fmt.Sprintf("  (info) load average after the sync, %s", scaleName(n)), n, ld, func(f float64) string { return fmt.Sprintf("%.1f", f) }, nil)
			rows[len(rows)-1].noRatio = true
		}
	}
	if b.want["latency"] {
		for _, q := range []struct {
			name string
			q    float64
		}{{"p50", 0.5}, {"p99", 0.99}} {
			for _, n := range b.scales {
				q := q
				f := func(pr *peerRun) float64 {
					if pr.lat == nil {
						return 0
					}
					return float64(benchutil.Quantile(pr.lat.service, q.q))
				}
				label := fmt.Sprintf("connect via ClusterIP %s, %s svcs", q.name, scaleName(n))
				if q.q > 0.5 {
					// The tail is the machine's scheduling more than the
					// rules: shown, not judged.
					label = fmt.Sprintf("  (info) connect %s, %s svcs", q.name, scaleName(n))
				}
				per(label, n, f, func(f float64) string { return usec(time.Duration(f)) }, nil)
			}
		}
		// Judged: the ClusterIP's p50 over the pod IP's, in the same
		// topology and interleaved, so that load shifting a whole block
		// cancels out.
		for _, n := range b.scales {
			goal := func(v map[string]float64) (string, bool, bool) {
				if v["podnet"] == 0 || v["nftables"] == 0 {
					return "", false, false
				}
				return "≤ 1.10 × nft", v["podnet"] <= 1.1*v["nftables"], true
			}
			per(fmt.Sprintf("connect p50 ClusterIP/pod IP, %s", scaleName(n)), n, normP50,
				func(f float64) string { return fmt.Sprintf("%.3f", f) }, goal)
		}
		for _, n := range b.scales {
			f := func(pr *peerRun) float64 {
				if pr.lat == nil {
					return 0
				}
				return float64(benchutil.Median(pr.lat.direct))
			}
			per(fmt.Sprintf("  (info) connect to pod IP p50, %s", scaleName(n)), n, f,
				func(f float64) string { return usec(time.Duration(f)) }, nil)
		}
	}

	// The table.
	cols := []string{fmt.Sprintf("%-42s", "metric")}
	for _, p := range peers {
		cols = append(cols, fmt.Sprintf("%12s", shortLabel(p)))
	}
	for _, p := range others {
		cols = append(cols, fmt.Sprintf("%10s", "pn/"+shortLabel(p)))
	}
	cols = append(cols, "  goal")
	head := strings.Join(cols, "")
	fmt.Fprintln(w, head)
	line := strings.Repeat("-", len([]rune(head))+22)
	fmt.Fprintln(w, line)
	met, goals := 0, 0
	for _, r := range rows {
		fmt.Fprintf(w, "%-42s", r.label)
		for _, p := range peers {
			fmt.Fprintf(w, "%12s", r.fmt(r.vals[p]))
		}
		for _, p := range others {
			if r.vals["podnet"] > 0 && r.vals[p] > 0 && !r.noRatio {
				fmt.Fprintf(w, "%10.3f", r.vals["podnet"]/r.vals[p])
			} else {
				fmt.Fprintf(w, "%10s", "-")
			}
		}
		if r.goal != nil {
			if desc, ok, judged := r.goal(r.vals); judged {
				goals++
				verdict := "MISSED"
				if ok {
					verdict = "met"
					met++
				}
				fmt.Fprintf(w, "  %s: %s", desc, verdict)
			}
		}
		fmt.Fprintln(w)
	}
	// Flatness of podnet's connect latency (floor-normalised).
	if b.want["latency"] && len(b.scales) > 1 {
		lo, hi := b.scales[0], max
		p := func(n int) float64 {
			pr := b.runs["podnet"][n]
			if pr == nil {
				return 0
			}
			return normP50(pr)
		}
		if p(lo) > 0 && p(hi) > 0 {
			r := p(hi) / p(lo)
			goals++
			verdict := "MISSED"
			if r <= 1.10 {
				verdict = "met"
				met++
			}
			fmt.Fprintf(w, "%-42s%12.3f%*s  flat, ≤ 1.10: %s\n", fmt.Sprintf("  flatness: that, %s / %s svcs", scaleName(hi), scaleName(lo)), r,
				12*(len(peers)-1)+10*len(others), "", verdict)
		}
	}
	fmt.Fprintln(w, line)
	fmt.Fprintf(w, "pn/X = podnet / X (lower is better: 0.10 = ten times faster). goals: %d of %d met\n", met, goals)
	fmt.Fprintf(w, "full sync: from the first Service handed to the proxier to the rules in the kernel (one nft/iptables-restore transaction);\n")
	fmt.Fprintf(w, "one change: one EndpointSlice's endpoint replaced, then a sync (kube-proxy: a partial sync), %d times, different Services.\n", b.o.updates)
	fmt.Fprintf(w, "connect: connect(2)+poll(2) from a client namespace through the node namespace to a server namespace, %d per proxy and\n", b.o.connects)
	fmt.Fprintf(w, "scale, round robin over 10 target Services spread over the list (each with the server's 10 addresses as endpoints),\n")
	fmt.Fprintf(w, "interleaved with as many connects straight to the server's pod IPs (the topology's floor; with iptables every new\n")
	fmt.Fprintf(w, "connection walks KUBE-SERVICES, so its floor grows too). Judged: ClusterIP p50 / pod IP p50 (load moving a whole block\n")
	fmt.Fprintf(w, "cancels out); p99 is shown, not judged: on a shared 2-CPU box it is scheduling.\n")
	for _, p := range peers {
		for _, n := range b.scales {
			if pr := b.runs[p][n]; pr != nil && pr.err != nil {
				fmt.Fprintf(w, "FAILED: %s, %s Services: %v\n", peerLabel[p], scaleName(n), firstLine(pr.err.Error()))
			}
		}
	}
}

// normP50 is the ClusterIP connect p50 over the pod IP connect p50.
func normP50(pr *peerRun) float64 {
	if pr.lat == nil || len(pr.lat.direct) == 0 {
		return 0
	}
	d := benchutil.Median(pr.lat.direct)
	if d == 0 {
		return 0
	}
	return float64(benchutil.Median(pr.lat.service)) / float64(d)
}

func (b *bench) printIperf(w io.Writer) {
	fmt.Fprintln(w)
	fmt.Fprintf(w, "TCP throughput through a ClusterIP vs the pod IP: iperf3, 1 stream, %d s after 1 s omitted, median of %d rounds, interleaved\n",
		b.o.iperfSecs, b.o.iperfRounds)
	head := fmt.Sprintf("%-28s%14s%14s%10s  %s", "proxy", "pod IP", "ClusterIP", "ratio", "goal")
	fmt.Fprintln(w, head)
	line := strings.Repeat("-", len(head)+20)
	fmt.Fprintln(w, line)
	for _, ir := range b.iperf {
		if ir.err != nil {
			fmt.Fprintf(w, "%-28s  FAILED: %v\n", peerLabel[ir.peer], firstLine(ir.err.Error()))
			continue
		}
		d, s, r := median(ir.direct), median(ir.service), ir.ratio()
		goal := ""
		if ir.peer == "podnet" {
			goal = "≥ 0.95: MISSED"
			if r >= 0.95 {
				goal = "≥ 0.95: met"
			}
		}
		fmt.Fprintf(w, "%-28s%9.2f Gb/s%9.2f Gb/s%10.3f  %s\n", peerLabel[ir.peer], d, s, r, goal)
	}
	fmt.Fprintln(w, line)
	fmt.Fprintln(w, "ratio = median over the rounds of ClusterIP / pod IP within a round (higher is better; 1.00 = the Service costs")
	fmt.Fprintln(w, "nothing); the Gb/s columns are medians. Same client, node and server namespaces; the load moves single runs ±50% here.")
	for _, ir := range b.iperf {
		if ir.err == nil {
			fmt.Fprintf(w, "  rounds %-22s pod IP %s; ClusterIP %s Gbit/s\n", peerLabel[ir.peer]+":", floats(ir.direct), floats(ir.service))
		}
	}
}

// ratio is the median of the rounds' ClusterIP / pod IP: each round's two
// runs are adjacent, so load that drifts over the rounds cancels out.
func (ir *iperfRun) ratio() float64 {
	var r []float64
	for i := range min(len(ir.direct), len(ir.service)) {
		if ir.direct[i] > 0 {
			r = append(r, ir.service[i]/ir.direct[i])
		}
	}
	return median(r)
}

func floats(v []float64) string {
	var s []string
	for _, f := range v {
		s = append(s, fmt.Sprintf("%.2f", f))
	}
	return strings.Join(s, ", ")
}

func shortLabel(p string) string {
	switch p {
	case "nftables":
		return "nft"
	case "iptables":
		return "ipt"
	case "iptables-nft":
		return "ipt-nft"
	}
	return p
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// kubeProxyVersion is the peer's version, as bench/svcbench/kubeproxy's
// go.mod requires it.
const kubeProxyVersion = "v1.37.2"

func nftVersion() string {
	out, err := exec.Command("nft", "--version").Output()
	if err != nil {
		return "nft ?"
	}
	return strings.TrimSpace(string(out))
}

// loadAvg is the 1-minute load average at the end of the run: other work
// on the machine shifts the absolute numbers (and, as the proxies run one
// after the other, the ratios too).
func loadAvg() string {
	return fmt.Sprintf("load average %.1f", load1())
}

func load1() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b))[0], 64)
	return f
}
