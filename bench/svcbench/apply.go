package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
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
	all     []time.Duration // apply exec → the last node's first successful connect
	first   []time.Duration // … → the first node's
	cli     []time.Duration // the `podnet apply` exec alone
	routeOK string          // from a node itself: "" or why it failed
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
	rounds := 20
	for i := 1; i <= rounds; i++ {
		if ctx.Err() != nil {
			ar.err = ctx.Err()
			return ar
		}
		ip := netip.AddrFrom4([4]byte{10, 96, 200, byte(i)})
		all, first, cli, err := b.applyOnce(ctx, self, pods, i, ip)
		if err != nil {
			ar.err = fmt.Errorf("service %d: %w", i, err)
			return ar
		}
		ar.all, ar.first, ar.cli = append(ar.all, all), append(ar.first, first), append(ar.cli, cli)
	}
	fmt.Fprintf(os.Stderr, "svcbench:   %d Services: apply → every node p50 %s, max %s\n", rounds,
		benchutil.Median(ar.all).Round(time.Millisecond), benchutil.Quantile(ar.all, 1).Round(time.Millisecond))
	// From a node itself (host network), through the first Service.
	ar.routeOK = b.fromNode(ctx, netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 96, 200, 1}), 80))
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

// applyOnce starts a probe in each pod, waits until all of them poll,
// applies Service i (clusterIP ip, selector app=web, 80 → 8080) and waits
// for every probe's first successful connect.
func (b *bench) applyOnce(ctx context.Context, self string, pods map[string]string, i int, ip netip.Addr) (all, first, cli time.Duration, err error) {
	manifest := filepath.Join(b.dir, fmt.Sprintf("svc-%d.yaml", i))
	y := fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata:\n  name: pnb-%d\nspec:\n  clusterIP: %s\n  selector:\n    app: web\n  ports:\n  - port: 80\n    targetPort: 8080\n", i, ip)
	if err := os.WriteFile(manifest, []byte(y), 0o644); err != nil {
		return 0, 0, 0, err
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	type probe struct {
		node string
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
	nodes := make([]string, 0, len(pods))
	for n := range pods {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for _, n := range nodes {
		cmd := exec.CommandContext(pctx, filepath.Join(b.o.PodnetBin, "podnet"), "exec", pods[n], "--",
			self, "probe", "-addr", netip.AddrPortFrom(ip, 80).String(), "-timeout", "20s")
		cmd.Env = b.env()
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return 0, 0, 0, err
		}
		errb := &bytes.Buffer{}
		cmd.Stderr = errb
		if err := cmd.Start(); err != nil {
			return 0, 0, 0, err
		}
		probes = append(probes, &probe{node: n, cmd: cmd, sc: bufio.NewScanner(stdout), errb: errb})
	}
	for _, p := range probes {
		if !p.sc.Scan() || p.sc.Text() != "ready" {
			return 0, 0, 0, fmt.Errorf("probe in %s (node %s) did not start: %q %s", pods[p.node], p.node, p.sc.Text(), strings.TrimSpace(p.errb.String()))
		}
	}
	t0 := time.Now()
	if _, err := b.podnet(ctx, 30*time.Second, "apply", "-f", manifest); err != nil {
		return 0, 0, 0, err
	}
	cli = time.Since(t0)
	for _, p := range probes {
		if !p.sc.Scan() {
			_ = p.cmd.Wait()
			return 0, 0, 0, fmt.Errorf("from a pod on %s: no connect through %s:80 within 20 s: %s", p.node, ip, strings.TrimSpace(p.errb.String()))
		}
		f := strings.Fields(p.sc.Text())
		if len(f) != 2 || f[0] != "ok" {
			return 0, 0, 0, fmt.Errorf("probe on %s said %q", p.node, p.sc.Text())
		}
		ns, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, 0, 0, err
		}
		d := time.Unix(0, ns).Sub(t0)
		if d > all {
			all = d
		}
		if first == 0 || d < first {
			first = d
		}
	}
	return all, first, cli, nil
}

// fromNode tries one connect from the first node's own namespace; "" if
// it works, else the error.
func (b *bench) fromNode(ctx context.Context, dst netip.AddrPort) string {
	ents, _ := os.ReadDir(netns.Dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), cluster.NetNSPrefix(b.clusterName())) && strings.HasSuffix(e.Name(), "-n1") {
			var msg string
			err := netns.Do(netns.Path(e.Name()), func() error {
				_, err := connect(dst, false)
				return err
			})
			if err != nil {
				msg = err.Error()
			}
			return msg
		}
	}
	return "node n1's namespace not found"
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
