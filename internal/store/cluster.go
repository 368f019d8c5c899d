package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/serviceipam"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ClusterConfigKey holds the cluster-wide network configuration.
const ClusterConfigKey = "/podnet/config/cluster"

// EnsureClusterConfig stores want if the cluster has no configuration yet
// and returns what is stored. A stored configuration wins: changing the
// cluster CIDR, node mask size or backend of a running cluster is refused
// with an error naming the field; a new node grace period is taken, and a
// new load-balancer range (an empty one keeps the stored range).
func (s *Store) EnsureClusterConfig(ctx context.Context, want api.ClusterConfig) (api.ClusterConfig, error) {
	want.Default()
	if err := want.Validate(); err != nil {
		return want, err
	}
	if _, err := serviceipam.ParseIPRange(want.ServiceCIDR); err != nil {
		return want, fmt.Errorf("cluster config: serviceCIDR: %w", err)
	}
	if _, err := serviceipam.ParsePortRange(want.NodePortRange); err != nil {
		return want, fmt.Errorf("cluster config: nodePortRange: %w", err)
	}
	val, err := json.Marshal(want)
	if err != nil {
		return want, err
	}
	resp, err := s.c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(ClusterConfigKey), "=", 0)).
		Then(clientv3.OpPut(ClusterConfigKey, string(val))).
		Else(clientv3.OpGet(ClusterConfigKey)).Commit()
	if err != nil {
		return want, fmt.Errorf("cluster config: %w", err)
	}
	if resp.Succeeded {
		return want, nil
	}
	kv := resp.Responses[0].GetResponseRange().Kvs[0]
	var have api.ClusterConfig
	if err := json.Unmarshal(kv.Value, &have); err != nil {
		return want, fmt.Errorf("cluster config: %w", err)
	}
	have.Default()
	switch {
	case have.ServiceCIDR != want.ServiceCIDR:
		return have, fmt.Errorf("cluster config: serviceCIDR is %s in the store; it cannot change to %s", have.ServiceCIDR, want.ServiceCIDR)
	case have.NodePortRange != want.NodePortRange:
		return have, fmt.Errorf("cluster config: nodePortRange is %s in the store; it cannot change to %s", have.NodePortRange, want.NodePortRange)
	case have.ClusterCIDR != want.ClusterCIDR:
		return have, fmt.Errorf("cluster config: clusterCIDR is %s in the store; it cannot change to %s", have.ClusterCIDR, want.ClusterCIDR)
	case have.NodeCIDRMaskSize != want.NodeCIDRMaskSize:
		return have, fmt.Errorf("cluster config: nodeCIDRMaskSize is %d in the store; it cannot change to %d", have.NodeCIDRMaskSize, want.NodeCIDRMaskSize)
	case have.Backend != want.Backend:
		return have, fmt.Errorf("cluster config: backend is %s in the store; it cannot change to %s", have.Backend, want.Backend)
	}
	// The load-balancer pool may change (the controller moves Services
	// out of addresses it no longer holds); omitted, the stored one stays.
	if want.LoadBalancerRange == "" {
		want.LoadBalancerRange = have.LoadBalancerRange
	}
	if have.NodeGracePeriod != want.NodeGracePeriod || have.PodEvictionTimeout != want.PodEvictionTimeout || have.LoadBalancerRange != want.LoadBalancerRange {
		if _, err := s.c.Put(ctx, ClusterConfigKey, string(val)); err != nil {
			return have, fmt.Errorf("cluster config: %w", err)
		}
	}
	return want, nil
}

// ClusterConfig reads the cluster configuration; ok is false if none is
// stored yet (no server has started).
func (s *Store) ClusterConfig(ctx context.Context) (cfg api.ClusterConfig, ok bool, err error) {
	resp, err := s.c.Get(ctx, ClusterConfigKey)
	if err != nil {
		return cfg, false, fmt.Errorf("cluster config: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return cfg, false, nil
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &cfg); err != nil {
		return cfg, false, fmt.Errorf("cluster config: %w", err)
	}
	cfg.Default()
	return cfg, true, nil
}
