// Package lbipam owns the addresses of type LoadBalancer Services: the
// pool (ClusterConfig.LoadBalancerRange, "first-last" or a CIDR) and the
// claims of its addresses in etcd. A claim is two keys written in one
// transaction that succeeds only if neither exists, as the cluster IPAM's:
//
//	/podnet/ipam/lb/<ip>            → <namespace>/<name>  (who holds an address)
//	/podnet/ipam/lbsvc/<ns>/<name>  → <ip>                (what a Service holds)
//
// so two Services never share an address and one Service never holds two.
// Release compares the owner in the same transaction.
package lbipam

import "github.com/podnet/podnet/internal/api"

// Pool is an inclusive range of IPv4 addresses (api.AddrRange).
type Pool = api.AddrRange

// ParsePool reads "192.168.250.200-192.168.250.250" or a CIDR.
func ParsePool(s string) (Pool, error) { return api.ParseAddrRange(s) }
