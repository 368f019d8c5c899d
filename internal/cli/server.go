package cli

import (
	"context"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/controller"
	"github.com/podnet/podnet/internal/store"
	"github.com/spf13/cobra"
)

// serverFlags configure the store side of `server` and `up`.
type serverFlags struct {
	dataDir   string
	clientURL string
	peerURL   string
	cluster   api.ClusterConfig
}

func (f *serverFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dataDir, "data-dir", store.DefaultDataDir, "embedded etcd data directory")
	cmd.Flags().StringVar(&f.clientURL, "listen-client-url", store.DefaultClientURL, "embedded etcd client URL")
	cmd.Flags().StringVar(&f.peerURL, "listen-peer-url", store.DefaultPeerURL, "embedded etcd peer URL")
	cmd.Flags().StringVar(&f.cluster.ClusterCIDR, "cluster-cidr", "10.244.0.0/16", "the pod network, split into per-node pod CIDRs")
	cmd.Flags().IntVar(&f.cluster.NodeCIDRMaskSize, "node-cidr-mask-size", 24, "prefix length of each node's pod CIDR")
	cmd.Flags().StringVar(&f.cluster.Backend, "backend", api.BackendVXLAN, "how pod traffic crosses nodes: vxlan or host-gw")
	cmd.Flags().DurationVar(&f.cluster.NodeGracePeriod.Duration, "node-grace-period", 5*time.Minute, "how long a node may be NotReady before its pod CIDR is reclaimed")
	cmd.Flags().StringVar(&f.cluster.ServiceCIDR, "service-cluster-ip-range", api.DefaultServiceCIDR, "the range Service cluster IPs come from (its tenth address is kept for cluster DNS)")
	cmd.Flags().StringVar(&f.cluster.NodePortRange, "service-node-port-range", api.DefaultNodePortRange, "the range of Service nodePorts, FROM-TO")
	cmd.Flags().DurationVar(&f.cluster.PodEvictionTimeout.Duration, "pod-eviction-timeout", 5*time.Minute, "how long a node may be NotReady before its pods are deleted")
	cmd.Flags().StringVar(&f.cluster.LoadBalancerRange, "lb-range", "", "the pool type LoadBalancer Services' addresses come from: first-last (192.168.250.200-192.168.250.250) or a CIDR; empty keeps the stored pool (none: EXTERNAL-IP stays <pending>)")
}

// startStore starts the embedded etcd unless --etcd-endpoints names an
// external cluster, connects, and creates what every cluster has (the
// system namespaces, the cluster DNS objects, the IngressClass podnet)
// when missing, giving up after 90s. stop releases everything.
func startStore(ctx context.Context, g *globals, f *serverFlags, cmd *cobra.Command) (s *store.Store, stop func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	log := g.logger()
	var emb *store.Embedded
	if !cmd.Flags().Changed("etcd-endpoints") && !envSet("PODNET_ETCD_ENDPOINTS") {
		log.Info("starting embedded etcd", "dataDir", f.dataDir, "clientURL", f.clientURL)
		emb, err = store.StartEmbedded(ctx, store.EmbeddedConfig{DataDir: f.dataDir, ClientURL: f.clientURL, PeerURL: f.peerURL})
		if err != nil {
			return nil, nil, err
		}
		g.endpoints = emb.Endpoints()
	} else {
		log.Info("using external etcd", "endpoints", g.endpoints)
	}
	s, done, err := g.store(ctx)
	if err != nil {
		if emb != nil {
			emb.Close()
		}
		return nil, nil, err
	}
	err = s.EnsureNamespaces(ctx, api.SystemNamespaces...)
	if err == nil {
		f.cluster, err = s.EnsureClusterConfig(ctx, f.cluster)
	}
	if err == nil {
		err = s.EnsureClusterDNS(ctx, f.cluster.ServiceCIDR)
	}
	if err == nil {
		err = s.EnsureIngressClass(ctx)
	}
	if err == nil {
		err = s.EnsureIngressService(ctx)
	}
	if err != nil {
		done()
		if emb != nil {
			emb.Close()
		}
		return nil, nil, err
	}
	return s, func() {
		done()
		if emb != nil {
			emb.Close()
		}
	}, nil
}

// startControllers runs the cluster controllers (node lifecycle, scheduler)
// under leader election, so several servers may run; stop waits for them.
func startControllers(ctx context.Context, g *globals, s *store.Store) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	m := controller.NewManager(controller.Config{Store: s, Logger: g.logger()})
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

func newServer(g *globals) *cobra.Command {
	var f serverFlags
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the podnet store (embedded etcd, or --etcd-endpoints) and the cluster controllers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer cancel()
			s, stop, err := startStore(ctx, g, &f, cmd)
			if err != nil {
				return err
			}
			defer stop()
			defer startControllers(ctx, g, s)()
			g.logger().Info("server ready", "endpoints", g.endpoints)
			fmt.Fprintf(g.errOut, "podnet server ready: store at %v\n", g.endpoints)
			<-ctx.Done()
			return nil
		},
	}
	f.register(cmd)
	return cmd
}
