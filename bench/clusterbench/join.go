package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/cluster"
	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/overlay"
	"github.com/podnet/podnet/internal/store"
	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// joinResult is one node joining a running cluster and leaving it again.
// Times are from the agent's exec (join) or from the Node's deletion in
// the store (leave), as seen by this process.
type joinResult struct {
	cidr       netip.Prefix
	registered time.Duration // Node has its pod CIDR (watch event)
	usable     time.Duration // Node has everything a peer needs (CIDR, IP, and for vxlan the VTEP MAC)
	peers      time.Duration // the last peer's route to the new pod CIDR is in its kernel
	own        time.Duration // the new node routes to every peer
	leave      time.Duration // Node deleted → the last peer's route is gone
}

// propagation is the part of a join that is the cluster's: from the Node
// carrying everything peers need to the last peer's datapath having it.
func (j joinResult) propagation() time.Duration { return j.peers - j.usable }

var nodeKind, _ = api.KindOf(&corev1.Node{})

// joinLeave makes n nodes join the cluster one after the other: each is a
// namespace of ours on the cluster's switch running `podnet agent`, exactly
// as the cluster's own agents run (same flags, its own node name and
// address); it is timed until every peer routes to its pod CIDR, then
// stopped, its Node deleted, and timed until every peer's route is gone.
func (b *bench) joinLeave(ctx context.Context, cr *clusterRun, n int) error {
	cli, err := store.Connect(cr.rec.StoreConfig())
	if err != nil {
		return err
	}
	defer cli.Close()
	s := store.New(cli)
	for i := 0; i < n; i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		b.joinSeq++
		fmt.Fprintf(os.Stderr, "clusterbench: %s: node join %d/%d\n", cr.name, i+1, n)
		res, err := b.joinOnce(ctx, cr, s, b.joinSeq)
		if err != nil {
			return fmt.Errorf("cluster %s: join %d: %w", cr.name, i+1, err)
		}
		cr.joins = append(cr.joins, *res)
	}
	return nil
}

// routeEvent is a podnet route appearing or going in one namespace.
type routeEvent struct {
	ns  int // index into the watched namespaces
	dst netip.Prefix
	add bool
	at  time.Time
}

// watchRoutes subscribes to route changes in the named namespaces and
// sends podnet's (protocol overlay.RouteProtocol) to out until done closes.
func watchRoutes(nss []string, out chan<- routeEvent, done <-chan struct{}) error {
	for i, ns := range nss {
		h, err := vnetns.GetFromPath(netns.Path(ns))
		if err != nil {
			return fmt.Errorf("netns %s: %w", ns, err)
		}
		ch := make(chan netlink.RouteUpdate, 256)
		err = netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{
			Namespace:         &h,
			ReceiveBufferSize: 1 << 20,
			ErrorCallback: func(err error) {
				select {
				case <-done: // the socket was closed on purpose
				default:
					fmt.Fprintf(os.Stderr, "clusterbench: route watch in %s: %v\n", ns, err)
				}
			},
		})
		h.Close()
		if err != nil {
			return fmt.Errorf("netns %s: route subscribe: %w", ns, err)
		}
		go func(i int) {
			for u := range ch {
				at := time.Now()
				if u.Protocol != overlay.RouteProtocol || u.Dst == nil {
					continue
				}
				p, ok := prefixOf(u.Dst.IP, u.Dst.Mask)
				if !ok {
					continue
				}
				select {
				case out <- routeEvent{ns: i, dst: p, add: u.Type == unix.RTM_NEWROUTE, at: at}:
				case <-done:
					return
				}
			}
		}(i)
	}
	return nil
}

func (b *bench) joinOnce(ctx context.Context, cr *clusterRun, s *store.Store, seq int) (res *joinResult, err error) {
	t := &cr.rec.Topology
	sw := t.Switches[0]
	nodeName := fmt.Sprintf("%s-j%d", cr.name, seq)
	ns := fmt.Sprintf("%s%sj%d", Prefix, b.runID, seq)
	port := fmt.Sprintf("pnpj%d", seq)
	last := 100 + seq
	if last > 250 {
		return nil, fmt.Errorf("too many joins for the underlay /24")
	}
	a4 := sw.Subnet.Addr().As4()
	a4[3] = byte(last)
	ip := netip.AddrFrom4(a4)

	// The joining host: a namespace of ours with one cable to the switch,
	// made the way internal/cluster makes its hosts. Removing the
	// namespace removes both ends of the cable.
	if _, err := netns.Create(ns); err != nil {
		return nil, err
	}
	var agent *cluster.Proc
	defer func() {
		if agent != nil {
			agent.Kill(syscall.SIGKILL)
			_, _ = cluster.ProcessMatcher{NetNS: []string{netns.Path(ns)}}.KillAll(5 * time.Second)
		}
		if derr := netns.Delete(ns); derr != nil && err == nil {
			err = derr
		}
	}()
	for _, args := range [][]string{
		{"-n", ns, "link", "add", cluster.UplinkName, "type", "veth", "peer", "name", port, "netns", sw.NetNS},
		{"-n", sw.NetNS, "link", "set", port, "master", sw.Bridge, "up"},
		{"-n", ns, "addr", "add", netip.PrefixFrom(ip, sw.Subnet.Bits()).String(), "dev", cluster.UplinkName},
		{"-n", ns, "link", "set", cluster.UplinkName, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}

	// What peers exist now, and their pod CIDRs.
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	objs, rev, err := s.List(lctx, nodeKind, "")
	cancel()
	if err != nil {
		return nil, err
	}
	peerCIDR := map[netip.Prefix]bool{}
	for _, o := range objs {
		if p, err := netip.ParsePrefix(o.(*corev1.Node).Spec.PodCIDR); err == nil {
			peerCIDR[p] = true
		}
	}
	var peers []string
	for _, h := range t.Nodes() {
		peers = append(peers, h.NetNS)
	}
	if len(peerCIDR) != len(peers) {
		return nil, fmt.Errorf("store has %d nodes with a pod CIDR, the cluster %d", len(peerCIDR), len(peers))
	}

	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	done := make(chan struct{})
	defer close(done)
	routes := make(chan routeEvent, 1024)
	self := len(peers) // index of the joining node's namespace
	if err := watchRoutes(append(slices.Clone(peers), ns), routes, done); err != nil {
		return nil, err
	}
	nodes := s.Watch(wctx, nodeKind, "", rev)

	// The agent, as the cluster's own agents run, with this node's name,
	// address and directories.
	tmpl := cr.rec.Agents[0]
	nd := cr.rec.NodeDir(nodeName)
	if err := os.MkdirAll(nd, 0o755); err != nil {
		return nil, err
	}
	// Every value naming the template node (its name, namespace, address
	// or directory) is replaced by this node's, whatever the flag.
	tmplNode := t.Host(tmpl.Name)
	if tmplNode == nil {
		return nil, fmt.Errorf("agent %s: no such node in the topology", tmpl.Name)
	}
	oldDir := cr.rec.NodeDir(tmpl.Name)
	args := slices.Clone(tmpl.Args)
	for k := 1; k < len(args); k++ {
		switch a := args[k]; {
		case a == tmpl.Name:
			args[k] = nodeName
		case a == tmplNode.NetNS:
			args[k] = ns
		case a == tmplNode.IP().String():
			args[k] = ip.String()
		case a == oldDir || strings.HasPrefix(a, oldDir+"/"):
			args[k] = nd + strings.TrimPrefix(a, oldDir)
		}
	}
	agent = &cluster.Proc{Name: nodeName, NetNS: ns, Args: args, Log: filepath.Join(nd, "agent.log"), PIDFile: filepath.Join(nd, "agent.pid")}
	t0 := time.Now()
	if _, err := agent.Start(); err != nil {
		return nil, err
	}

	res = &joinResult{}
	var tReg, tUsable time.Time
	seen := make([]map[netip.Prefix]time.Time, len(peers)+1) // first add per namespace and destination
	for i := range seen {
		seen[i] = map[netip.Prefix]time.Time{}
	}
	complete := func() bool {
		if !res.cidr.IsValid() || tUsable.IsZero() {
			return false
		}
		var lastPeer time.Time
		for i := range peers {
			at, ok := seen[i][res.cidr]
			if !ok {
				return false
			}
			if at.After(lastPeer) {
				lastPeer = at
			}
		}
		var lastOwn time.Time
		for p := range peerCIDR {
			at, ok := seen[self][p]
			if !ok {
				return false
			}
			if at.After(lastOwn) {
				lastOwn = at
			}
		}
		res.registered, res.usable = tReg.Sub(t0), tUsable.Sub(t0)
		res.peers, res.own = lastPeer.Sub(t0), lastOwn.Sub(t0)
		return true
	}
	timeout := time.After(30 * time.Second)
	for !complete() {
		select {
		case ev := <-routes:
			if ev.add {
				if _, ok := seen[ev.ns][ev.dst]; !ok {
					seen[ev.ns][ev.dst] = ev.at
				}
			}
		case ev, ok := <-nodes:
			if !ok {
				return nil, errors.New("node watch ended")
			}
			if ev.Err != nil {
				return nil, ev.Err
			}
			at := time.Now()
			n := ev.Object.(*corev1.Node)
			if n.Name != nodeName || ev.Type == store.Deleted {
				continue
			}
			p, err := netip.ParsePrefix(n.Spec.PodCIDR)
			if err != nil {
				continue
			}
			if tReg.IsZero() {
				tReg, res.cidr = at, p
			}
			if tUsable.IsZero() && api.NodeInternalIP(n) != "" && (cr.backend != "vxlan" || n.Annotations[api.AnnotationBackendData] != "") {
				tUsable = at
			}
		case <-timeout:
			var missing []string
			for i := range peers {
				if _, ok := seen[i][res.cidr]; !ok {
					missing = append(missing, peers[i])
				}
			}
			return nil, fmt.Errorf("node %s (pod CIDR %v) not routed after 30s; peers without the route: %v; agent log: %s", nodeName, res.cidr, missing, cluster.LogTail(agent.Log))
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}

	// Leave: stop the agent (it revokes its lease; peers keep the route
	// of a NotReady node), then delete its Node and time until no peer
	// routes to its CIDR.
	agent.Kill(syscall.SIGTERM)
	for k := 0; agent.PID() != 0; k++ {
		if k == 200 {
			return nil, fmt.Errorf("agent %s still running 10s after SIGTERM", nodeName)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for len(routes) > 0 { // events of the join still queued
		<-routes
	}
	t1 := time.Now()
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = s.Delete(dctx, nodeKind, "", nodeName, store.DeleteOptions{})
	dcancel()
	if err != nil {
		return nil, fmt.Errorf("delete node %s: %w", nodeName, err)
	}
	gone := map[int]time.Time{}
	timeout = time.After(30 * time.Second)
	for len(gone) < len(peers) {
		select {
		case ev := <-routes:
			if !ev.add && ev.dst == res.cidr && ev.ns != self {
				if _, ok := gone[ev.ns]; !ok {
					gone[ev.ns] = ev.at
				}
			}
		case <-nodes:
		case <-timeout:
			return nil, fmt.Errorf("node %s deleted, but %d of %d peers still route to %v after 30s", nodeName, len(peers)-len(gone), len(peers), res.cidr)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	for _, at := range gone {
		if d := at.Sub(t1); d > res.leave {
			res.leave = d
		}
	}
	return res, nil
}

func prefixOf(ip net.IP, mask net.IPMask) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}
