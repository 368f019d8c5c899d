package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/podnet/podnet/internal/api"
	pdns "github.com/podnet/podnet/internal/dns"
	"github.com/podnet/podnet/internal/dns/corefile"
	"github.com/podnet/podnet/internal/informer"
	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/store"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
)

// Node-local cluster DNS, as NodeLocal DNSCache: every node answers the
// kube-dns address itself. The agent
//   - puts the address on a dummy interface (NodeDNSLink), so it is local;
//   - adds the table `inet podnet-dns` whose raw-priority chains mark DNS
//     to and from that address notrack, so it takes no conntrack entry and
//     no NAT (there is no DNAT race, and no 5 s timeouts);
//   - renders the ConfigMap kube-system/coredns's Corefile to
//     <state>/dns/Corefile (with `bind ADDRESS` in each server block and
//     the forward upstream replaced, see NodeDNSConfig.Upstream), after
//     checking it loads; a Corefile that does not load is not written, the
//     error is logged and set on the ConfigMap as the annotation
//     dns.podnet.io/error-<node>, and the previous one keeps serving;
//   - runs `podnet dns -conf <state>/dns/Corefile` detached (a session of
//     its own, see detached), so it outlives the agent, and adopts it
//     through its pid file on restart; after a rewrite it sends SIGUSR1 (a
//     reload).

// NodeDNSLink is the dummy interface holding the cluster DNS address.
const NodeDNSLink = "podnet-dns"

// NodeDNSTable is the nftables table of the notrack rules.
const NodeDNSTable = "podnet-dns"

// NodeDNSConfig configures the node's DNS server.
type NodeDNSConfig struct {
	NodeName string
	// Binary is the podnet binary.
	Binary string
	// Dir holds the Corefile, the pid file and the server's log.
	Dir string
	// Address is the cluster DNS address (kube-dns's cluster IP).
	Address string
	// Upstream replaces /etc/resolv.conf in the Corefile's forward: a
	// resolv.conf for the node's DNS server. "none" removes forward
	// directives: names outside the cluster get SERVFAIL at once (a local
	// cluster without an outside DNS server must never query the
	// machine's own resolver). "" keeps the Corefile as written.
	Upstream string
	// Env is added to the server's environment (the store's endpoints for
	// the kubernetes plugin).
	Env []string
	// Source feeds the ConfigMap informer; Store annotates errors.
	Source informer.Source
	Store  *store.Store
	Logger *slog.Logger
	// NetNS, when set, is the named network namespace the address, rules
	// and server go in; empty means the agent's own (a node agent runs in
	// its node's namespace already).
	NetNS string
}

// NodeDNS is the runner.
type NodeDNS struct {
	cfg     NodeDNSConfig
	log     *slog.Logger
	server  *detached
	lastErr string
}

// NewNodeDNS returns the node DNS runner.
func NewNodeDNS(cfg NodeDNSConfig) *NodeDNS {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Address == "" {
		cfg.Address = api.DNSServiceIP
	}
	n := &NodeDNS{cfg: cfg, log: cfg.Logger.With("component", "node-dns")}
	n.server = &detached{
		name:  "node DNS server",
		args:  []string{cfg.Binary, "dns", "-conf", n.corefilePath(), "-pidfile", n.pidPath(), "-quiet"},
		ident: 2, pidFile: n.pidPath(), logFile: filepath.Join(cfg.Dir, "dns.log"),
		netns: cfg.NetNS, env: cfg.Env, log: n.log,
	}
	return n
}

func (n *NodeDNS) corefilePath() string { return filepath.Join(n.cfg.Dir, "Corefile") }
func (n *NodeDNS) pidPath() string      { return filepath.Join(n.cfg.Dir, "dns.pid") }

// Run sets up the address and rules, then keeps the server running with
// the ConfigMap's Corefile until ctx ends; the server is left running.
func (n *NodeDNS) Run(ctx context.Context) error {
	if err := os.MkdirAll(n.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("node dns: %w", err)
	}
	for {
		err := n.inNS(func() error {
			if err := EnsureNodeDNSAddress(n.cfg.Address); err != nil {
				return err
			}
			return EnsureNodeDNSRules(ctx, n.cfg.Address)
		})
		if err == nil {
			break
		}
		n.log.Error("cannot set up the node DNS address; retrying in 5s", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
	changed := make(chan struct{}, 1)
	kick := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	k, _ := api.ResourceFor("configmaps")
	inf := informer.New[*corev1.ConfigMap](n.cfg.Source, k, api.DNSNamespace, n.log)
	inf.AddHandler(informer.Handler[*corev1.ConfigMap]{
		OnUpdate: func(c *corev1.ConfigMap) {
			if c.Name == api.DNSConfigMap {
				kick()
			}
		},
		Synced: kick,
	})
	go inf.Run(ctx)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
			if cm, ok := inf.Get(api.DNSNamespace, api.DNSConfigMap); ok {
				n.apply(ctx, cm)
			}
		case <-tick.C:
		case <-n.server.exitedChan():
		}
		if _, err := os.Stat(n.corefilePath()); err == nil {
			n.server.ensure()
		}
	}
}

// apply renders and checks the ConfigMap's Corefile, writes it, and tells
// the server to reload.
func (n *NodeDNS) apply(ctx context.Context, cm *corev1.ConfigMap) {
	src, ok := cm.Data[api.DNSCorefileKey]
	var out []byte
	var err error
	if !ok {
		err = fmt.Errorf("configmap %s/%s has no key %q", cm.Namespace, cm.Name, api.DNSCorefileKey)
	} else {
		// Parse errors name the ConfigMap's lines (the original is what
		// is parsed). When the node's rendering does not load, the
		// original's own error is reported if it has one, so a setup
		// error names the line the user wrote too.
		out, err = RenderNodeCorefile(src, n.cfg.Address, n.cfg.Upstream)
		if err == nil {
			if err = checkCorefile(n.corefilePath(), out); err != nil {
				if orig := checkCorefile("Corefile", []byte(src)); orig != nil {
					err = orig
				}
			}
		}
	}
	seen := err != nil && err.Error() == n.lastErr
	n.report(ctx, err)
	if err != nil {
		if seen {
			return
		}
		n.log.Error("the Corefile does not load; the previous one keeps serving", "configmap", api.DNSNamespace+"/"+api.DNSConfigMap, "err", err)
		return
	}
	wrote, err := WriteFileAtomic(n.corefilePath(), out, 0o644)
	if err != nil {
		n.log.Error("write Corefile", "err", err)
		return
	}
	if wrote && n.server.signal(syscall.SIGUSR1) {
		n.log.Info("Corefile changed; reloading", "pid", n.server.pid)
	}
}

// checkCorefile loads the Corefile without starting it: the parse and
// every plugin's setup.
func checkCorefile(file string, b []byte) error {
	inst, err := pdns.Load(pdns.Input{File: file, Contents: b}, pdns.LoadOptions{Port: "53"})
	if err != nil {
		return err
	}
	_ = inst
	return nil
}

// report sets or clears this node's error annotation on the ConfigMap.
func (n *NodeDNS) report(ctx context.Context, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	if msg == n.lastErr || n.cfg.Store == nil {
		return
	}
	k, _ := api.ResourceFor("configmaps")
	key := api.AnnotationDNSErrorPrefix + n.cfg.NodeName
	_, uerr := n.cfg.Store.Mutate(ctx, k, api.DNSNamespace, api.DNSConfigMap, func(o api.Object) error {
		a := o.GetAnnotations()
		if msg == "" {
			delete(a, key)
		} else {
			if a == nil {
				a = map[string]string{}
			}
			a[key] = msg
		}
		o.SetAnnotations(a)
		return nil
	})
	if uerr != nil {
		n.log.Warn("cannot report the Corefile status on the ConfigMap", "err", uerr)
		return
	}
	n.lastErr = msg
}

// RenderNodeCorefile adapts a cluster Corefile to one node, on its parse
// tree (snippets and imports expanded, quoted words kept, {$ENV} left for
// the server to expand): each server block without a bind gets `bind
// ADDRESS`, and forward's /etc/resolv.conf becomes upstream ("none":
// forward directives are dropped). A Corefile that does not parse is
// returned as the parse error, naming the ConfigMap's line.
func RenderNodeCorefile(src, address, upstream string) ([]byte, error) {
	keepEnv := func(name string) string { return "{$" + name + "}" }
	blocks, err := corefile.Parse("Corefile", []byte(src), corefile.Options{Getenv: keepEnv})
	if err != nil {
		return nil, err
	}
	for i := range blocks {
		sb := &blocks[i]
		hasBind := false
		ds := sb.Directives[:0]
		for _, d := range sb.Directives {
			switch d.Name {
			case "bind":
				hasBind = true
			case "forward":
				if upstream == "none" {
					continue
				}
				if upstream != "" {
					d.Tokens = forwardUpstream(d.Tokens, upstream)
				}
			}
			ds = append(ds, d)
		}
		sb.Directives = ds
		if !hasBind {
			at := corefile.Token{File: "Corefile", Text: "bind"}
			if len(sb.Keys) > 0 {
				at = sb.Keys[0]
				at.Line = -1 // a line of its own
				at.Quoted = false
				at.Text = "bind"
			}
			addr := at
			addr.Text = address
			sb.Directives = append([]corefile.Directive{{Name: "bind", Tokens: []corefile.Token{at, addr}}}, sb.Directives...)
		}
	}
	return corefile.Format(blocks), nil
}

// forwardUpstream replaces /etc/resolv.conf among forward's TO arguments
// (the words on its first line after FROM) by upstream; a copy.
func forwardUpstream(toks []corefile.Token, upstream string) []corefile.Token {
	out := append([]corefile.Token(nil), toks...)
	for i := 2; i < len(out) && corefile.SameLine(out[0], out[i]) && !out[i].IsOpen(); i++ {
		if out[i].Text == "/etc/resolv.conf" {
			out[i].Text = upstream
		}
	}
	return out
}

func (n *NodeDNS) inNS(fn func() error) error {
	if n.cfg.NetNS == "" {
		return fn()
	}
	return netns.Do(netns.Path(n.cfg.NetNS), fn)
}

// EnsureNodeDNSAddress puts address/32 (or /128) on the dummy link
// NodeDNSLink, creating it up if missing; on loopback when the kernel has
// no dummy driver.
func EnsureNodeDNSAddress(address string) error {
	ip := net.ParseIP(address)
	if ip == nil {
		return fmt.Errorf("node dns: address %q", address)
	}
	l, err := netlink.LinkByName(NodeDNSLink)
	if err != nil {
		d := &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: NodeDNSLink}}
		err := netlink.LinkAdd(d)
		switch {
		case errors.Is(err, syscall.EOPNOTSUPP):
			// No dummy driver in this kernel: loopback holds the
			// address instead, which makes it as local.
			if l, err = netlink.LinkByName("lo"); err != nil {
				return fmt.Errorf("node dns: %w", err)
			}
		case err != nil && !errors.Is(err, syscall.EEXIST):
			return fmt.Errorf("node dns: add link %s: %w", NodeDNSLink, err)
		default:
			if l, err = netlink.LinkByName(NodeDNSLink); err != nil {
				return fmt.Errorf("node dns: %w", err)
			}
		}
	}
	bits := 32
	if ip.To4() == nil {
		bits = 128
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}}
	if err := netlink.AddrReplace(l, a); err != nil {
		return fmt.Errorf("node dns: address %s on %s: %w", address, NodeDNSLink, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("node dns: %s up: %w", NodeDNSLink, err)
	}
	return nil
}

// NodeDNSRules is the table `inet podnet-dns`: DNS to and from address is
// untracked, in raw-priority chains that run before conntrack and NAT.
func NodeDNSRules(address string) string {
	fam := "ip"
	if net.ParseIP(address).To4() == nil {
		fam = "ip6"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {}\ndelete table inet %s\ntable inet %s {\n", NodeDNSTable, NodeDNSTable, NodeDNSTable)
	b.WriteString("  chain prerouting {\n    type filter hook prerouting priority raw; policy accept;\n")
	for _, p := range []string{"udp", "tcp"} {
		fmt.Fprintf(&b, "    %s daddr %s %s dport 53 notrack\n", fam, address, p)
	}
	b.WriteString("  }\n  chain output {\n    type filter hook output priority raw; policy accept;\n")
	for _, p := range []string{"udp", "tcp"} {
		fmt.Fprintf(&b, "    %s daddr %s %s dport 53 notrack\n", fam, address, p)
		fmt.Fprintf(&b, "    %s saddr %s %s sport 53 notrack\n", fam, address, p)
	}
	b.WriteString("  }\n}\n")
	return b.String()
}

// EnsureNodeDNSRules (re)writes the table in one nft transaction.
func EnsureNodeDNSRules(ctx context.Context, address string) error {
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(NodeDNSRules(address))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("node dns: nft table %s: %v: %s", NodeDNSTable, err, out)
	}
	return nil
}
