package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/podnet/podnet/internal/cluster"
	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/overlay"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// clusterRun is one cluster of the run and what was measured on it.
type clusterRun struct {
	name    string
	backend string
	nodes   int
	rec     *cluster.Record
	create  time.Duration // `podnet cluster create` exec → exit
	mesh    time.Duration // exec → every node routes to every peer
	del     time.Duration // `podnet cluster delete` exec → exit
	deleted bool
	joins   []joinResult
	mem     *memory
}

func (cr *clusterRun) label() string { return fmt.Sprintf("%d nodes, %s", cr.nodes, cr.backend) }

// podnet runs `podnet ARGS…` from the caller's namespace (the CLI dials
// the cluster's store through the control plane's namespace by itself)
// with the run's context file, and returns its output and wall time.
func (b *bench) podnet(ctx context.Context, timeout time.Duration, args ...string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(b.o.PodnetBin, "podnet"), args...)
	cmd.Env = envFor(b.dir)
	cmd.Stdout, cmd.Stderr = &out, &out
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		return out.String(), d, fmt.Errorf("podnet %s: %w\n%s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), d, nil
}

// create times `podnet cluster create`, then waits until every node has a
// route to every other node's pod CIDR. The cluster's deletion is
// registered before it is created, so a failure or a signal midway still
// removes it.
func (b *bench) create(ctx context.Context, name string, nodes int, backend string) (*clusterRun, error) {
	cr := &clusterRun{name: name, backend: backend, nodes: nodes}
	b.c.Add("cluster "+name, func() error {
		if cr.deleted {
			return nil
		}
		return b.delete(cr)
	})
	fmt.Fprintf(os.Stderr, "clusterbench: podnet cluster create --name %s --nodes %d --backend %s\n", name, nodes, backend)
	cmd := exec.CommandContext(ctx, filepath.Join(b.o.PodnetBin, "podnet"), "cluster", "create",
		"--name", name, "--nodes", fmt.Sprint(nodes), "--backend", backend)
	cmd.Env = envFor(b.dir)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var out bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // progress lines as they come, until the "Use it" hints
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		quiet := false
		for sc.Scan() {
			out.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "Use it") {
				quiet = true
			}
			if !quiet && strings.TrimSpace(sc.Text()) != "" {
				fmt.Fprintf(os.Stderr, "  %s\n", sc.Text())
			}
		}
	}()
	t0 := time.Now()
	err := cmd.Run()
	cr.create = time.Since(t0)
	pw.Close()
	wg.Wait()
	if err != nil {
		return nil, fmt.Errorf("podnet cluster create --name %s: %w\n%s", name, err, out.String())
	}
	if cr.rec, err = cluster.LoadRecord(filepath.Join(b.dir, "clusters", name)); err != nil {
		return nil, err
	}
	if err := waitMesh(ctx, cr.rec, 30*time.Second); err != nil {
		return nil, fmt.Errorf("cluster %s: %w", name, err)
	}
	cr.mesh = time.Since(t0)
	return cr, nil
}

// delete times `podnet cluster delete` and checks that the cluster's
// namespaces are gone.
func (b *bench) delete(cr *clusterRun) error {
	fmt.Fprintf(os.Stderr, "clusterbench: podnet cluster delete --name %s\n", cr.name)
	// Not the run's context: deletion must happen after a SIGINT too.
	_, d, err := b.podnet(context.Background(), 2*time.Minute, "cluster", "delete", "--name", cr.name)
	cr.deleted = true
	cr.del = d
	if err != nil {
		return err
	}
	var left []string
	ents, _ := os.ReadDir(netns.Dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), cluster.NetNSPrefix(cr.name)) {
			left = append(left, e.Name())
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("cluster %s: namespaces left after delete: %s", cr.name, strings.Join(left, ", "))
	}
	return nil
}

// nsHandle is a netlink handle inside a named namespace.
type nsHandle struct {
	name string
	h    *netlink.Handle
}

func openHandle(ns string) (*nsHandle, error) {
	n, err := vnetns.GetFromPath(netns.Path(ns))
	if err != nil {
		return nil, fmt.Errorf("netns %s: %w", ns, err)
	}
	defer n.Close()
	h, err := netlink.NewHandleAt(n)
	if err != nil {
		return nil, fmt.Errorf("netns %s: netlink: %w", ns, err)
	}
	return &nsHandle{name: ns, h: h}, nil
}

func (n *nsHandle) close() { n.h.Close() }

// podnetRoutes lists the destinations of podnet's routes (protocol
// overlay.RouteProtocol) in the namespace's main table.
func (n *nsHandle) podnetRoutes() ([]netip.Prefix, error) {
	rs, err := n.h.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Protocol: overlay.RouteProtocol, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("netns %s: routes: %w", n.name, err)
	}
	var out []netip.Prefix
	for _, r := range rs {
		if r.Dst == nil {
			continue
		}
		if p, ok := prefixOf(r.Dst.IP, r.Dst.Mask); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// waitMesh polls every node's routes until each has one podnet route per
// other node inside the cluster CIDR.
func waitMesh(ctx context.Context, r *cluster.Record, timeout time.Duration) error {
	cidr, err := netip.ParsePrefix(r.Topology.Spec.ClusterCIDR)
	if err != nil {
		return fmt.Errorf("cluster CIDR %q: %w", r.Topology.Spec.ClusterCIDR, err)
	}
	nodes := r.Topology.Nodes()
	var hs []*nsHandle
	defer func() {
		for _, h := range hs {
			h.close()
		}
	}()
	for _, n := range nodes {
		h, err := openHandle(n.NetNS)
		if err != nil {
			return err
		}
		hs = append(hs, h)
	}
	deadline := time.Now().Add(timeout)
	done := make([]bool, len(hs))
	for {
		left := 0
		var missing string
		for i, h := range hs {
			if done[i] {
				continue
			}
			rs, err := h.podnetRoutes()
			if err != nil {
				return err
			}
			in := 0
			for _, p := range rs {
				if cidr.Overlaps(p) {
					in++
				}
			}
			if in >= len(nodes)-1 {
				done[i] = true
				continue
			}
			left++
			missing = fmt.Sprintf("%s has %d of %d peer routes", nodes[i].Name, in, len(nodes)-1)
		}
		if left == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("route mesh incomplete after %s: %d nodes missing routes, e.g. %s", timeout, left, missing)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}
