package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/podnet/podnet/bench/internal/benchutil"
	"github.com/podnet/podnet/internal/cluster"
	"github.com/podnet/podnet/internal/netns"
	"golang.org/x/sys/unix"
)

// The apply phase: in a local cluster (`podnet cluster create`, 3 nodes)
// with a 3-replica Deployment spread over the nodes, the time from `podnet
// apply` of a new Service to a connect through its ClusterIP succeeding
// from a pod on every node. The probes are this binary's `probe`
// subcommand, started in the pods with `podnet exec` before the apply.

// clusterName is the run's cluster: pnb, the run ID, "ap".
func (b *bench) clusterName() string { return Prefix + b.runID + "ap" }

// ourCluster matches the namespaces of the clusters this benchmark makes.
var ourCluster = regexp.MustCompile(`^podnet-(` + Prefix + `[0-9a-f]{6}ap)-`)

// applyRun is what the apply phase measured.
type applyRun struct {
	nodes   int             // nodes probed (one pod each)
	all     []time.Duration // apply exec → the last pod's first successful connect
	first   []time.Duration // … → the first pod's
	hosts   []time.Duration // … → the last node namespace's (host network)
	cli     []time.Duration // the `podnet apply` exec alone
	hostErr string          // why probing from the nodes themselves stopped
	mem     *agentMem       // the agents' memory with many Services (phase agentmem)
	err     error
}

// env is the environment of podnet commands on the run's cluster.
func (b *bench) env() []string {
	return append(benchutil.Environ(),
		cluster.ConfigEnv+"="+filepath.Join(b.dir, "config"),
		cluster.DirEnv+"="+filepath.Join(b.dir, "clusters"))
}

func (b *bench) podnet(ctx context.Context, timeout time.Duration, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(b.o.PodnetBin, "podnet"), args...)
	cmd.Env = b.env()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.Bytes(), fmt.Errorf("podnet %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()+out.String()))
	}
	return out.Bytes(), nil
}

func (b *bench) applyPhase(ctx context.Context) *applyRun {
	ar := &applyRun{}
	name := b.clusterName()
	deleted := false
	del := func() error {
		if deleted {
			return nil
		}
		deleted = true
		_, err := b.podnet(context.Background(), 2*time.Minute, "cluster", "delete", "--name", name)
		return err
	}
	b.c.Add("cluster "+name, del)
	defer func() {
		if err := del(); err != nil {
			fmt.Fprintf(os.Stderr, "svcbench: %v\n", err)
		}
	}()
	fmt.Fprintf(os.Stderr, "svcbench: apply → traffic: podnet cluster create --name %s --nodes 3 …\n", name)
	if _, err := b.podnet(ctx, 2*time.Minute, "cluster", "create", "--name", name, "--nodes", "3"); err != nil {
		ar.err = err
		return ar
	}
	podnetBin := filepath.Join(b.o.PodnetBin, "podnet")
	if _, err := b.podnet(ctx, 30*time.Second, "create", "deployment", "web", "--replicas", "3", "--port", "8080",
		"--", podnetBin, "echo-server", "--listen", ":8080"); err != nil {
		ar.err = err
		return ar
	}
	pods, err := b.waitPods(ctx, 3, 60*time.Second)
	if err != nil {
		ar.err = err
		return ar
	}
	ar.nodes = len(pods)
	self, err := os.Executable()
	if err != nil {
		ar.err = err
		return ar
	}
	rec, err := cluster.LoadRecord(filepath.Join(b.dir, "clusters", name))
	if err != nil {
		ar.err = err
		return ar
	}
	var hostNS []string
	for _, n := range rec.Topology.Nodes() {
		hostNS = append(hostNS, n.NetNS)
	}
	rounds := 20
	for i := 1; i <= rounds; i++ {
		if ctx.Err() != nil {
			ar.err = ctx.Err()
			return ar
		}
		ip := netip.AddrFrom4([4]byte{10, 96, 200, byte(i)})
		if ar.hostErr != "" {
			hostNS = nil
		}
		res, err := b.applyOnce(ctx, self, pods, hostNS, i, ip)
		if err != nil {
			ar.err = fmt.Errorf("service %d: %w", i, err)
			return ar
		}
		ar.all, ar.first, ar.cli = append(ar.all, res.pods), append(ar.first, res.first), append(ar.cli, res.cli)
		if res.hostErr != "" {
			ar.hostErr = res.hostErr
		} else if len(hostNS) > 0 {
			ar.hosts = append(ar.hosts, res.hosts)
		}
	}
	fmt.Fprintf(os.Stderr, "svcbench:   %d Services: apply → a pod on every node p50 %s, max %s\n", rounds,
		benchutil.Median(ar.all).Round(time.Millisecond), benchutil.Quantile(ar.all, 1).Round(time.Millisecond))
	if b.want["agentmem"] && ctx.Err() == nil {
		ar.mem = b.loadServices(ctx, rec, b.o.agentSvcs, b.o.eps)
		if ar.mem.err != nil {
			b.failed++
			fmt.Fprintf(os.Stderr, "svcbench: agent memory: FAILED: %v\n", ar.mem.err)
		}
	}
	return ar
}

// waitPods waits for n Running pods with IPs of the Deployment, and
// returns one per node (name by node).
func (b *bench) waitPods(ctx context.Context, n int, timeout time.Duration) (map[string]string, error) {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		out, err := b.podnet(ctx, 10*time.Second, "get", "pods", "-o", "json")
		if err == nil {
			var list struct {
				Items []struct {
					Metadata struct {
						Name   string            `json:"name"`
						Labels map[string]string `json:"labels"`
					} `json:"metadata"`
					Spec struct {
						NodeName string `json:"nodeName"`
					} `json:"spec"`
					Status struct {
						Phase string `json:"phase"`
						PodIP string `json:"podIP"`
					} `json:"status"`
				} `json:"items"`
			}
			if err := json.Unmarshal(out, &list); err != nil {
				return nil, fmt.Errorf("podnet get pods -o json: %w", err)
			}
			byNode := map[string]string{}
			running := 0
			for _, p := range list.Items {
				if p.Metadata.Labels["app"] == "web" && p.Status.Phase == "Running" && p.Status.PodIP != "" {
					running++
					byNode[p.Spec.NodeName] = p.Metadata.Name
				}
			}
			if running >= n {
				return byNode, nil
			}
			last = fmt.Sprintf("%d of %d pods running", running, n)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("deployment web not running after %s: %s", timeout, last)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// onceResult is one Service's times from the start of the apply exec.
type onceResult struct {
	pods, first, hosts, cli time.Duration
	hostErr                 string
}

// applyOnce starts a probe in each pod (podnet exec) and in each node's
// own namespace, waits until all of them poll, applies Service i
// (clusterIP ip, selector app=web, 80 → 8080) and waits for every probe's
// first successful connect. A pod probe that fails is an error; a node's
// is reported in hostErr.
func (b *bench) applyOnce(ctx context.Context, self string, pods map[string]string, hostNS []string, i int, ip netip.Addr) (res onceResult, err error) {
	manifest := filepath.Join(b.dir, fmt.Sprintf("svc-%d.yaml", i))
	y := fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata:\n  name: pnb-%d\nspec:\n  clusterIP: %s\n  selector:\n    app: web\n  ports:\n  - port: 80\n    targetPort: 8080\n", i, ip)
	if err := os.WriteFile(manifest, []byte(y), 0o644); err != nil {
		return res, err
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	type probe struct {
		what string // "pod P on N" or "node namespace NS"
		host bool
		cmd  *exec.Cmd
		sc   *bufio.Scanner
		errb *bytes.Buffer
	}
	var probes []*probe
	defer func() {
		for _, p := range probes {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	}()
	probeArgs := []string{self, "probe", "-addr", netip.AddrPortFrom(ip, 80).String(), "-timeout", "20s"}
	start := func(what string, host bool, cmd *exec.Cmd) error {
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		errb := &bytes.Buffer{}
		cmd.Stderr = errb
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("probe in %s: %w", what, err)
		}
		probes = append(probes, &probe{what: what, host: host, cmd: cmd, sc: bufio.NewScanner(stdout), errb: errb})
		return nil
	}
	nodes := make([]string, 0, len(pods))
	for n := range pods {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for _, n := range nodes {
		cmd := exec.CommandContext(pctx, filepath.Join(b.o.PodnetBin, "podnet"), append([]string{"exec", pods[n], "--"}, probeArgs...)...)
		cmd.Env = b.env()
		if err := start(fmt.Sprintf("pod %s on %s", pods[n], n), false, cmd); err != nil {
			return res, err
		}
	}
	for _, ns := range hostNS {
		cmd := exec.CommandContext(pctx, "ip", append([]string{"netns", "exec", ns}, probeArgs...)...)
		if err := start("node namespace "+ns, true, cmd); err != nil {
			return res, err
		}
	}
	for _, p := range probes {
		if !p.sc.Scan() || p.sc.Text() != "ready" {
			return res, fmt.Errorf("probe in %s did not start: %q %s", p.what, p.sc.Text(), strings.TrimSpace(p.errb.String()))
		}
	}
	t0 := time.Now()
	if _, err := b.podnet(ctx, 30*time.Second, "apply", "-f", manifest); err != nil {
		return res, err
	}
	res.cli = time.Since(t0)
	for _, p := range probes {
		if !p.sc.Scan() {
			_ = p.cmd.Wait()
			msg := fmt.Sprintf("from %s: no connect through %s:80 within 20 s: %s", p.what, ip, strings.TrimSpace(p.errb.String()))
			if p.host {
				res.hostErr = msg
				continue
			}
			return res, errors.New(msg)
		}
		f := strings.Fields(p.sc.Text())
		if len(f) != 2 || f[0] != "ok" {
			return res, fmt.Errorf("probe in %s said %q", p.what, p.sc.Text())
		}
		ns, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return res, err
		}
		d := time.Unix(0, ns).Sub(t0)
		if p.host {
			res.hosts = max(res.hosts, d)
			continue
		}
		res.pods = max(res.pods, d)
		if res.first == 0 || d < res.first {
			res.first = d
		}
	}
	return res, nil
}

// probeCmd is `svcbench probe`: print "ready", then try to connect to
// -addr every millisecond until one succeeds, and print "ok <unix ns>" of
// that moment. Run in a pod's namespace by `podnet exec`.
func probeCmd(args []string) int {
	fs := flag.NewFlagSet("probe", flag.ExitOnError)
	addr := fs.String("addr", "", "IP:port to connect to")
	timeout := fs.Duration("timeout", 20*time.Second, "give up after")
	_ = fs.Parse(args)
	dst, err := netip.ParseAddrPort(*addr)
	if err != nil || !dst.Addr().Is4() {
		fmt.Fprintln(os.Stderr, "probe: -addr: want IPv4:port")
		return 2
	}
	fmt.Println("ready")
	deadline := time.Now().Add(*timeout)
	var last error
	for time.Now().Before(deadline) {
		if err := quickConnect(dst); err == nil {
			fmt.Printf("ok %d\n", time.Now().UnixNano())
			return 0
		} else {
			last = err
		}
		time.Sleep(time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "probe: %s: %v\n", dst, last)
	return 1
}

// quickConnect is one connect with a 100 ms limit (a dropped SYN is
// retried by the loop, not after the kernel's 1 s).
func quickConnect(dst netip.AddrPort) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	tv := unix.Timeval{Usec: 100000}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	_ = unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	return unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()})
}

// sweepClusters deletes clusters a killed earlier run left, found by
// their namespaces' names: with the run's context file and cluster
// directory if its temp dir is still there, else a scratch one (delete
// then works from the names alone). Call it before the temp dirs go.
func sweepClusters(tmpBase, podnet string) {
	ents, _ := os.ReadDir(netns.Dir)
	names := map[string]bool{}
	for _, e := range ents {
		if m := ourCluster.FindStringSubmatch(e.Name()); m != nil {
			names[m[1]] = true
		}
	}
	for name := range names {
		fmt.Fprintf(os.Stderr, "bench: removing cluster %s left by an earlier run\n", name)
		dir := ""
		if recs, _ := filepath.Glob(filepath.Join(tmpBase, Prefix+"-svc-*", "clusters", name)); len(recs) > 0 {
			dir = filepath.Dir(filepath.Dir(recs[0]))
		} else {
			scratch, err := os.MkdirTemp(tmpBase, Prefix+"-svc-sweep-")
			if err != nil {
				continue
			}
			defer os.RemoveAll(scratch)
			dir = scratch
		}
		cmd := exec.Command(podnet, "cluster", "delete", "--name", name)
		cmd.Env = append(benchutil.Environ(), cluster.ConfigEnv+"="+filepath.Join(dir, "config"),
			cluster.DirEnv+"="+filepath.Join(dir, "clusters"))
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: podnet cluster delete --name %s: %v: %s\n", name, err, out)
		}
	}
}

// agentMem is the agents' memory with many Services loaded.
type agentMem struct {
	services      int
	before, after []int // VmRSS (KiB) of each agent, before and after
	anon          []int // RssAnon after
	server        int   // the server's VmRSS after
	apply         time.Duration
	programmed    time.Duration // apply start → every node's service-ips holds them all
	err           error
}

// loadServices applies n selector-less Services with a hand-written
// EndpointSlice of eps endpoints each (managed-by pnb-bench, so the
// EndpointSlice controller leaves them alone) through 16 parallel `podnet
// apply`s, waits until every node's service-ips map holds them, and reads
// the agents' memory.
func (b *bench) loadServices(ctx context.Context, rec *cluster.Record, n, eps int) *agentMem {
	am := &agentMem{services: n}
	for i := range rec.Agents {
		rss, _, _, _ := procMem(rec.Agents[i].PID())
		am.before = append(am.before, rss)
	}
	base := map[string]int{}
	for _, node := range rec.Topology.Nodes() {
		c, err := countServiceIPs(ctx, node.NetNS)
		if err != nil {
			am.err = fmt.Errorf("node %s: %w", node.Name, err)
			return am
		}
		base[node.Name] = c
	}
	o := generate(genSpec{services: n, eps: eps, targets: 1})
	ns := filepath.Join(b.dir, "bench-ns.yaml")
	if err := os.WriteFile(ns, []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench\n"), 0o644); err != nil {
		am.err = err
		return am
	}
	if _, err := b.podnet(ctx, 30*time.Second, "apply", "-f", ns); err != nil {
		am.err = err
		return am
	}
	const parts = 16
	var files []string
	for p := 0; p < parts; p++ {
		var items []any
		for i := p; i < n; i += parts {
			s := o.Slices[i]
			s.Labels["endpointslice.kubernetes.io/managed-by"] = "pnb-bench"
			svc := o.Services[i]
			svc.Spec.Selector = nil
			// Created, not updated: no resourceVersion or UID to match.
			svc.ResourceVersion, svc.UID, s.ResourceVersion = "", "", ""
			items = append(items, svc, s)
		}
		data, err := json.Marshal(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
		if err != nil {
			am.err = err
			return am
		}
		f := filepath.Join(b.dir, fmt.Sprintf("load-%d.json", p))
		if err := os.WriteFile(f, data, 0o644); err != nil {
			am.err = err
			return am
		}
		files = append(files, f)
	}
	fmt.Fprintf(os.Stderr, "svcbench: agent memory: applying %d Services × %d endpoints (%d parallel podnet apply) …\n", n, eps, parts)
	t0 := time.Now()
	errs := make(chan error, parts)
	for _, f := range files {
		go func(f string) {
			_, err := b.podnet(ctx, 15*time.Minute, "apply", "-f", f)
			errs <- err
		}(f)
	}
	for range files {
		if err := <-errs; err != nil && am.err == nil {
			am.err = fmt.Errorf("apply: %v", firstLine(err.Error()))
		}
	}
	am.apply = time.Since(t0)
	if am.err != nil {
		return am
	}
	fmt.Fprintf(os.Stderr, "svcbench:   applied in %s; waiting for every agent to program them …\n", am.apply.Round(time.Second))
	deadline := time.Now().Add(15 * time.Minute)
	for _, node := range rec.Topology.Nodes() {
		for {
			got, err := countServiceIPs(ctx, node.NetNS)
			if err == nil && got >= base[node.Name]+n {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				am.err = fmt.Errorf("node %s programmed %d of %d Services in 15 min (%v)", node.Name, got-base[node.Name], n, err)
				return am
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	am.programmed = time.Since(t0)
	for i := range rec.Agents {
		rss, anon, _, _ := procMem(rec.Agents[i].PID())
		am.after, am.anon = append(am.after, rss), append(am.anon, anon)
	}
	am.server, _, _, _ = procMem(rec.Server.PID())
	return am
}

// countServiceIPs counts the elements of a node's service-ips map.
func countServiceIPs(ctx context.Context, ns string) (int, error) {
	out, err := inNS(ctx, ns, os.DevNull, "nft", "list", "map", "inet", "podnet", "service-ips")
	if err != nil {
		return 0, err
	}
	return bytes.Count(out, []byte(": goto ")), nil
}
