package api

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Defaults and validation of Service (v1), following the Kubernetes API
// server: SetDefaults_Service, the service REST strategy's IP-family
// defaulting, ValidateService and ValidateServiceUpdate. Ranges (is a
// clusterIP inside --service-cluster-ip-range, a nodePort inside
// --service-node-port-range, is it taken) are the allocator's, not these.

// DefaultSessionAffinityTimeout is ClientIP affinity's default timeout
// (3 hours), as Kubernetes.
const DefaultSessionAffinityTimeout = int32(10800)

// MaxSessionAffinityTimeout is the largest accepted timeoutSeconds (1 day).
const MaxSessionAffinityTimeout = int32(86400)

var (
	serviceTypes     = []string{string(corev1.ServiceTypeClusterIP), string(corev1.ServiceTypeNodePort), string(corev1.ServiceTypeLoadBalancer), string(corev1.ServiceTypeExternalName)}
	serviceProtocols = sets.New(corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP)
)

// ExternallyAccessible says whether traffic from outside the cluster can
// reach the Service (NodePort, LoadBalancer, or a ClusterIP with
// externalIPs); only those carry an externalTrafficPolicy.
func ExternallyAccessible(s *corev1.Service) bool {
	return s.Spec.Type == corev1.ServiceTypeLoadBalancer || s.Spec.Type == corev1.ServiceTypeNodePort ||
		(s.Spec.Type == corev1.ServiceTypeClusterIP && len(s.Spec.ExternalIPs) > 0)
}

// NeedsNodePorts says whether the Service type allocates nodePorts.
func NeedsNodePorts(s *corev1.Service) bool {
	switch s.Spec.Type {
	case corev1.ServiceTypeNodePort:
		return true
	case corev1.ServiceTypeLoadBalancer:
		return s.Spec.AllocateLoadBalancerNodePorts == nil || *s.Spec.AllocateLoadBalancerNodePorts
	}
	return false
}

// NeedsClusterIP says whether the Service gets a cluster IP allocated: not
// ExternalName, not headless.
func NeedsClusterIP(s *corev1.Service) bool {
	return s.Spec.Type != corev1.ServiceTypeExternalName && s.Spec.ClusterIP != corev1.ClusterIPNone
}

// NeedsHealthCheckNodePort says whether the Service gets a
// healthCheckNodePort: a LoadBalancer with externalTrafficPolicy Local.
func NeedsHealthCheckNodePort(s *corev1.Service) bool {
	return s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
}

// DefaultService fills the fields the Kubernetes API server defaults.
func DefaultService(s *corev1.Service) {
	sp := &s.Spec
	if sp.Type == "" {
		sp.Type = corev1.ServiceTypeClusterIP
	}
	if sp.SessionAffinity == "" {
		sp.SessionAffinity = corev1.ServiceAffinityNone
	}
	if sp.SessionAffinity == corev1.ServiceAffinityClientIP {
		if sp.SessionAffinityConfig == nil {
			sp.SessionAffinityConfig = &corev1.SessionAffinityConfig{}
		}
		if sp.SessionAffinityConfig.ClientIP == nil {
			sp.SessionAffinityConfig.ClientIP = &corev1.ClientIPConfig{}
		}
		if sp.SessionAffinityConfig.ClientIP.TimeoutSeconds == nil {
			t := DefaultSessionAffinityTimeout
			sp.SessionAffinityConfig.ClientIP.TimeoutSeconds = &t
		}
	}
	for i := range sp.Ports {
		p := &sp.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal == 0 ||
			p.TargetPort.Type == intstr.String && p.TargetPort.StrVal == "" {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
	if ExternallyAccessible(s) && sp.ExternalTrafficPolicy == "" {
		sp.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}
	if sp.Type != corev1.ServiceTypeExternalName && sp.InternalTrafficPolicy == nil {
		p := corev1.ServiceInternalTrafficPolicyCluster
		sp.InternalTrafficPolicy = &p
	}
	if sp.Type == corev1.ServiceTypeLoadBalancer && sp.AllocateLoadBalancerNodePorts == nil {
		t := true
		sp.AllocateLoadBalancerNodePorts = &t
	}
	// clusterIP and clusterIPs name the same primary IP; either may be given.
	if sp.ClusterIP != "" && len(sp.ClusterIPs) == 0 {
		sp.ClusterIPs = []string{sp.ClusterIP}
	} else if sp.ClusterIP == "" && len(sp.ClusterIPs) > 0 {
		sp.ClusterIP = sp.ClusterIPs[0]
	}
	// IP families, as the service REST layer fills them on a single-stack
	// IPv4 cluster (podnet is IPv4 only). ExternalName has none.
	if sp.Type == corev1.ServiceTypeExternalName {
		return
	}
	if sp.IPFamilyPolicy == nil {
		p := corev1.IPFamilyPolicySingleStack
		if sp.ClusterIP == corev1.ClusterIPNone && len(sp.Selector) == 0 {
			p = corev1.IPFamilyPolicyRequireDualStack
		}
		sp.IPFamilyPolicy = &p
	}
	if len(sp.IPFamilies) == 0 {
		sp.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	}
}

// ValidateService checks a Service as the Kubernetes API server does.
func ValidateService(s *corev1.Service) field.ErrorList {
	var errs field.ErrorList
	sp := &s.Spec
	spec := field.NewPath("spec")

	switch sp.Type {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName:
	default:
		errs = append(errs, field.NotSupported(spec.Child("type"), sp.Type, serviceTypes))
	}
	headless := sp.ClusterIP == corev1.ClusterIPNone
	if len(sp.Ports) == 0 && !headless && sp.Type != corev1.ServiceTypeExternalName {
		errs = append(errs, field.Required(spec.Child("ports"), ""))
	}
	errs = append(errs, validateClusterIPs(s)...)

	if sp.Type == corev1.ServiceTypeExternalName {
		cname := strings.TrimSuffix(sp.ExternalName, ".")
		if cname == "" {
			errs = append(errs, field.Required(spec.Child("externalName"), ""))
		} else {
			for _, m := range utilvalidation.IsDNS1123Subdomain(cname) {
				errs = append(errs, field.Invalid(spec.Child("externalName"), sp.ExternalName, m))
			}
		}
	}

	errs = append(errs, validateServicePorts(s)...)

	for k, v := range sp.Selector {
		sel := spec.Child("selector").Key(k)
		for _, m := range utilvalidation.IsQualifiedName(k) {
			errs = append(errs, field.Invalid(sel, k, m))
		}
		for _, m := range utilvalidation.IsValidLabelValue(v) {
			errs = append(errs, field.Invalid(sel, v, m))
		}
	}

	switch sp.SessionAffinity {
	case corev1.ServiceAffinityNone:
		if sp.SessionAffinityConfig != nil {
			errs = append(errs, field.Forbidden(spec.Child("sessionAffinityConfig"), fmt.Sprintf("must not be set when `sessionAffinity` is %s", corev1.ServiceAffinityNone)))
		}
	case corev1.ServiceAffinityClientIP:
		tp := spec.Child("sessionAffinityConfig", "clientIP", "timeoutSeconds")
		switch c := sp.SessionAffinityConfig; {
		case c == nil || c.ClientIP == nil || c.ClientIP.TimeoutSeconds == nil:
			errs = append(errs, field.Required(tp, ""))
		case *c.ClientIP.TimeoutSeconds <= 0 || *c.ClientIP.TimeoutSeconds > MaxSessionAffinityTimeout:
			errs = append(errs, field.Invalid(tp, *c.ClientIP.TimeoutSeconds, fmt.Sprintf("must be greater than 0 and less than %d", MaxSessionAffinityTimeout)))
		}
	default:
		errs = append(errs, field.NotSupported(spec.Child("sessionAffinity"), sp.SessionAffinity, []string{string(corev1.ServiceAffinityClientIP), string(corev1.ServiceAffinityNone)}))
	}

	for i, ip := range sp.ExternalIPs {
		errs = append(errs, validateNonSpecialIP(ip, spec.Child("externalIPs").Index(i))...)
	}

	// externalTrafficPolicy and healthCheckNodePort.
	etp := spec.Child("externalTrafficPolicy")
	if !ExternallyAccessible(s) {
		if sp.ExternalTrafficPolicy != "" {
			errs = append(errs, field.Invalid(etp, sp.ExternalTrafficPolicy, "may only be set for externally-accessible services"))
		}
	} else {
		switch sp.ExternalTrafficPolicy {
		case corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal:
		case "":
			errs = append(errs, field.Required(etp, ""))
		default:
			errs = append(errs, field.NotSupported(etp, sp.ExternalTrafficPolicy, []string{"Cluster", "Local"}))
		}
	}
	if sp.HealthCheckNodePort != 0 {
		hp := spec.Child("healthCheckNodePort")
		if !NeedsHealthCheckNodePort(s) {
			errs = append(errs, field.Invalid(hp, sp.HealthCheckNodePort, "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
		} else {
			for _, m := range utilvalidation.IsValidPortNum(int(sp.HealthCheckNodePort)) {
				errs = append(errs, field.Invalid(hp, sp.HealthCheckNodePort, m))
			}
		}
	}

	itp := spec.Child("internalTrafficPolicy")
	if sp.InternalTrafficPolicy == nil {
		if sp.Type != corev1.ServiceTypeExternalName {
			errs = append(errs, field.Required(itp, ""))
		}
	} else if p := *sp.InternalTrafficPolicy; p != corev1.ServiceInternalTrafficPolicyCluster && p != corev1.ServiceInternalTrafficPolicyLocal {
		errs = append(errs, field.NotSupported(itp, p, []string{"Cluster", "Local"}))
	}

	// LoadBalancer-only fields.
	lb := sp.Type == corev1.ServiceTypeLoadBalancer
	if sp.AllocateLoadBalancerNodePorts != nil && !lb {
		errs = append(errs, field.Forbidden(spec.Child("allocateLoadBalancerNodePorts"), "may only be used when `type` is 'LoadBalancer'"))
	}
	if lb && sp.AllocateLoadBalancerNodePorts == nil {
		errs = append(errs, field.Required(spec.Child("allocateLoadBalancerNodePorts"), ""))
	}
	if sp.LoadBalancerClass != nil {
		if !lb {
			errs = append(errs, field.Forbidden(spec.Child("loadBalancerClass"), "may only be used when `type` is 'LoadBalancer'"))
		} else {
			for _, m := range utilvalidation.IsQualifiedName(*sp.LoadBalancerClass) {
				errs = append(errs, field.Invalid(spec.Child("loadBalancerClass"), *sp.LoadBalancerClass, m))
			}
		}
	}
	if sp.LoadBalancerIP != "" {
		if !lb {
			errs = append(errs, field.Forbidden(spec.Child("loadBalancerIP"), "may only be used when `type` is 'LoadBalancer'"))
		} else if _, err := netip.ParseAddr(sp.LoadBalancerIP); err != nil {
			errs = append(errs, field.Invalid(spec.Child("loadBalancerIP"), sp.LoadBalancerIP, "must be a valid IP address"))
		}
	}
	if len(sp.LoadBalancerSourceRanges) > 0 {
		rp := spec.Child("loadBalancerSourceRanges")
		if !lb {
			errs = append(errs, field.Forbidden(rp, "may only be used when `type` is 'LoadBalancer'"))
		}
		for i, r := range sp.LoadBalancerSourceRanges {
			if _, err := netip.ParsePrefix(strings.TrimSpace(r)); err != nil {
				errs = append(errs, field.Invalid(rp.Index(i), r, "must be a CIDR, e.g. 192.168.0.0/16"))
			}
		}
	}
	for i, ing := range s.Status.LoadBalancer.Ingress {
		ip := field.NewPath("status", "loadBalancer", "ingress").Index(i)
		if ing.IP != "" {
			if _, err := netip.ParseAddr(ing.IP); err != nil {
				errs = append(errs, field.Invalid(ip.Child("ip"), ing.IP, "must be a valid IP address"))
			}
		}
		if ing.Hostname != "" {
			for _, m := range utilvalidation.IsDNS1123Subdomain(ing.Hostname) {
				errs = append(errs, field.Invalid(ip.Child("hostname"), ing.Hostname, m))
			}
		}
	}
	return errs
}

// validateClusterIPs checks clusterIP, clusterIPs, ipFamilies and
// ipFamilyPolicy for an IPv4 single-stack cluster.
func validateClusterIPs(s *corev1.Service) field.ErrorList {
	var errs field.ErrorList
	sp := &s.Spec
	spec := field.NewPath("spec")
	cp, csp := spec.Child("clusterIP"), spec.Child("clusterIPs")

	if sp.Type == corev1.ServiceTypeExternalName {
		if sp.ClusterIP != "" {
			errs = append(errs, field.Forbidden(cp, "may not be set for ExternalName services"))
		}
		if len(sp.ClusterIPs) > 0 {
			errs = append(errs, field.Forbidden(csp, "may not be set for ExternalName services"))
		}
		if sp.IPFamilyPolicy != nil {
			errs = append(errs, field.Forbidden(spec.Child("ipFamilyPolicy"), "may not be set for ExternalName services"))
		}
		if len(sp.IPFamilies) > 0 {
			errs = append(errs, field.Forbidden(spec.Child("ipFamilies"), "may not be set for ExternalName services"))
		}
		return errs
	}
	if len(sp.ClusterIPs) > 0 && sp.ClusterIP != sp.ClusterIPs[0] {
		errs = append(errs, field.Invalid(csp, sp.ClusterIPs, "first value must match `clusterIP`"))
	}
	if len(sp.ClusterIPs) > 2 {
		errs = append(errs, field.Invalid(csp, sp.ClusterIPs, "may only hold up to 2 values"))
	}
	headless := sp.ClusterIP == corev1.ClusterIPNone
	if headless {
		if len(sp.ClusterIPs) > 1 {
			errs = append(errs, field.Invalid(csp, sp.ClusterIPs, "'None' must be the first and only value"))
		}
		switch sp.Type {
		case corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
			errs = append(errs, field.Invalid(cp, sp.ClusterIP, fmt.Sprintf("may not be set to 'None' for %s services", sp.Type)))
		}
		if len(sp.ExternalIPs) > 0 {
			errs = append(errs, field.Forbidden(spec.Child("externalIPs"), "may not be set when `clusterIP` is 'None'"))
		}
	}
	seen := sets.New[string]()
	for i, ip := range sp.ClusterIPs {
		if ip == corev1.ClusterIPNone {
			continue
		}
		a, err := netip.ParseAddr(ip)
		if err != nil || a.Zone() != "" {
			errs = append(errs, field.Invalid(csp.Index(i), ip, "must be a valid IP address, or 'None'"))
			continue
		}
		if !a.Is4() {
			errs = append(errs, field.Invalid(csp.Index(i), ip, "IPv6 is not configured on this cluster (podnet is IPv4 single-stack)"))
		}
		if seen.Has(a.String()) {
			errs = append(errs, field.Duplicate(csp.Index(i), ip))
		}
		seen.Insert(a.String())
	}
	if sp.ClusterIP != "" && !headless && len(sp.ClusterIPs) == 0 {
		if _, err := netip.ParseAddr(sp.ClusterIP); err != nil {
			errs = append(errs, field.Invalid(cp, sp.ClusterIP, "must be a valid IP address, or 'None'"))
		}
	}

	pp := spec.Child("ipFamilyPolicy")
	if sp.IPFamilyPolicy == nil {
		errs = append(errs, field.Required(pp, ""))
	} else {
		switch p := *sp.IPFamilyPolicy; p {
		case corev1.IPFamilyPolicySingleStack, corev1.IPFamilyPolicyPreferDualStack:
		case corev1.IPFamilyPolicyRequireDualStack:
			// Kubernetes lets only headless Services without a selector
			// require both families on a single-stack cluster.
			if !(headless && len(sp.Selector) == 0) {
				errs = append(errs, field.Invalid(pp, p, "this cluster is not configured for dual-stack services"))
			}
		default:
			errs = append(errs, field.NotSupported(pp, p, []string{"SingleStack", "PreferDualStack", "RequireDualStack"}))
		}
	}
	fp := spec.Child("ipFamilies")
	if len(sp.IPFamilies) > 2 {
		errs = append(errs, field.Invalid(fp, sp.IPFamilies, "may only hold up to 2 values"))
	}
	fams := sets.New[corev1.IPFamily]()
	for i, f := range sp.IPFamilies {
		switch f {
		case corev1.IPv4Protocol:
		case corev1.IPv6Protocol:
			errs = append(errs, field.Invalid(fp.Index(i), f, "not configured on this cluster (podnet is IPv4 single-stack)"))
		default:
			errs = append(errs, field.NotSupported(fp.Index(i), f, []string{"IPv4", "IPv6"}))
		}
		if fams.Has(f) {
			errs = append(errs, field.Duplicate(fp.Index(i), f))
		}
		fams.Insert(f)
	}
	return errs
}

func validateServicePorts(s *corev1.Service) field.ErrorList {
	var errs field.ErrorList
	sp := &s.Spec
	pp := field.NewPath("spec", "ports")
	names := sets.New[string]()
	type key struct {
		port  int32
		proto corev1.Protocol
	}
	ports := map[key]bool{}
	nodePorts := map[key]bool{}
	for i := range sp.Ports {
		p := &sp.Ports[i]
		ip := pp.Index(i)
		if len(sp.Ports) > 1 && p.Name == "" {
			errs = append(errs, field.Required(ip.Child("name"), "names are required when a Service has more than one port"))
		} else if p.Name != "" {
			for _, m := range utilvalidation.IsDNS1123Label(p.Name) {
				errs = append(errs, field.Invalid(ip.Child("name"), p.Name, m))
			}
			if names.Has(p.Name) {
				errs = append(errs, field.Duplicate(ip.Child("name"), p.Name))
			}
			names.Insert(p.Name)
		}
		for _, m := range utilvalidation.IsValidPortNum(int(p.Port)) {
			errs = append(errs, field.Invalid(ip.Child("port"), p.Port, m))
		}
		if !serviceProtocols.Has(p.Protocol) {
			errs = append(errs, field.NotSupported(ip.Child("protocol"), p.Protocol, []string{"TCP", "UDP", "SCTP"}))
		}
		errs = append(errs, validatePortNumOrName(p.TargetPort, ip.Child("targetPort"))...)
		if p.AppProtocol != nil {
			for _, m := range utilvalidation.IsQualifiedName(*p.AppProtocol) {
				errs = append(errs, field.Invalid(ip.Child("appProtocol"), *p.AppProtocol, m))
			}
		}
		k := key{p.Port, p.Protocol}
		if ports[k] {
			errs = append(errs, field.Duplicate(ip, fmt.Sprintf("%d/%s", p.Port, p.Protocol)))
		}
		ports[k] = true
		if p.NodePort != 0 {
			np := ip.Child("nodePort")
			if sp.Type != corev1.ServiceTypeNodePort && sp.Type != corev1.ServiceTypeLoadBalancer {
				errs = append(errs, field.Forbidden(np, fmt.Sprintf("may not be used when `type` is '%s'", sp.Type)))
			} else {
				for _, m := range utilvalidation.IsValidPortNum(int(p.NodePort)) {
					errs = append(errs, field.Invalid(np, p.NodePort, m))
				}
			}
			nk := key{p.NodePort, p.Protocol}
			if nodePorts[nk] {
				errs = append(errs, field.Duplicate(np, p.NodePort))
			}
			nodePorts[nk] = true
		}
	}
	return errs
}

// validatePortNumOrName checks a targetPort: a port number or an IANA
// service name (a container port's name).
func validatePortNumOrName(p intstr.IntOrString, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch p.Type {
	case intstr.Int:
		for _, m := range utilvalidation.IsValidPortNum(int(p.IntVal)) {
			errs = append(errs, field.Invalid(path, p.IntVal, m))
		}
	case intstr.String:
		for _, m := range utilvalidation.IsValidPortName(p.StrVal) {
			errs = append(errs, field.Invalid(path, p.StrVal, m))
		}
	default:
		errs = append(errs, field.Invalid(path, p, "must be a port number or a port name"))
	}
	return errs
}

// validateNonSpecialIP refuses what can never be an external address.
func validateNonSpecialIP(ip string, path *field.Path) field.ErrorList {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Zone() != "" {
		return field.ErrorList{field.Invalid(path, ip, "must be a valid IP address")}
	}
	switch {
	case a.IsUnspecified():
		return field.ErrorList{field.Invalid(path, ip, "may not be unspecified (0.0.0.0)")}
	case a.IsLoopback():
		return field.ErrorList{field.Invalid(path, ip, "may not be in the loopback range (127.0.0.0/8, ::1/128)")}
	case a.IsLinkLocalUnicast():
		return field.ErrorList{field.Invalid(path, ip, "may not be in the link-local range (169.254.0.0/16, fe80::/10)")}
	case a.IsLinkLocalMulticast():
		return field.ErrorList{field.Invalid(path, ip, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")}
	}
	return nil
}

// validateServiceUpdate allows what Kubernetes allows: the cluster IP and
// the primary IP family are immutable once set, except that a change to or
// from type ExternalName releases or assigns them. (The store carries
// allocated values into an update that leaves them empty before this runs.)
func validateServiceUpdate(old, new *corev1.Service) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if old.Spec.Type == corev1.ServiceTypeExternalName || new.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	if old.Spec.ClusterIP != "" && new.Spec.ClusterIP != old.Spec.ClusterIP {
		errs = append(errs, field.Invalid(spec.Child("clusterIPs").Index(0), new.Spec.ClusterIP, "may not change once set"))
	}
	if len(old.Spec.IPFamilies) > 0 && len(new.Spec.IPFamilies) > 0 && old.Spec.IPFamilies[0] != new.Spec.IPFamilies[0] {
		errs = append(errs, field.Invalid(spec.Child("ipFamilies").Index(0), new.Spec.IPFamilies[0], "may not change once set"))
	}
	return errs
}
