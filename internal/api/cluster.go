package api

import (
	"fmt"
	"net/netip"
	"time"
)

// ClusterConfig is the cluster-wide network configuration. `podnet server`
// writes it to the store on first start; agents read it.
type ClusterConfig struct {
	// ClusterCIDR is split into per-node pod CIDRs. Default 10.244.0.0/16.
	ClusterCIDR string `json:"clusterCIDR"`
	// NodeCIDRMaskSize is the prefix length of each node's pod CIDR.
	// Default 24.
	NodeCIDRMaskSize int `json:"nodeCIDRMaskSize"`
	// Backend carries pod traffic between nodes: "vxlan" (default) or
	// "host-gw".
	Backend string `json:"backend"`
	// NodeGracePeriod is how long a node may be NotReady before its pod
	// CIDR is reclaimed. Default 5m.
	NodeGracePeriod Duration `json:"nodeGracePeriod"`
	// ServiceCIDR is the range Service cluster IPs come from
	// (--service-cluster-ip-range). Default 10.96.0.0/12; its tenth
	// address (10.96.0.10) is kept for cluster DNS.
	ServiceCIDR string `json:"serviceCIDR,omitempty"`
	// NodePortRange is the range of nodePorts, "30000-32767" by default.
	NodePortRange string `json:"nodePortRange,omitempty"`
	// LoadBalancerRange is the pool type: LoadBalancer addresses come from
	// ("192.168.250.200-192.168.250.250" or a CIDR); empty: none.
	LoadBalancerRange string `json:"loadBalancerRange,omitempty"`
	// PodEvictionTimeout is how long a node may be NotReady before its pods
	// are deleted (and replaced elsewhere by their ReplicaSet). Default 5m.
	PodEvictionTimeout Duration `json:"podEvictionTimeout,omitempty"`
}

// Duration is a time.Duration that reads and writes as "40s".
type Duration struct{ time.Duration }

func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.String() + `"`), nil }

func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) < 2 || b[0] != '"' {
		return fmt.Errorf("duration must be a string like \"40s\"")
	}
	v, err := time.ParseDuration(string(b[1 : len(b)-1]))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// Backends podnet supports.
const (
	BackendVXLAN  = "vxlan"
	BackendHostGW = "host-gw"
)

// Default fills unset fields.
func (c *ClusterConfig) Default() {
	if c.ClusterCIDR == "" {
		c.ClusterCIDR = "10.244.0.0/16"
	}
	if c.NodeCIDRMaskSize == 0 {
		c.NodeCIDRMaskSize = 24
	}
	if c.Backend == "" {
		c.Backend = BackendVXLAN
	}
	if c.NodeGracePeriod.Duration == 0 {
		c.NodeGracePeriod.Duration = 5 * time.Minute
	}
	if c.ServiceCIDR == "" {
		c.ServiceCIDR = DefaultServiceCIDR
	}
	if c.NodePortRange == "" {
		c.NodePortRange = DefaultNodePortRange
	}
	if c.PodEvictionTimeout.Duration == 0 {
		c.PodEvictionTimeout.Duration = 5 * time.Minute
	}
}

// Service defaults.
const (
	DefaultServiceCIDR   = "10.96.0.0/12"
	DefaultNodePortRange = "30000-32767"
)

// Validate checks the configuration; errors name the flag's field.
func (c *ClusterConfig) Validate() error {
	p, err := netip.ParsePrefix(c.ClusterCIDR)
	if err != nil {
		return fmt.Errorf("clusterCIDR %q: %w", c.ClusterCIDR, err)
	}
	if p.Masked() != p {
		return fmt.Errorf("clusterCIDR %q: host bits set (did you mean %s?)", c.ClusterCIDR, p.Masked())
	}
	if c.NodeCIDRMaskSize <= p.Bits() || c.NodeCIDRMaskSize > p.Addr().BitLen()-2 {
		return fmt.Errorf("nodeCIDRMaskSize %d: must be longer than the cluster CIDR's /%d and leave room for pods (at most /%d)", c.NodeCIDRMaskSize, p.Bits(), p.Addr().BitLen()-2)
	}
	switch c.Backend {
	case BackendVXLAN, BackendHostGW:
	default:
		return fmt.Errorf("backend %q: want %s or %s", c.Backend, BackendVXLAN, BackendHostGW)
	}
	if c.NodeGracePeriod.Duration < 0 {
		return fmt.Errorf("nodeGracePeriod %s: must not be negative", c.NodeGracePeriod)
	}
	if c.ServiceCIDR != "" {
		sp, err := netip.ParsePrefix(c.ServiceCIDR)
		if err != nil {
			return fmt.Errorf("serviceCIDR %q: %w", c.ServiceCIDR, err)
		}
		if sp.Masked() != sp {
			return fmt.Errorf("serviceCIDR %q: host bits set (did you mean %s?)", c.ServiceCIDR, sp.Masked())
		}
		if sp.Overlaps(p) {
			return fmt.Errorf("serviceCIDR %s overlaps clusterCIDR %s", sp, p)
		}
	}
	if c.LoadBalancerRange != "" {
		r, err := ParseAddrRange(c.LoadBalancerRange)
		if err != nil {
			return fmt.Errorf("loadBalancerRange: %w", err)
		}
		if r.Overlaps(p) {
			return fmt.Errorf("loadBalancerRange %s overlaps clusterCIDR %s", r, p)
		}
		if sp, err := netip.ParsePrefix(c.ServiceCIDR); err == nil && r.Overlaps(sp) {
			return fmt.Errorf("loadBalancerRange %s overlaps serviceCIDR %s", r, sp)
		}
	}
	if c.PodEvictionTimeout.Duration < 0 {
		return fmt.Errorf("podEvictionTimeout %s: must not be negative", c.PodEvictionTimeout)
	}
	return nil
}
