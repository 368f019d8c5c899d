package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/podnet/podnet/internal/agent"
	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/store"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation"
)

// NodeOptions tune AddNode and RemoveNode.
type NodeOptions struct {
	// Name is the new node's name (AddNode; default <cluster>-n<i>).
	Name string
	// Progress receives one line per step.
	Progress io.Writer
	Logger   *slog.Logger
	// Timeout bounds the whole operation (default 2 minutes); RemoveNode
	// gives the node's pods half of it to stop gracefully.
	Timeout time.Duration
	Kernel  Kernel
}

func (o *NodeOptions) defaults() {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Kernel == nil {
		o.Kernel = HostKernel{}
	}
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
}

// lockRecord serialises changes to a cluster's record (add-node and
// remove-node running at once).
func lockRecord(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cluster lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("cluster lock: %w", err)
	}
	return func() { f.Close() }, nil
}

var nodeIndexRE = regexp.MustCompile(`n([0-9]+)$`)

// nodeIndex is the index i of a node host (its namespace <prefix>n<i>).
func nodeIndex(h Host) int {
	m := nodeIndexRE.FindStringSubmatch(h.NetNS)
	if m == nil {
		return 0
	}
	i, _ := strconv.Atoi(m[1])
	return i
}

// checkNodeName: a node name is a DNS-1123 subdomain, not one of the
// cluster's hosts or roles (cluster exec resolves those first).
func checkNodeName(t *Topology, name string) error {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("--name %q: %s", name, strings.Join(errs, "; "))
	}
	if _, ok := t.Lookup(name); ok {
		return fmt.Errorf("--name %q: the cluster already has a host of that name", name)
	}
	switch name {
	case RoleControlPlane, RoleOutside, RoleRouter, "cp":
		return fmt.Errorf("--name %q: a role's name, reserved for cluster exec", name)
	}
	if regexp.MustCompile(`^(sw2?|n[0-9]+|etcd[0-9]+)$`).MatchString(name) {
		return fmt.Errorf("--name %q: looks like a host's short name, reserved for cluster exec", name)
	}
	return nil
}

// AddNode adds a node to the running cluster in dir, as Create makes each
// of its nodes: the next index i (after the highest in use), namespace
// <prefix>n<i> cabled to its switch at .10+i, and its agent, started and
// waited for until the Node is Ready. The record is saved before any kernel
// work; on failure everything made is removed again. It returns the
// updated record and the new host.
func AddNode(ctx context.Context, dir string, o NodeOptions) (r *Record, h Host, err error) {
	o.defaults()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	unlock, err := lockRecord(dir)
	if err != nil {
		return nil, Host{}, err
	}
	defer unlock()
	if r, err = LoadRecord(dir); err != nil {
		return nil, Host{}, err
	}
	t := &r.Topology
	next := 0
	for _, n := range t.Nodes() {
		next = max(next, nodeIndex(n))
	}
	next++
	if next > MaxNodes {
		return r, Host{}, fmt.Errorf("node index %d: at most %d", next, MaxNodes)
	}
	name := o.Name
	if name == "" {
		name = NodeName(t.Spec.Name, next)
	}
	if err := checkNodeName(t, name); err != nil {
		return r, Host{}, err
	}
	h = nodeHost(t.Spec, next, name)
	if lb, err := api.ParseAddrRange(t.Spec.LBRange); err == nil && h.Ifaces[0].Addr.Addr().Is4() &&
		!h.IP().Less(lb.First) && !lb.Last.Less(h.IP()) {
		return r, Host{}, fmt.Errorf("node %s would get %s, inside the load-balancer range %s", name, h.IP(), t.Spec.LBRange)
	}
	if netns.Exists(h.NetNS) {
		return r, Host{}, fmt.Errorf("namespace %s already exists (left by an earlier node?); remove it first", h.NetNS)
	}
	cli, err := store.Connect(r.StoreConfig())
	if err != nil {
		return r, Host{}, err
	}
	defer cli.Close()
	s := store.New(cli)
	if err := storeUp(ctx, s); err != nil {
		return r, Host{}, err
	}
	if _, err := s.Get(ctx, nodeKindOf(), "", name); err == nil {
		return r, Host{}, fmt.Errorf("a Node %q already exists in the store", name)
	} else if !apierrors.IsNotFound(err) {
		return r, Host{}, fmt.Errorf("store: %w", err)
	}

	start := time.Now()
	step := func(format string, args ...any) {
		fmt.Fprintf(o.Progress, " ✓ %-62s %5.1fs\n", fmt.Sprintf(format, args...), time.Since(start).Seconds())
	}
	fmt.Fprintf(o.Progress, "Adding node %s to cluster %q\n", name, t.Spec.Name)
	a := r.agentProc(h)
	t.Hosts = append(t.Hosts, h)
	r.Agents = append(r.Agents, a)
	t.Spec.Nodes = len(t.Nodes())
	if err := os.MkdirAll(r.NodeDir(name), 0o755); err != nil {
		return r, h, err
	}
	if err := r.save(); err != nil {
		return r, h, err
	}
	defer func() {
		if err != nil {
			fmt.Fprintf(o.Progress, " ✗ %v\n   removing what was made...\n", err)
			if rerr := removeNode(context.Background(), r, s, h, o, false); rerr != nil {
				err = errors.Join(err, fmt.Errorf("clean-up: %w", rerr))
			}
		}
	}()
	if err := o.Kernel.CreateNS(h.NetNS); err != nil {
		return r, h, err
	}
	if err := buildHost(o.Kernel, t, &h); err != nil {
		return r, h, fmt.Errorf("host %s: %w", name, err)
	}
	step("namespace %s, %s on %s", h.NetNS, h.Ifaces[0].Addr, h.Ifaces[0].Switch)
	if _, err := r.Agent(name).Start(); err != nil {
		return r, h, err
	}
	if err := startedNodesReady(ctx, r, s, []Host{h}, step); err != nil {
		return r, h, err
	}
	return r, h, nil
}

func nodeKindOf() *api.Kind { k, _ := api.KindOf(&corev1.Node{}); return k }

// RemoveNode takes a node out of the running cluster in dir: it cordons
// the Node, deletes its pods gracefully through its agent (forcing those
// still there after half the timeout), stops the agent, deletes the Node
// and its lease, kills whatever still runs in the node's or its pods'
// namespaces, removes those namespaces, the node's files and its entry
// in the record. The node is a node name or a short name (n2).
func RemoveNode(ctx context.Context, dir, node string, o NodeOptions) (*Record, error) {
	o.defaults()
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	unlock, err := lockRecord(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	r, err := LoadRecord(dir)
	if err != nil {
		return nil, err
	}
	t := &r.Topology
	ns, _ := t.Lookup(node)
	var h *Host
	for i := range t.Hosts {
		if t.Hosts[i].Role == RoleNode && (t.Hosts[i].Name == node || t.Hosts[i].NetNS == ns) {
			h = &t.Hosts[i]
		}
	}
	if h == nil {
		var names []string
		for _, n := range t.Nodes() {
			names = append(names, n.Name)
		}
		return r, fmt.Errorf("no node %q (nodes: %s)", node, strings.Join(names, ", "))
	}
	cli, err := store.Connect(r.StoreConfig())
	if err != nil {
		return r, err
	}
	defer cli.Close()
	s := store.New(cli)
	if err := storeUp(ctx, s); err != nil {
		return r, err
	}
	fmt.Fprintf(o.Progress, "Removing node %s from cluster %q\n", h.Name, t.Spec.Name)
	return r, removeNode(ctx, r, s, *h, o, true)
}

// storeUp fails within 10 s if the cluster's store does not answer.
func storeUp(ctx context.Context, s *store.Store) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, _, err := s.ClusterConfig(ctx); err != nil {
		return fmt.Errorf("the cluster's store does not answer (is its server running? podnet cluster list): %w", err)
	}
	return nil
}

// removeNode undoes AddNode for host h; drain asks the agent to stop the
// node's pods first.
func removeNode(ctx context.Context, r *Record, s *store.Store, h Host, o NodeOptions, drain bool) error {
	start := time.Now()
	step := func(format string, args ...any) {
		fmt.Fprintf(o.Progress, " ✓ %-62s %5.1fs\n", fmt.Sprintf(format, args...), time.Since(start).Seconds())
	}
	var errs []error
	nk := nodeKindOf()
	pk, _ := api.KindOf(&corev1.Pod{})
	a := r.Agent(h.Name)
	if drain && a != nil && a.PID() != 0 {
		if _, err := s.Mutate(ctx, nk, "", h.Name, func(o api.Object) error {
			o.(*corev1.Node).Spec.Unschedulable = true
			return nil
		}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("cordon %s: %w", h.Name, err)
		}
		n, forced, err := drainNode(ctx, s, pk, h.Name, o.Timeout/2)
		if err != nil {
			return fmt.Errorf("drain %s: %w", h.Name, err)
		}
		if forced > 0 {
			step("cordoned; %d pod(s) deleted, %d of them forced after %s", n, forced, o.Timeout/2)
		} else {
			step("cordoned; %d pod(s) deleted by the agent", n)
		}
	}
	if a != nil {
		// SIGTERM: the agent revokes its lease, so the node turns NotReady
		// at once.
		if a.Kill(syscall.SIGTERM) {
			deadline := time.Now().Add(10 * time.Second)
			for a.PID() != 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			a.Kill(syscall.SIGKILL)
		}
		step("agent stopped")
	}
	if _, err := s.Client().Delete(ctx, agent.NodeLeaseKey(h.Name)); err != nil {
		errs = append(errs, fmt.Errorf("node lease: %w", err))
	}
	if _, err := s.Delete(ctx, nk, "", h.Name, store.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, fmt.Errorf("delete Node %s: %w", h.Name, err))
	}
	// Pods the store still binds to the node have nobody to stop them.
	if objs, _, err := s.List(ctx, pk, ""); err == nil {
		for _, obj := range objs {
			if p := obj.(*corev1.Pod); p.Spec.NodeName == h.Name {
				if _, err := s.Delete(ctx, pk, p.Namespace, p.Name, store.DeleteOptions{Force: true}); err != nil && !apierrors.IsNotFound(err) {
					errs = append(errs, err)
				}
			}
		}
	}
	step("Node %s deleted", h.Name)
	// Whatever still runs of the node: shims and containers of pods the
	// agent did not stop, host-network pods, exec'd commands.
	stateDir := filepath.Join(r.AgentStateDir(), h.Name)
	pods := podNamespaces(r.AgentStateDir(), h.Name)
	var paths []string
	for _, ns := range append([]string{h.NetNS}, pods...) {
		if netns.Exists(ns) {
			paths = append(paths, netns.Path(ns))
		}
	}
	for _, m := range []ProcessMatcher{{NetNS: paths, Dir: stateDir}, {Dir: r.NodeDir(h.Name)}} {
		if _, err := m.KillAll(10 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ns := range pods {
		if err := netns.Delete(ns); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(filepath.Join("/etc/netns", ns)); err != nil {
			errs = append(errs, err)
		}
	}
	if err := DeleteNamespaces(o.Kernel, []string{h.NetNS}); err != nil {
		errs = append(errs, err)
	}
	for _, d := range []string{stateDir, r.NodeDir(h.Name)} {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	t := &r.Topology
	t.Hosts = slices.DeleteFunc(t.Hosts, func(x Host) bool { return x.Role == RoleNode && x.Name == h.Name })
	r.Agents = slices.DeleteFunc(r.Agents, func(p Proc) bool { return p.Name == h.Name })
	t.Spec.Nodes = len(t.Nodes())
	if err := r.save(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	step("namespace %s and the node's files removed", h.NetNS)
	return nil
}

// drainNode deletes every pod bound to node gracefully and waits until the
// agent has removed them; pods left after timeout are deleted by force.
// It returns how many pods there were and how many were forced.
func drainNode(ctx context.Context, s *store.Store, pk *api.Kind, node string, timeout time.Duration) (n, forced int, err error) {
	bound := func() ([]*corev1.Pod, error) {
		objs, _, err := s.List(ctx, pk, "")
		if err != nil {
			return nil, err
		}
		var out []*corev1.Pod
		for _, o := range objs {
			if p := o.(*corev1.Pod); p.Spec.NodeName == node {
				out = append(out, p)
			}
		}
		return out, nil
	}
	pods, err := bound()
	if err != nil {
		return 0, 0, err
	}
	for _, p := range pods {
		if _, err := s.Delete(ctx, pk, p.Namespace, p.Name, store.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return len(pods), 0, fmt.Errorf("pod %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		left, err := bound()
		if err != nil {
			return len(pods), 0, err
		}
		if len(left) == 0 {
			return len(pods), 0, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			for _, p := range left {
				s.Delete(ctx, pk, p.Namespace, p.Name, store.DeleteOptions{Force: true})
			}
			return len(pods), len(left), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}
