package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/podnet/podnet/bench/internal/benchutil"
	"github.com/podnet/podnet/internal/cluster"
	"github.com/podnet/podnet/internal/netns"
)

// Prefix starts the name of everything this benchmark names: its
// namespaces pnb<run>s<seq>{n,c,s} and its temp dir /tmp/pnb-svc-….
const Prefix = benchutil.Prefix

// ourNS matches this benchmark's namespaces: pnb, the run ID, s, the
// topology's sequence number, then n (node), c (client) or s (server).
var ourNS = regexp.MustCompile(`^` + Prefix + `[0-9a-f]{6}s[0-9]+[ncs]$`)

// topo is one "node" namespace with a client and a server namespace
// routed through it, each on its own veth:
//
//	client (10.128.1.2/24) ── pnbc │ node │ pnbs ── server (10.128.2.2-11/24)
//	                                  lo: 10.250.0.1/32 (the node IP)
//
// The node namespace has no default route (the kube-proxy driver refuses
// one that has); the proxies' rules go there. The client and server
// default-route to the node only. Nothing leaves these namespaces.
type topo struct {
	node, client, server string // namespace names
	ln                   net.Listener
	procs                []*exec.Cmd
}

// newTopo creates topology seq of the run and registers its removal.
func (b *bench) newTopo(seq int) (*topo, error) {
	base := fmt.Sprintf("%s%ss%d", Prefix, b.runID, seq)
	t := &topo{node: base + "n", client: base + "c", server: base + "s"}
	for _, ns := range []string{t.node, t.client, t.server} {
		if _, err := netns.Create(ns); err != nil {
			t.destroy()
			return nil, err
		}
	}
	b.c.Add("topology "+base, t.destroy)
	var cmds [][]string
	cmds = append(cmds,
		[]string{"-n", t.node, "link", "add", "pnbc", "type", "veth", "peer", "name", "eth0", "netns", t.client},
		[]string{"-n", t.node, "link", "add", "pnbs", "type", "veth", "peer", "name", "eth0", "netns", t.server},
		[]string{"-n", t.node, "addr", "add", clientGW.String() + "/24", "dev", "pnbc"},
		[]string{"-n", t.node, "addr", "add", serverGW.String() + "/24", "dev", "pnbs"},
		[]string{"-n", t.node, "addr", "add", nodeIP.String() + "/32", "dev", "lo"},
		[]string{"-n", t.node, "link", "set", "pnbc", "up"},
		[]string{"-n", t.node, "link", "set", "pnbs", "up"},
		[]string{"-n", t.client, "addr", "add", clientIP.String() + "/24", "dev", "eth0"},
		[]string{"-n", t.client, "link", "set", "eth0", "up"},
		[]string{"-n", t.client, "route", "add", "default", "via", clientGW.String()},
	)
	for j := 0; j < serverIPs; j++ {
		cmds = append(cmds, []string{"-n", t.server, "addr", "add", addAddr(serverIP, j).String() + "/24", "dev", "eth0"})
	}
	cmds = append(cmds,
		[]string{"-n", t.server, "link", "set", "eth0", "up"},
		[]string{"-n", t.server, "route", "add", "default", "via", serverGW.String()},
	)
	for _, c := range cmds {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(c, " "), err, strings.TrimSpace(string(out)))
		}
	}
	if err := writeSysctl(t.node, "net/ipv4/ip_forward", "1"); err != nil {
		return nil, err
	}
	// The echo server: greets with "pnb\n" and closes.
	err := netns.Do(netns.Path(t.server), func() error {
		var err error
		t.ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", targetPort))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("server listen: %w", err)
	}
	go func(ln net.Listener) {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("pnb\n"))
			_ = c.Close()
		}
	}(t.ln)
	return t, nil
}

func writeSysctl(ns, key, val string) error {
	return netns.Do(netns.Path(ns), func() error {
		return os.WriteFile(filepath.Join("/proc/sys", key), []byte(val), 0o644)
	})
}

// start runs a long-lived process in namespace ns (killed by destroy).
func (t *topo) start(ns string, logTo io.Writer, name string, args ...string) (*exec.Cmd, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.Stdout, cmd.Stderr = logTo, logTo
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	t.procs = append(t.procs, cmd)
	return cmd, nil
}

// destroy stops the server and every process in the namespaces, then
// removes the namespaces (with them their links, routes and rules).
func (t *topo) destroy() error {
	if t.ln != nil {
		_ = t.ln.Close()
		t.ln = nil
	}
	for _, p := range t.procs {
		if p.Process != nil {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	}
	t.procs = nil
	var paths []string
	for _, ns := range []string{t.node, t.client, t.server} {
		paths = append(paths, netns.Path(ns))
	}
	_, kerr := cluster.ProcessMatcher{NetNS: paths}.KillAll(5 * time.Second)
	var errs []string
	if kerr != nil {
		errs = append(errs, kerr.Error())
	}
	for _, ns := range []string{t.node, t.client, t.server} {
		if err := netns.Delete(ns); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// inNS runs a command in namespace ns and returns its stdout; stderr goes
// to errTo (and, on failure, its tail into the error).
func inNS(ctx context.Context, ns string, errTo string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	ef, err := os.Create(errTo)
	if err != nil {
		return nil, err
	}
	defer ef.Close()
	cmd.Stderr = ef
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w%s", filepath.Base(name), strings.Join(args, " "), err, tail(errTo, 15))
	}
	return out, nil
}

// tail is the last n lines of a file, indented, for an error message.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\n    " + strings.Join(lines, "\n    ") + "\n  (whole log: " + path + ")"
}

// sweepStale removes what a killed earlier run left: its namespaces (and
// the processes in them) and temp dirs. Only call it holding the run lock.
func sweepStale(tmpBase, podnet string) {
	sweepClusters(tmpBase, podnet)
	ents, _ := os.ReadDir(netns.Dir)
	for _, e := range ents {
		if !ourNS.MatchString(e.Name()) {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: removing namespace %s left by an earlier run\n", e.Name())
		if _, err := (cluster.ProcessMatcher{NetNS: []string{netns.Path(e.Name())}}).KillAll(5 * time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		}
		if err := netns.Delete(e.Name()); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(tmpBase, Prefix+"-svc-*"))
	for _, d := range dirs {
		fmt.Fprintf(os.Stderr, "bench: removing %s left by an earlier run\n", d)
		_ = os.RemoveAll(d)
	}
}
