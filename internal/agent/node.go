package agent

import (
	"context"
	"fmt"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
)

// NodeConfig describes this node to Register.
type NodeConfig struct {
	Name string
	IP   string
	// PodCIDR, if set, is a static pod range instead of one from the
	// cluster's IPAM.
	PodCIDR  string
	StateDir string // the agent's per-node state directory
	NetNS    string // the named namespace the node runs in, if any
}

// Registration is what the node learned from the cluster.
type Registration struct {
	PodCIDR string
	Cluster api.ClusterConfig
}

// Register creates or updates this node's Node object and returns its pod
// CIDR.
//
// TODO(nodes): allocate from the cluster CIDR, keep a lease alive.
func Register(ctx context.Context, s *store.Store, n NodeConfig) (Registration, error) {
	cfg, _, err := s.ClusterConfig(ctx)
	if err != nil {
		return Registration{}, err
	}
	cfg.Default()
	if n.PodCIDR == "" {
		return Registration{}, fmt.Errorf("node %s: no pod CIDR", n.Name)
	}
	return Registration{PodCIDR: n.PodCIDR, Cluster: cfg}, nil
}

// Runner is a node-level loop the agent runs beside its pod workers: the
// node lease, the overlay. Run returns when ctx ends.
type Runner interface {
	Run(ctx context.Context) error
}
