package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"
)

// The node's ingress proxy: every node serves the cluster's Ingresses on
// its node IP, ports 80 and 443, with `podnet ingress` (internal/ingress),
// a process of its own. The agent runs it detached (see detached), so an
// agent restart or kill -9 drops no request and no connection: the proxy
// keeps serving, and the next agent adopts it through its pid file. The
// proxy reads the store itself (list + watch); the agent only keeps it
// running.

// Default ports of the node's ingress proxy.
const (
	DefaultIngressHTTPPort    = 80
	DefaultIngressHTTPSPort   = 443
	DefaultIngressMetricsPort = 10254
)

// NodeIngressConfig configures the node's ingress proxy.
type NodeIngressConfig struct {
	NodeName string
	// NodeIP is the address the proxy listens on.
	NodeIP string
	// HTTPPort and HTTPSPort default to 80 and 443; MetricsPort (/metrics
	// and /healthz) to 10254, -1 for none.
	HTTPPort, HTTPSPort, MetricsPort int
	// Binary is the podnet binary.
	Binary string
	// Dir holds the pid file and the proxy's log (<state>/<node>/ingress).
	Dir string
	// Env is added to the proxy's environment: the store's endpoints
	// (PODNET_ETCD_*).
	Env    []string
	Logger *slog.Logger
	// NetNS, when set, is the named network namespace the proxy runs in;
	// empty means the agent's own.
	NetNS string
}

// NodeIngress is the runner.
type NodeIngress struct {
	cfg    NodeIngressConfig
	log    *slog.Logger
	server *detached
}

// NewNodeIngress returns the node ingress runner.
func NewNodeIngress(cfg NodeIngressConfig) (*NodeIngress, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ip, err := netip.ParseAddr(cfg.NodeIP)
	if err != nil {
		return nil, fmt.Errorf("node ingress: node IP %q: %w", cfg.NodeIP, err)
	}
	if cfg.HTTPPort == 0 {
		cfg.HTTPPort = DefaultIngressHTTPPort
	}
	if cfg.HTTPSPort == 0 {
		cfg.HTTPSPort = DefaultIngressHTTPSPort
	}
	if cfg.MetricsPort == 0 {
		cfg.MetricsPort = DefaultIngressMetricsPort
	}
	for _, p := range []int{cfg.HTTPPort, cfg.HTTPSPort, cfg.MetricsPort} {
		if p > 65535 || p < -1 {
			return nil, fmt.Errorf("node ingress: port %d out of range", p)
		}
	}
	addr := func(port int) string {
		if port < 0 {
			return ""
		}
		return netip.AddrPortFrom(ip, uint16(port)).String()
	}
	n := &NodeIngress{cfg: cfg, log: cfg.Logger.With("component", "node-ingress")}
	pid := n.PidFile()
	n.server = &detached{
		name: "node ingress proxy",
		// The pid file first: with the subcommand, it names the proxy.
		args: []string{cfg.Binary, "ingress", "--pidfile", pid,
			"--node-name", cfg.NodeName,
			"--http-addr", addr(cfg.HTTPPort), "--https-addr", addr(cfg.HTTPSPort), "--metrics-addr", addr(cfg.MetricsPort)},
		ident: 2, pidFile: pid, logFile: filepath.Join(cfg.Dir, "ingress.log"),
		netns: cfg.NetNS, env: cfg.Env, log: n.log,
	}
	return n, nil
}

// PidFile is the proxy's pid file.
func (n *NodeIngress) PidFile() string { return filepath.Join(n.cfg.Dir, "ingress.pid") }

// Run keeps the proxy running until ctx ends: it adopts the one of the pid
// file, or starts one, and starts it again when it dies. The proxy is left
// running.
func (n *NodeIngress) Run(ctx context.Context) error {
	if err := os.MkdirAll(n.cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("node ingress: %w", err)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		n.server.ensure()
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-n.server.exitedChan():
		}
	}
}
