package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/serviceipam"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// A Service's cluster IP and nodePorts are claimed (serviceipam's keys) in
// the transaction that writes the Service, and freed in the one that
// deletes it or changes them.
func init() {
	RegisterTxnHook("Service", TxnHook{
		PrepareUpdate: func(old, new api.Object) { prepareServiceUpdate(old.(*corev1.Service), new.(*corev1.Service)) },
		Create: func(ctx context.Context, s *Store, o api.Object) (TxnParts, error) {
			return s.serviceClaims(ctx, nil, o.(*corev1.Service))
		},
		Update: func(ctx context.Context, s *Store, old, new api.Object) (TxnParts, error) {
			return s.serviceClaims(ctx, old.(*corev1.Service), new.(*corev1.Service))
		},
		Delete: func(ctx context.Context, s *Store, old api.Object) (TxnParts, error) {
			svc := old.(*corev1.Service)
			var p TxnParts
			for _, key := range claimKeys(svc) {
				p.Ops = append(p.Ops, releaseOp(key, owner(svc)))
			}
			return p, nil
		},
	})
}

var serviceGK = schema.GroupKind{Kind: "Service"}

func owner(s *corev1.Service) string { return s.Namespace + "/" + s.Name }

// releaseOp deletes a claim if it is held by who.
func releaseOp(key, who string) clientv3.Op {
	return clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Value(key), "=", who)}, []clientv3.Op{clientv3.OpDelete(key)}, nil)
}

func svcType(s *corev1.Service) corev1.ServiceType {
	if s.Spec.Type == "" {
		return corev1.ServiceTypeClusterIP
	}
	return s.Spec.Type
}

// needsClusterIP: every Service but ExternalName and headless ones.
func needsClusterIP(s *corev1.Service) bool {
	return svcType(s) != corev1.ServiceTypeExternalName && s.Spec.ClusterIP != corev1.ClusterIPNone
}

// hasNodePorts: NodePort and LoadBalancer Services carry nodePorts.
func hasNodePorts(s *corev1.Service) bool {
	t := svcType(s)
	return t == corev1.ServiceTypeNodePort || t == corev1.ServiceTypeLoadBalancer
}

// allocatesNodePorts: which of them get nodePorts they did not ask for.
func allocatesNodePorts(s *corev1.Service) bool {
	return svcType(s) == corev1.ServiceTypeNodePort ||
		(svcType(s) == corev1.ServiceTypeLoadBalancer && (s.Spec.AllocateLoadBalancerNodePorts == nil || *s.Spec.AllocateLoadBalancerNodePorts))
}

func needsHealthCheckPort(s *corev1.Service) bool {
	return svcType(s) == corev1.ServiceTypeLoadBalancer && s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
}

// normalizeClusterIPs makes clusterIP and clusterIPs[0] agree when only
// one of them is set.
func normalizeClusterIPs(s *corev1.Service) {
	switch {
	case s.Spec.ClusterIP == "" && len(s.Spec.ClusterIPs) > 0:
		s.Spec.ClusterIP = s.Spec.ClusterIPs[0]
	case s.Spec.ClusterIP != "" && len(s.Spec.ClusterIPs) == 0:
		s.Spec.ClusterIPs = []string{s.Spec.ClusterIP}
	}
}

// prepareServiceUpdate keeps allocated values an update leaves unset and
// drops those the new type has no use for, as the API server does
// (patchAllocatedValues, dropTypeDependentFields).
func prepareServiceUpdate(old, svc *corev1.Service) {
	normalizeClusterIPs(svc)
	if needsClusterIP(svc) && needsClusterIP(old) && svc.Spec.ClusterIP == "" {
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs = old.Spec.ClusterIP, append([]string(nil), old.Spec.ClusterIPs...)
		if len(svc.Spec.IPFamilies) == 0 {
			svc.Spec.IPFamilies = old.Spec.IPFamilies
		}
		if svc.Spec.IPFamilyPolicy == nil {
			svc.Spec.IPFamilyPolicy = old.Spec.IPFamilyPolicy
		}
	}
	if hasNodePorts(svc) && hasNodePorts(old) {
		for i := range svc.Spec.Ports {
			p := &svc.Spec.Ports[i]
			if p.NodePort != 0 {
				continue
			}
			for _, op := range old.Spec.Ports {
				if op.Port == p.Port && protocol(op) == protocol(*p) && op.NodePort != 0 {
					p.NodePort = op.NodePort
				}
			}
		}
	}
	if needsHealthCheckPort(svc) && needsHealthCheckPort(old) && svc.Spec.HealthCheckNodePort == 0 {
		svc.Spec.HealthCheckNodePort = old.Spec.HealthCheckNodePort
	}
	// Type changes: values that stayed as they were are dropped when the
	// new type does not use them.
	if !needsClusterIP(svc) && svc.Spec.ClusterIP != corev1.ClusterIPNone && svc.Spec.ClusterIP == old.Spec.ClusterIP {
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs, svc.Spec.IPFamilies, svc.Spec.IPFamilyPolicy = "", nil, nil, nil
	}
	if !hasNodePorts(svc) {
		for i := range svc.Spec.Ports {
			p := &svc.Spec.Ports[i]
			for _, op := range old.Spec.Ports {
				if p.NodePort != 0 && op.NodePort == p.NodePort {
					p.NodePort = 0
				}
			}
		}
	}
	if !hasNodePorts(svc) && svc.Spec.ExternalTrafficPolicy == old.Spec.ExternalTrafficPolicy {
		svc.Spec.ExternalTrafficPolicy = ""
	}
	if svcType(svc) != corev1.ServiceTypeLoadBalancer && reflect.DeepEqual(svc.Spec.AllocateLoadBalancerNodePorts, old.Spec.AllocateLoadBalancerNodePorts) {
		svc.Spec.AllocateLoadBalancerNodePorts = nil
	}
	if !needsHealthCheckPort(svc) && svc.Spec.HealthCheckNodePort == old.Spec.HealthCheckNodePort {
		svc.Spec.HealthCheckNodePort = 0
	}
}

func protocol(p corev1.ServicePort) corev1.Protocol {
	if p.Protocol == "" {
		return corev1.ProtocolTCP
	}
	return p.Protocol
}

// claimKeys are the claims a stored Service holds.
func claimKeys(s *corev1.Service) []string {
	var out []string
	seen := map[string]bool{}
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	if needsClusterIP(s) {
		for _, ip := range append([]string{s.Spec.ClusterIP}, s.Spec.ClusterIPs...) {
			if a, err := netip.ParseAddr(ip); err == nil {
				add(serviceipam.IPKey(a))
			}
		}
	}
	if hasNodePorts(s) {
		for _, p := range s.Spec.Ports {
			if p.NodePort != 0 {
				add(serviceipam.NodePortKey(p.NodePort))
			}
		}
		if s.Spec.HealthCheckNodePort != 0 {
			add(serviceipam.NodePortKey(s.Spec.HealthCheckNodePort))
		}
	}
	return out
}

// serviceRanges reads the ranges from the cluster configuration (the
// defaults if no server has stored one yet).
func (s *Store) serviceRanges(ctx context.Context) (serviceipam.IPRange, serviceipam.PortRange, error) {
	cfg, _, err := s.ClusterConfig(ctx)
	if err != nil {
		return serviceipam.IPRange{}, serviceipam.PortRange{}, err
	}
	cfg.Default()
	ips, err := serviceipam.ParseIPRange(cfg.ServiceCIDR)
	if err != nil {
		return ips, serviceipam.PortRange{}, fmt.Errorf("cluster config: %w", err)
	}
	ports, err := serviceipam.ParsePortRange(cfg.NodePortRange)
	if err != nil {
		return ips, ports, fmt.Errorf("cluster config: %w", err)
	}
	return ips, ports, nil
}

// serviceClaims allocates what svc needs and returns the transaction parts
// that claim what it holds beyond old (nil on create) and free what old
// held that svc no longer does.
func (s *Store) serviceClaims(ctx context.Context, old, svc *corev1.Service) (TxnParts, error) {
	normalizeClusterIPs(svc)
	ipr, ports, err := s.serviceRanges(ctx)
	if err != nil {
		return TxnParts{}, err
	}
	who := owner(svc)
	held := map[string]bool{}
	if old != nil {
		for _, k := range claimKeys(old) {
			held[k] = true
		}
	}
	var errs field.ErrorList
	// taken says whether key is claimed by another Service.
	taken := func(key string) (bool, error) {
		if held[key] {
			return false, nil
		}
		resp, err := s.c.Get(ctx, key)
		if err != nil {
			return false, fmt.Errorf("service %s: read claim %s: %w", who, key, err)
		}
		return len(resp.Kvs) > 0 && string(resp.Kvs[0].Value) != who, nil
	}

	if needsClusterIP(svc) {
		if svc.Spec.ClusterIP == "" {
			ips, err := serviceipam.FreeIPs(ctx, s.c, ipr, 1, nil)
			if err != nil {
				if errors.Is(err, serviceipam.ErrFull) {
					return TxnParts{}, apierrors.NewInternalError(err)
				}
				return TxnParts{}, err
			}
			svc.Spec.ClusterIP = ips[0].String()
			svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
		} else {
			path := field.NewPath("spec", "clusterIPs").Index(0)
			ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
			switch {
			case err != nil || !ip.Is4():
				errs = append(errs, field.Invalid(path, svc.Spec.ClusterIP, "must be a valid IPv4 address"))
			case !ipr.Contains(ip):
				errs = append(errs, field.Invalid(path, svc.Spec.ClusterIP, fmt.Sprintf("failed to allocate IP %s: provided IP is not in the valid range. The range of valid IPs is %s", ip, ipr)))
			default:
				t, err := taken(serviceipam.IPKey(ip))
				if err != nil {
					return TxnParts{}, err
				}
				if t {
					errs = append(errs, field.Invalid(path, svc.Spec.ClusterIP, fmt.Sprintf("failed to allocate IP %s: provided IP is already allocated", ip)))
				}
			}
		}
		if len(svc.Spec.IPFamilies) == 0 {
			svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
		}
		if svc.Spec.IPFamilyPolicy == nil {
			p := corev1.IPFamilyPolicySingleStack
			svc.Spec.IPFamilyPolicy = &p
		}
	}

	if hasNodePorts(svc) {
		// Requested ports first, so that allocation avoids them.
		want := map[int32]bool{}
		check := func(path *field.Path, port int32) error {
			if want[port] {
				return nil // the same port for another protocol of this Service
			}
			want[port] = true
			if !ports.Contains(port) {
				errs = append(errs, field.Invalid(path, port, fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %s", ports)))
				return nil
			}
			t, err := taken(serviceipam.NodePortKey(port))
			if err != nil {
				return err
			}
			if t {
				errs = append(errs, field.Invalid(path, port, "provided port is already allocated"))
			}
			return nil
		}
		for i, p := range svc.Spec.Ports {
			if p.NodePort != 0 {
				if err := check(field.NewPath("spec", "ports").Index(i).Child("nodePort"), p.NodePort); err != nil {
					return TxnParts{}, err
				}
			}
		}
		if svc.Spec.HealthCheckNodePort != 0 {
			if err := check(field.NewPath("spec", "healthCheckNodePort"), svc.Spec.HealthCheckNodePort); err != nil {
				return TxnParts{}, err
			}
		}
		// Ports without one: ports of one number but different protocols
		// share a nodePort, as in Kubernetes.
		byPort := map[int32]int32{}
		for _, p := range svc.Spec.Ports {
			if p.NodePort != 0 {
				byPort[p.Port] = p.NodePort
			}
		}
		var need []int
		for i, p := range svc.Spec.Ports {
			if p.NodePort == 0 && allocatesNodePorts(svc) {
				if np, ok := byPort[p.Port]; ok {
					if np > 0 {
						svc.Spec.Ports[i].NodePort = np
					}
					continue // -1: filled with the first port of its number
				}
				byPort[p.Port] = -1
				need = append(need, i)
			}
		}
		hc := needsHealthCheckPort(svc) && svc.Spec.HealthCheckNodePort == 0
		if n := len(need) + btoi(hc); n > 0 && len(errs) == 0 {
			got, err := serviceipam.FreePorts(ctx, s.c, ports, n, want)
			if err != nil {
				if errors.Is(err, serviceipam.ErrFull) {
					return TxnParts{}, apierrors.NewInternalError(err)
				}
				return TxnParts{}, err
			}
			num := map[int32]int32{}
			for j, i := range need {
				num[svc.Spec.Ports[i].Port] = got[j]
			}
			for i := range svc.Spec.Ports {
				if svc.Spec.Ports[i].NodePort == 0 && num[svc.Spec.Ports[i].Port] != 0 {
					svc.Spec.Ports[i].NodePort = num[svc.Spec.Ports[i].Port]
				}
			}
			if hc {
				svc.Spec.HealthCheckNodePort = got[n-1]
			}
		}
	}
	if len(errs) > 0 {
		return TxnParts{}, apierrors.NewInvalid(serviceGK, svc.Name, errs)
	}

	var p TxnParts
	now := map[string]bool{}
	for _, key := range claimKeys(svc) {
		now[key] = true
		if held[key] {
			continue
		}
		p.Cmps = append(p.Cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
		p.Ops = append(p.Ops, clientv3.OpPut(key, who))
	}
	for key := range held {
		if !now[key] {
			p.Ops = append(p.Ops, releaseOp(key, who))
		}
	}
	return p, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
