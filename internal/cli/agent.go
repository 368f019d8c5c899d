package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/podnet/podnet/internal/agent"
	"github.com/podnet/podnet/internal/clusteripam"
	"github.com/podnet/podnet/internal/cni"
	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/nft"
	"github.com/podnet/podnet/internal/resolvconf"
	"github.com/podnet/podnet/internal/sandbox"
	"github.com/podnet/podnet/internal/store"
	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
)

// DefaultAgentStateDir holds each node's pods: <dir>/<node>/pods/<uid>.
const DefaultAgentStateDir = "/var/lib/podnet/agent"

type agentFlags struct {
	nodeName   string
	nodeIP     string
	podCIDR    string
	stateDir   string
	cniConfDir string
	cniBinDir  string
	cniDataDir string
	cniVersion string
	bridge     string
	mtu        int
	netns      string
	leaseTTL   time.Duration
	clusterDNS bool
	dnsUp      string
	ingress    bool
	ingHTTP    int
	ingHTTPS   int
	ingMetrics int
}

func (f *agentFlags) register(cmd *cobra.Command) {
	host, _ := os.Hostname()
	fl := cmd.Flags()
	fl.StringVar(&f.nodeName, "node-name", host, "this node's name")
	fl.StringVar(&f.nodeIP, "node-ip", "", "this node's address (default: the address of the default route's interface, else the first global IPv4 address)")
	fl.StringVar(&f.podCIDR, "pod-cidr", "", "this node's pod address range (default: a block of the cluster CIDR from the cluster IPAM)")
	fl.StringVar(&f.stateDir, "state-dir", DefaultAgentStateDir, "where pods' state and logs are kept (per node)")
	fl.StringVar(&f.cniConfDir, "cni-conf-dir", "/etc/cni/net.d", "where the node's conflist is written")
	fl.StringVar(&f.cniBinDir, "cni-bin-dir", "/opt/cni/bin", "where CNI plugins are found; podnet-cni is installed here if missing")
	fl.StringVar(&f.cniDataDir, "cni-data-dir", cni.DefaultDataDir, "the CNI plugin's IPAM state directory")
	fl.StringVar(&f.cniVersion, "cni-version", agent.DefaultCNIVersion, "cniVersion of the conflist written, one of "+strings.Join(agent.CNIVersions, ", ")+": the newest the node's container runtime takes (containerd 1.6/1.7 take up to 1.0.0; 1.1.0 needs libcni 1.2+, e.g. containerd 2.x)")
	fl.StringVar(&f.bridge, "bridge", cni.DefaultBridge, "the node's pod bridge")
	fl.IntVar(&f.mtu, "mtu", 0, "pod interface MTU (0: the overlay's, the underlay's minus 50 with vxlan)")
	fl.DurationVar(&f.leaseTTL, "node-lease-ttl", agent.DefaultLeaseTTL, "the node lease's time to live (whole seconds, at least 2s): how soon after this agent dies the node turns NotReady and its load-balancer addresses move to another node; a store stall longer than this marks the node NotReady too")
	fl.BoolVar(&f.clusterDNS, "cluster-dns", true, "answer the cluster DNS address (kube-dns) on this node with a node-local `podnet dns`, and give pods it as their nameserver")
	fl.StringVar(&f.dnsUp, "dns-upstream", "/etc/resolv.conf", "resolv.conf the node DNS server forwards outside names to (in place of the Corefile's /etc/resolv.conf, as kubeadm's forwards to the node's); \"none\": no forwarding, outside names fail at once (local clusters pass their outside host's server)")
	fl.BoolVar(&f.ingress, "ingress", true, "serve the cluster's Ingresses on this node's IP with a node-local `podnet ingress` (a process of its own that outlives agent restarts)")
	fl.IntVar(&f.ingHTTP, "ingress-http-port", agent.DefaultIngressHTTPPort, "the ingress proxy's HTTP port on the node IP")
	fl.IntVar(&f.ingHTTPS, "ingress-https-port", agent.DefaultIngressHTTPSPort, "the ingress proxy's HTTPS port on the node IP")
	fl.IntVar(&f.ingMetrics, "ingress-metrics-port", agent.DefaultIngressMetricsPort, "the ingress proxy's /metrics and /healthz port on the node IP (0: none)")
	fl.StringVar(&f.netns, "netns", "", "the named network namespace this node runs in, when it is one (a local cluster's node); empty on a real host")
}

// newAgentFromFlags registers the node, writes its CNI config, installs
// the plugin and returns an agent ready to Run.
func newAgentFromFlags(ctx context.Context, g *globals, f *agentFlags, s *store.Store) (*agent.Agent, error) {
	log := g.logger()
	if f.nodeName == "" {
		return nil, fmt.Errorf("--node-name is required")
	}
	if err := agent.CheckCNIVersion(f.cniVersion); err != nil {
		return nil, fmt.Errorf("--cni-version: %w", err)
	}
	if f.leaseTTL < 2*time.Second || f.leaseTTL%time.Second != 0 {
		return nil, fmt.Errorf("--node-lease-ttl %s: want whole seconds, at least 2s", f.leaseTTL)
	}
	if f.podCIDR != "" {
		if _, err := netip.ParsePrefix(f.podCIDR); err != nil {
			return nil, fmt.Errorf("--pod-cidr %q: %w", f.podCIDR, err)
		}
	}
	if f.nodeIP == "" {
		ip, err := detectNodeIP()
		if err != nil {
			return nil, fmt.Errorf("--node-ip not given and %w", err)
		}
		f.nodeIP = ip
	} else if _, err := netip.ParseAddr(f.nodeIP); err != nil {
		return nil, fmt.Errorf("--node-ip %q: %w", f.nodeIP, err)
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if err := agent.InstallPlugin(filepath.Join(filepath.Dir(self), "podnet-cni"), f.cniBinDir); err != nil {
		return nil, err
	}
	if err := checkInNetNS(f.netns); err != nil {
		return nil, err
	}
	stateDir := filepath.Join(f.stateDir, f.nodeName)
	reg, err := registerNode(ctx, s, agent.NodeConfig{Name: f.nodeName, IP: f.nodeIP, PodCIDR: f.podCIDR, StateDir: stateDir, NetNS: f.netns, LeaseTTL: f.leaseTTL, Logger: log})
	if err != nil {
		return nil, err
	}
	f.podCIDR = reg.PodCIDR
	// The overlay: the node's device now, the peers in its runner.
	ov, podMTU, err := agent.SetupOverlay(ctx, agent.OverlaySetup{
		Store: s, NodeName: f.nodeName, NodeIP: f.nodeIP, PodCIDR: reg.PodCIDR,
		Backend: reg.Cluster.Backend, StateDir: stateDir, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	mtu := podMTU
	if f.mtu > 0 {
		if f.mtu > podMTU {
			log.Warn("--mtu is larger than the overlay allows; large packets between nodes will be dropped", "mtu", f.mtu, "overlayMTU", podMTU)
		}
		mtu = f.mtu
	}
	conf, err := agent.ConfList(agent.NetworkConfig{CNIVersion: f.cniVersion, Bridge: f.bridge, PodCIDR: reg.PodCIDR, MTU: mtu, DataDir: f.cniDataDir,
		NonMasqueradeCIDRs: []string{reg.Cluster.ClusterCIDR}})
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(f.cniConfDir, agent.ConfListName)
	if _, err := agent.WriteFileAtomic(confPath, conf, 0o644); err != nil {
		return nil, fmt.Errorf("write CNI config: %w", err)
	}
	log.Info("CNI configured", "conflist", confPath, "cniVersion", f.cniVersion, "podCIDR", f.podCIDR, "bridge", f.bridge)
	// Heal or upgrade the node's nftables table before pods need it; the
	// plugin's fast path only adds elements to an intact table.
	if dp, err := nft.NewExec(); err != nil {
		return nil, err
	} else if err := dp.Ensure(ctx); err != nil {
		return nil, err
	} else if n, err := cni.RestoreDatapath(ctx, f.cniDataDir, agent.DefaultNetworkName, dp); err != nil {
		// Pods whose elements could not be restored still run; the error
		// names them. Refusing to start would help none of them.
		log.Error("restore pods' nftables elements", "err", err, "restored", n)
	} else if n > 0 {
		log.Info("pods' nftables elements restored from the CNI records", "attachments", n)
	}
	// The service proxy: its first sync diffs against the kernel.
	svcs, err := agent.NewServices(agent.ServicesConfig{NodeName: f.nodeName, NodeIP: f.nodeIP, Source: s, Cluster: reg.Cluster, Logger: log})
	if err != nil {
		return nil, err
	}
	// Load-balancer addresses this node is elected for, answered by ARP
	// on the interface holding the node IP.
	svcInf, sliceInf := svcs.Informers()
	l2, err := agent.NewL2Announce(agent.L2AnnounceConfig{NodeName: f.nodeName, NodeIP: f.nodeIP, Source: s, Store: s,
		Services: svcInf, Slices: sliceInf, Logger: log})
	if err != nil {
		return nil, err
	}
	runners := []agent.Runner{reg.Lease, ov, svcs, l2}
	resolv := resolvconf.Config{HostResolvConf: "/etc/resolv.conf"}
	if f.clusterDNS {
		addr, err := store.DNSServiceIP(reg.Cluster.ServiceCIDR)
		if err != nil {
			return nil, err
		}
		runners = append(runners, agent.NewNodeDNS(agent.NodeDNSConfig{
			NodeName: f.nodeName, Binary: self, Dir: filepath.Join(stateDir, "dns"), Address: addr,
			Upstream: f.dnsUp, Env: g.storeEnv(), Source: s, Store: s, Logger: log,
		}))
		resolv.ClusterDNS = []string{addr}
		// Pods with dnsPolicy Default get the node DNS server's upstream,
		// never the machine's own resolver unless asked for.
		resolv.HostResolvConf = f.dnsUp
		if f.dnsUp == "none" {
			resolv.HostResolvConf = filepath.Join(stateDir, "dns", "no-upstream.conf")
		}
	}
	if f.ingress {
		metrics := f.ingMetrics
		if metrics == 0 {
			metrics = -1
		}
		ing, err := agent.NewNodeIngress(agent.NodeIngressConfig{
			NodeName: f.nodeName, NodeIP: f.nodeIP, HTTPPort: f.ingHTTP, HTTPSPort: f.ingHTTPS, MetricsPort: metrics,
			Binary: self, Dir: filepath.Join(stateDir, "ingress"), Env: g.storeEnv(), Logger: log,
		})
		if err != nil {
			return nil, err
		}
		runners = append(runners, ing)
	}
	mgr, err := sandbox.New(sandbox.Config{
		NodeName:        f.nodeName,
		StateDir:        stateDir,
		CNIConfListPath: confPath,
		CNIBinDirs:      []string{f.cniBinDir},
		PodnetBinary:    self,
		ResolvConf:      resolv,
		Logger:          log,
	})
	if err != nil {
		return nil, err
	}
	return agent.New(agent.Config{
		NodeName: f.nodeName, NodeIP: f.nodeIP, Store: s, Runtime: mgr,
		Logger:  log,
		Runners: runners,
	}), nil
}

// storeEnv is the environment giving a child process (`podnet dns`,
// `podnet ingress`) the store this process uses.
func (g *globals) storeEnv() []string {
	env := []string{"PODNET_ETCD_ENDPOINTS=" + strings.Join(g.endpoints, ",")}
	for k, v := range map[string]string{"PODNET_ETCD_CAFILE": g.caFile, "PODNET_ETCD_CERTFILE": g.certFile, "PODNET_ETCD_KEYFILE": g.keyFile} {
		if v != "" {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// checkInNetNS: --netns must name the namespace we run in, since `podnet
// exec` of the node's host-network pods enters it.
func checkInNetNS(name string) error {
	if name == "" {
		return nil
	}
	var want, have syscall.Stat_t
	if err := syscall.Stat(netns.Path(name), &want); err != nil {
		return fmt.Errorf("--netns %q: %w", name, err)
	}
	if err := syscall.Stat("/proc/self/ns/net", &have); err != nil {
		return fmt.Errorf("--netns %q: %w", name, err)
	}
	if want.Dev != have.Dev || want.Ino != have.Ino {
		return fmt.Errorf("--netns %q: this agent does not run in that network namespace", name)
	}
	return nil
}

// registerNode registers the node, retrying every few seconds while the
// cluster has no pod CIDR free or the store is not ready; a static
// --pod-cidr held by another node is an error at once.
func registerNode(ctx context.Context, s *store.Store, n agent.NodeConfig) (agent.Registration, error) {
	for {
		reg, err := agent.Register(ctx, s, n)
		if err == nil {
			return reg, nil
		}
		if errors.Is(err, clusteripam.ErrTaken) || ctx.Err() != nil {
			return reg, err
		}
		n.Logger.Error("cannot register node; retrying in 5s", "node", n.Name, "err", err)
		select {
		case <-ctx.Done():
			return reg, fmt.Errorf("node %s not registered: %w", n.Name, err)
		case <-time.After(5 * time.Second):
		}
	}
}

// detectNodeIP picks the node's address: the default route's source or
// interface address, else the first global unicast IPv4 address.
func detectNodeIP() (string, error) {
	routes, _ := netlink.RouteList(nil, netlink.FAMILY_V4)
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() != "0.0.0.0/0" {
			continue
		}
		if r.Src != nil {
			return r.Src.String(), nil
		}
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
			if addrs, err := netlink.AddrList(l, netlink.FAMILY_V4); err == nil && len(addrs) > 0 {
				return addrs[0].IP.String(), nil
			}
		}
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String(), nil
		}
	}
	return "", fmt.Errorf("no global IPv4 address found")
}

func newAgent(g *globals) *cobra.Command {
	var f agentFlags
	cmd := &cobra.Command{
		Use:   "agent --node-name NAME [--node-ip IP] [--pod-cidr CIDR]",
		Short: "Run the node agent: pods bound to this node, their network, their status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer cancel()
			cli, err := store.Connect(g.clientConfig())
			if err != nil {
				return err
			}
			defer cli.Close()
			a, err := newAgentFromFlags(ctx, g, &f, store.New(cli))
			if err != nil {
				return err
			}
			return a.Run(ctx)
		},
	}
	f.register(cmd)
	return cmd
}

func newUp(g *globals) *cobra.Command {
	var f agentFlags
	var sf serverFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Single-machine mode: the store and an agent for this machine as one node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer cancel()
			s, stop, err := startStore(ctx, g, &sf, cmd)
			if err != nil {
				return err
			}
			defer stop()
			defer startControllers(ctx, g, s)()
			a, err := newAgentFromFlags(ctx, g, &f, s)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.errOut, "podnet up: node %s (%s), pods in %s, store at %v\n", f.nodeName, f.nodeIP, f.podCIDR, g.endpoints)
			return a.Run(ctx)
		},
	}
	f.register(cmd)
	sf.register(cmd)
	return cmd
}
