package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/podnet/podnet/internal/netns"
)

// tpath is one measured path: pod to pod across two nodes, or the
// underlay between the same two node namespaces.
type tpath struct {
	label    string
	cr       *clusterRun
	underlay bool
	mtu      string
	client   func(ctx context.Context) (*iperfResult, error)
	runs     []iperfResult
}

type throughput struct {
	paths []*tpath
}

// iperfResult is what we read of `iperf3 -J`.
type iperfResult struct {
	bps     float64
	retrans int
}

const underlayPort = "5202" // the node-to-node server; pods use iperf3's 5201

var podIPRE = regexp.MustCompile(`\bip=([0-9.]+)`)

// throughput sets up, in each 3-node cluster, an iperf3 server pod on the
// second node and a client pod on the first, plus an iperf3 server in the
// second node's own namespace on its underlay address; then it runs every
// path's client in turn, rotating the order each round.
func (b *bench) throughput(ctx context.Context) (*throughput, error) {
	t := &throughput{}
	var pods, unders []*tpath
	for _, cr := range b.small {
		nodes := cr.rec.Topology.Nodes()
		n1, n2 := nodes[0], nodes[1]
		fmt.Fprintf(os.Stderr, "clusterbench: %s: iperf3 server pod on %s, client pod on %s\n", cr.name, n2.Name, n1.Name)
		out, _, err := b.podnet(ctx, time.Minute, "--cluster", cr.name, "run", Prefix+"srv", "--node", n2.Name, "--wait", "--", "iperf3", "-s")
		if err != nil {
			return nil, err
		}
		m := podIPRE.FindStringSubmatch(out)
		if m == nil {
			return nil, fmt.Errorf("podnet run %ssrv: no ip= in its output: %q", Prefix, out)
		}
		srvIP := m[1]
		if _, _, err := b.podnet(ctx, time.Minute, "--cluster", cr.name, "run", Prefix+"cli", "--node", n1.Name, "--wait", "--", "sleep", "infinity"); err != nil {
			return nil, err
		}
		linkOut, _, err := b.podnet(ctx, 30*time.Second, "--cluster", cr.name, "exec", Prefix+"cli", "--", "ip", "-o", "link", "show", "eth0")
		if err != nil {
			return nil, err
		}
		podMTU := "?"
		if m := mtuRE.FindStringSubmatch(linkOut); m != nil {
			podMTU = m[1]
		}
		if err := b.startUnderlayServer(n2.NetNS, n2.IP().String()); err != nil {
			return nil, err
		}
		underMTU, err := linkMTU(n1.NetNS, n1.Ifaces[0].Name)
		if err != nil {
			return nil, err
		}
		name, secs := cr.name, b.o.secs
		pods = append(pods, &tpath{
			label: fmt.Sprintf("pod on n1 → pod on n2, %s", cr.backend), cr: cr, mtu: podMTU,
			client: func(ctx context.Context) (*iperfResult, error) {
				return retryIperf(ctx, func(ctx context.Context) ([]byte, error) {
					out, _, err := b.podnet(ctx, time.Duration(secs+30)*time.Second, "--cluster", name, "exec", Prefix+"cli", "--",
						"iperf3", "-c", srvIP, "-t", fmt.Sprint(secs), "-O", "1", "-J")
					return []byte(out), err
				})
			},
		})
		n1ns, n2ip := n1.NetNS, n2.IP().String()
		unders = append(unders, &tpath{
			label: fmt.Sprintf("underlay, node n1 → n2 (%s cluster)", cr.backend), cr: cr, underlay: true, mtu: fmt.Sprint(underMTU),
			client: func(ctx context.Context) (*iperfResult, error) {
				return retryIperf(ctx, func(ctx context.Context) ([]byte, error) {
					return runInNS(ctx, n1ns, time.Duration(secs+30)*time.Second,
						"iperf3", "-c", n2ip, "-p", underlayPort, "-t", fmt.Sprint(secs), "-O", "1", "-J")
				})
			},
		})
	}
	for i := range pods {
		t.paths = append(t.paths, unders[i], pods[i])
	}
	for r := 0; r < b.o.rounds; r++ {
		for k := range t.paths {
			p := t.paths[(r+k)%len(t.paths)]
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			fmt.Fprintf(os.Stderr, "clusterbench: round %d/%d: iperf3 %ds, %s\n", r+1, b.o.rounds, b.o.secs, p.label)
			res, err := p.client(ctx)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.label, err)
			}
			p.runs = append(p.runs, *res)
		}
	}
	return t, nil
}

// startUnderlayServer starts `iperf3 -s` in a node's own namespace, bound
// to its underlay address, and registers its end.
func (b *bench) startUnderlayServer(ns, ip string) error {
	cmd := exec.Command("iperf3", "-s", "-B", ip, "-p", underlayPort)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := netns.Do(netns.Path(ns), cmd.Start); err != nil {
		return fmt.Errorf("iperf3 server in %s: %w", ns, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	b.c.Add(fmt.Sprintf("iperf3 server %d in %s", cmd.Process.Pid, ns), func() error {
		_ = cmd.Process.Kill()
		select {
		case <-exited:
			return nil
		case <-time.After(5 * time.Second):
			return errors.New("did not exit after SIGKILL")
		}
	})
	return nil
}

// runInNS runs a command with the calling thread in a node's namespace
// (like nsenter --net) and returns its standard output.
func runInNS(ctx context.Context, ns string, timeout time.Duration, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := netns.Do(netns.Path(ns), cmd.Start); err != nil {
		return nil, fmt.Errorf("%s in %s: %w", name, ns, err)
	}
	if err := cmd.Wait(); err != nil {
		return out.Bytes(), fmt.Errorf("%s %s in %s: %w: %s", name, strings.Join(args, " "), ns, err, strings.TrimSpace(errb.String()))
	}
	return out.Bytes(), nil
}

var mtuRE = regexp.MustCompile(`\bmtu ([0-9]+)`)

// linkMTU reads a link's MTU inside a namespace over netlink.
func linkMTU(ns, link string) (int, error) {
	h, err := openHandle(ns)
	if err != nil {
		return 0, err
	}
	defer h.close()
	l, err := h.h.LinkByName(link)
	if err != nil {
		return 0, fmt.Errorf("netns %s: link %s: %w", ns, link, err)
	}
	return l.Attrs().MTU, nil
}

// retryIperf runs an iperf3 client, retrying for a few seconds while the
// server is not listening yet (a pod reported Running may still be
// starting its process).
func retryIperf(ctx context.Context, run func(context.Context) ([]byte, error)) (*iperfResult, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := run(ctx)
		res, perr := parseIperf(out)
		if perr == nil {
			return res, nil
		}
		if err == nil {
			err = perr
		}
		if time.Now().After(deadline) || ctx.Err() != nil || !strings.Contains(strings.ToLower(perr.Error()+err.Error()), "connect") {
			return nil, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func parseIperf(out []byte) (*iperfResult, error) {
	var j struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
		} `json:"end"`
	}
	// `podnet exec` may print around the JSON; take the object.
	i, k := bytes.IndexByte(out, '{'), bytes.LastIndexByte(out, '}')
	if i < 0 || k < i {
		return nil, fmt.Errorf("iperf3: no JSON in its output: %q", string(out))
	}
	if err := json.Unmarshal(out[i:k+1], &j); err != nil {
		return nil, fmt.Errorf("iperf3 JSON: %w", err)
	}
	if j.Error != "" {
		return nil, fmt.Errorf("iperf3: %s", j.Error)
	}
	if j.End.SumReceived.BitsPerSecond <= 0 {
		return nil, errors.New("iperf3: no bytes received")
	}
	return &iperfResult{bps: j.End.SumReceived.BitsPerSecond, retrans: j.End.SumSent.Retransmits}, nil
}

func iperfVersion() string {
	out, err := exec.Command("iperf3", "--version").Output()
	if err != nil {
		return "iperf3 missing"
	}
	return strings.TrimSpace(strings.SplitN(string(out), "\n", 2)[0])
}

func (p *tpath) medianBps() float64 {
	var v []float64
	for _, r := range p.runs {
		v = append(v, r.bps)
	}
	return medianF(v)
}

func (p *tpath) medianRetrans() int {
	var v []float64
	for _, r := range p.runs {
		v = append(v, float64(r.retrans))
	}
	return int(medianF(v))
}

func (t *throughput) print(w io.Writer, o options) {
	fmt.Fprintf(w, "cross-node TCP throughput: iperf3, 1 stream, %d s after 1 s omitted; median of %d rounds, interleaved\n", o.secs, o.rounds)
	fmt.Fprintf(w, "%-44s %5s %9s %8s %7s\n", "path", "MTU", "Gbit/s", "retrans", "ratio")
	fmt.Fprintln(w, strings.Repeat("-", 80))
	var under *tpath
	for _, p := range t.paths {
		if p.underlay {
			under = p
		}
		ratio, note := 1.0, "(the peer)"
		if !p.underlay && under != nil {
			ratio = p.medianBps() / under.medianBps()
			note = p.cr.backend + "/underlay"
		}
		fmt.Fprintf(w, "%-44s %5s %9.2f %8d %7.2f  %s\n", p.label, p.mtu, p.medianBps()/1e9, p.medianRetrans(), ratio, note)
	}
	fmt.Fprintln(w, strings.Repeat("-", 80))
	fmt.Fprintln(w, "ratio = pod-to-pod / underlay between the same two node namespaces (higher is better; 1.00 = no overlay cost)")
	for _, p := range t.paths {
		var s []string
		for _, r := range p.runs {
			s = append(s, fmt.Sprintf("%.2f", r.bps/1e9))
		}
		fmt.Fprintf(w, "  rounds %-44s %s Gbit/s\n", p.label+":", strings.Join(s, ", "))
	}
	fmt.Fprintln(w)
}
