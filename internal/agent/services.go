package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/informer"
	"github.com/podnet/podnet/internal/link"
	"github.com/podnet/podnet/internal/proxy"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/knftables"
)

// ServicesConfig configures the service proxy runner.
type ServicesConfig struct {
	NodeName string
	// NodeIP is the node's address: the source of the node's own traffic
	// to ClusterIPs (the proxy routes the service CIDR to lo with it).
	NodeIP string
	// Source is the store (or any list/watch source).
	Source informer.Source
	// Cluster gives the cluster and service CIDRs.
	Cluster api.ClusterConfig
	// NFT, if set, replaces the real table of this namespace (which the
	// proxy reads over netlink and writes with batched `nft -f`).
	NFT knftables.Interface
	// Conntrack defaults to netlink in this namespace.
	Conntrack proxy.Conntrack
	Logger    *slog.Logger
	// Coalesce is how long a sync waits for more events after the first
	// (default 10ms); Resync re-syncs without an event (default 60s).
	Coalesce, Resync time.Duration
	// OnSync, if set, is called after every sync (tests).
	OnSync func(proxy.Stats, error)
}

// ServiceMetrics are the proxy's last sync figures, ready for export.
type ServiceMetrics struct {
	Syncs, Failures            atomic.Int64
	LastSyncNanos              atomic.Int64
	Services, Ports, Endpoints atomic.Int64
}

// Services is the Runner that keeps the node's service datapath in step
// with the cluster's Services and EndpointSlices (all namespaces). Events
// are coalesced into syncs; nothing is programmed before both kinds have a
// complete list, so a restart never removes a live Service; the first sync
// diffs against what the kernel holds.
type Services struct {
	cfg     ServicesConfig
	log     *slog.Logger
	proxier *proxy.Proxier
	svcs    *informer.Informer[*corev1.Service]
	slices  *informer.Informer[*discoveryv1.EndpointSlice]
	kick    chan struct{}
	Metrics ServiceMetrics
}

// NewServices returns the runner; add it to Config.Runners after
// registration.
func NewServices(cfg ServicesConfig) (*Services, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Coalesce <= 0 {
		cfg.Coalesce = 10 * time.Millisecond
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 60 * time.Second
	}
	c := cfg.Cluster
	c.Default()
	clusterCIDR, err := netip.ParsePrefix(c.ClusterCIDR)
	if err != nil {
		return nil, fmt.Errorf("services: cluster CIDR %q: %w", c.ClusterCIDR, err)
	}
	serviceCIDR, err := netip.ParsePrefix(c.ServiceCIDR)
	if err != nil {
		return nil, fmt.Errorf("services: service CIDR %q: %w", c.ServiceCIDR, err)
	}
	var nodeIP netip.Addr
	if cfg.NodeIP != "" {
		if nodeIP, err = netip.ParseAddr(cfg.NodeIP); err != nil {
			return nil, fmt.Errorf("services: node IP %q: %w", cfg.NodeIP, err)
		}
	}
	if cfg.Conntrack == nil {
		cfg.Conntrack = proxy.NetlinkConntrack{}
	}
	log := cfg.Logger.With("node", cfg.NodeName, "component", "services")
	s := &Services{cfg: cfg, log: log, kick: make(chan struct{}, 1)}
	s.proxier = proxy.New(proxy.Config{NodeName: cfg.NodeName, NodeIP: nodeIP, ClusterCIDR: clusterCIDR, ServiceCIDR: serviceCIDR,
		NFT: cfg.NFT, Conntrack: cfg.Conntrack, Logger: log})
	svcKind, _ := api.KindOf(&corev1.Service{})
	sliceKind, _ := api.KindOf(&discoveryv1.EndpointSlice{})
	s.svcs = informer.New[*corev1.Service](cfg.Source, svcKind, "", log)
	s.slices = informer.New[*discoveryv1.EndpointSlice](cfg.Source, sliceKind, "", log)
	s.svcs.AddHandler(informer.Handler[*corev1.Service]{
		OnUpdate: func(o *corev1.Service) { s.proxier.SetService(o); poke(s.kick) },
		OnDelete: func(o *corev1.Service) { s.proxier.DeleteService(o.Namespace, o.Name); poke(s.kick) },
		Synced:   func() { poke(s.kick) },
	})
	s.slices.AddHandler(informer.Handler[*discoveryv1.EndpointSlice]{
		OnUpdate: func(o *discoveryv1.EndpointSlice) { s.proxier.SetSlice(o); poke(s.kick) },
		OnDelete: func(o *discoveryv1.EndpointSlice) { s.proxier.DeleteSlice(o); poke(s.kick) },
		Synced:   func() { poke(s.kick) },
	})
	return s, nil
}

// Informers returns the runner's Service and EndpointSlice caches, for
// other runners to share: add handlers before Run; this runner runs them.
func (s *Services) Informers() (*informer.Informer[*corev1.Service], *informer.Informer[*discoveryv1.EndpointSlice]) {
	return s.svcs, s.slices
}

// Run works until ctx ends; the datapath stays as it is when it returns.
func (s *Services) Run(ctx context.Context) error {
	// Bridged pod-to-pod replies of a Service connection to a pod on the
	// same node must pass conntrack to be un-DNAT'd.
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err == nil {
		if err := link.Sysctl("net/bridge/bridge-nf-call-iptables", "1"); err != nil {
			s.log.Warn("cannot enable bridge-nf-call-iptables; a Service's same-node endpoints may not answer", "err", err)
		}
	} else {
		s.log.Warn("br_netfilter is not loaded; a Service's same-node endpoints may not answer (modprobe br_netfilter)")
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.svcs.Run(ctx) }()
	go func() { defer wg.Done(); s.slices.Run(ctx) }()
	s.syncLoop(ctx)
	wg.Wait()
	return nil
}

func (s *Services) syncLoop(ctx context.Context) {
	resync := time.NewTicker(s.cfg.Resync)
	defer resync.Stop()
	var retry <-chan time.Time
	delay := 100 * time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-resync.C:
		case <-retry:
		}
		retry = nil
		if !s.svcs.HasSynced() || !s.slices.HasSynced() {
			continue
		}
		sleep(ctx, s.cfg.Coalesce)
		st, err := s.proxier.Sync(ctx)
		if ctx.Err() != nil {
			return
		}
		s.Metrics.Syncs.Add(1)
		if s.cfg.OnSync != nil {
			s.cfg.OnSync(st, err)
		}
		if err != nil {
			s.Metrics.Failures.Add(1)
			s.log.Error("service sync", "err", err)
			retry = time.After(delay)
			delay = min(delay*2, 10*time.Second)
			continue
		}
		delay = 100 * time.Millisecond
		if st.Pending > 0 {
			poke(s.kick)
		}
		s.Metrics.LastSyncNanos.Store(int64(st.Took))
		s.Metrics.Services.Store(int64(st.Services))
		s.Metrics.Ports.Store(int64(st.Ports))
		s.Metrics.Endpoints.Store(int64(st.Endpoints))
		if st.Changed > 0 {
			s.log.Info("services synced", "took", st.Took.Round(time.Microsecond), "changed", st.Changed,
				"services", st.Services, "ports", st.Ports, "endpoints", st.Endpoints)
		}
	}
}
