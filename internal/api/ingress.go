package api

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/podnet/podnet/internal/ingress/annotations"
	networkingv1 "k8s.io/api/networking/v1"
	pathvalidation "k8s.io/apimachinery/pkg/api/validation/path"
	"k8s.io/apimachinery/pkg/util/sets"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Ingress objects podnet knows by name.
const (
	// AnnotationIngressClass is the legacy way an Ingress names its class,
	// before spec.ingressClassName.
	AnnotationIngressClass = "kubernetes.io/ingress.class"
	// AnnotationDefaultIngressClass marks the IngressClass of Ingresses
	// that name none.
	AnnotationDefaultIngressClass = "ingressclass.kubernetes.io/is-default-class"
	// AnnotationIngressProblems is where the ingress-status controller
	// writes why an Ingress is not (fully) served: one problem per line,
	// sorted. Absent when there is none. `describe ingress` shows it.
	AnnotationIngressProblems = "ingress.podnet.io/problems"
	// IngressNamespace/IngressService is the Service in front of every
	// node's ingress proxy (ports http 80 and https 443, no selector), as
	// ingress-nginx's controller Service: type LoadBalancer, so the
	// cluster's load-balancer range gives the Ingresses one address; its
	// EndpointSlice IngressNodesSlice lists the Ready nodes' addresses and
	// is kept by the ingress-status controller (managed-by
	// IngressManagedBy).
	IngressNamespace  = "kube-system"
	IngressService    = "podnet-ingress"
	IngressNodesSlice = "podnet-ingress-nodes"
	IngressManagedBy  = "ingress-status.podnet.io"
)

var supportedPathTypes = []string{
	string(networkingv1.PathTypeExact),
	string(networkingv1.PathTypeImplementationSpecific),
	string(networkingv1.PathTypePrefix),
}

// Path sequences the API server refuses in Exact and Prefix paths.
var (
	invalidPathSequences = []string{"//", "/./", "/../", "%2f", "%2F"}
	invalidPathSuffixes  = []string{"/..", "/."}
)

// pathChar reports whether c may appear in an Exact or Prefix path: the
// characters of a URL path (RFC 3986 unreserved, percent escapes and the
// sub-delimiters that are not regular-expression syntax). Regular
// expressions belong in ImplementationSpecific paths (with use-regex), as
// ingress-nginx's strict path validation requires.
func pathChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~%!&',;=:@/", c) >= 0
}

// ValidateIngress checks an Ingress as the API server does (hosts, paths,
// path types, backends, TLS, class) and its nginx.ingress.kubernetes.io
// annotations as ingress-nginx's admission check does: a bad value or a
// snippet is an error naming the annotation.
func ValidateIngress(ing *networkingv1.Ingress) field.ErrorList {
	spec := field.NewPath("spec")
	var errs field.ErrorList
	if len(ing.Spec.Rules) == 0 && ing.Spec.DefaultBackend == nil {
		errs = append(errs, field.Invalid(spec, ing.Spec.Rules, "either `defaultBackend` or `rules` must be specified"))
	}
	if ing.Spec.DefaultBackend != nil {
		errs = append(errs, validateIngressBackend(ing.Spec.DefaultBackend, spec.Child("defaultBackend"))...)
	}
	for i, r := range ing.Spec.Rules {
		rp := spec.Child("rules").Index(i)
		if r.Host != "" {
			errs = append(errs, validateIngressHost(r.Host, rp.Child("host"))...)
		}
		if r.HTTP == nil {
			continue
		}
		hp := rp.Child("http")
		if len(r.HTTP.Paths) == 0 {
			errs = append(errs, field.Required(hp.Child("paths"), ""))
		}
		for j := range r.HTTP.Paths {
			errs = append(errs, validateIngressPath(&r.HTTP.Paths[j], hp.Child("paths").Index(j))...)
		}
	}
	for i, t := range ing.Spec.TLS {
		tp := spec.Child("tls").Index(i)
		for j, h := range t.Hosts {
			errs = append(errs, validateIngressHost(h, tp.Child("hosts").Index(j))...)
		}
		if t.SecretName != "" {
			for _, m := range utilvalidation.IsDNS1123Subdomain(t.SecretName) {
				errs = append(errs, field.Invalid(tp.Child("secretName"), t.SecretName, m))
			}
		}
	}
	if c := ing.Spec.IngressClassName; c != nil {
		for _, m := range utilvalidation.IsDNS1123Subdomain(*c) {
			errs = append(errs, field.Invalid(spec.Child("ingressClassName"), *c, m))
		}
		if a, ok := ing.Annotations[AnnotationIngressClass]; ok && a != *c {
			errs = append(errs, field.Invalid(field.NewPath("metadata", "annotations").Key(AnnotationIngressClass), a, "must match `ingressClassName` when both are specified"))
		}
	}
	for i, in := range ing.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			if _, err := netip.ParseAddr(in.IP); err != nil {
				errs = append(errs, field.Invalid(field.NewPath("status", "loadBalancer", "ingress").Index(i).Child("ip"), in.IP, "must be a valid IP address"))
			}
		}
	}
	_, annErrs, _ := annotations.Parse(ing)
	return append(errs, annErrs...)
}

// IngressWarnings are the warnings `apply` and `create` print for an
// Ingress, as kubectl prints the API server's: unknown
// nginx.ingress.kubernetes.io annotations, ignored by podnet.
func IngressWarnings(ing *networkingv1.Ingress) []string {
	_, _, warns := annotations.Parse(ing)
	return warns
}

// validateIngressHost checks a rule's or a TLS section's host: a DNS-1123
// subdomain or a wildcard "*.foo.com", never an IP address.
func validateIngressHost(h string, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if _, err := netip.ParseAddr(h); err == nil {
		return field.ErrorList{field.Invalid(p, h, "must be a DNS name, not an IP address")}
	}
	check := utilvalidation.IsDNS1123Subdomain
	if strings.Contains(h, "*") {
		check = utilvalidation.IsWildcardDNS1123Subdomain
	}
	for _, m := range check(h) {
		errs = append(errs, field.Invalid(p, h, m))
	}
	return errs
}

func validateIngressPath(hp *networkingv1.HTTPIngressPath, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if hp.PathType == nil {
		errs = append(errs, field.Required(p.Child("pathType"), "pathType must be specified"))
	} else {
		switch *hp.PathType {
		case networkingv1.PathTypeExact, networkingv1.PathTypePrefix:
			errs = append(errs, validateStrictPath(hp.Path, p.Child("path"))...)
		case networkingv1.PathTypeImplementationSpecific:
			if hp.Path != "" && !strings.HasPrefix(hp.Path, "/") {
				errs = append(errs, field.Invalid(p.Child("path"), hp.Path, "must be an absolute path"))
			}
		default:
			errs = append(errs, field.NotSupported(p.Child("pathType"), *hp.PathType, supportedPathTypes))
		}
	}
	return append(errs, validateIngressBackend(&hp.Backend, p.Child("backend"))...)
}

// validateStrictPath checks an Exact or Prefix path.
func validateStrictPath(path string, p *field.Path) field.ErrorList {
	if !strings.HasPrefix(path, "/") {
		return field.ErrorList{field.Invalid(p, path, "must be an absolute path")}
	}
	var errs field.ErrorList
	for _, s := range invalidPathSequences {
		if strings.Contains(path, s) {
			errs = append(errs, field.Invalid(p, path, fmt.Sprintf("must not contain '%s'", s)))
		}
	}
	for _, s := range invalidPathSuffixes {
		if strings.HasSuffix(path, s) {
			errs = append(errs, field.Invalid(p, path, fmt.Sprintf("cannot end with '%s'", s)))
		}
	}
	for i := 0; i < len(path); i++ {
		if !pathChar(path[i]) {
			errs = append(errs, field.Invalid(p, path, fmt.Sprintf("must not contain %q with pathType Exact or Prefix (a regular expression needs pathType ImplementationSpecific and the annotation %suse-regex)", path[i], annotations.Prefix)))
			break
		}
	}
	return errs
}

func validateIngressBackend(b *networkingv1.IngressBackend, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case b.Resource != nil && b.Service != nil:
		errs = append(errs, field.Invalid(p, "", "cannot set both resource and service backends"))
	case b.Resource != nil:
		rp := p.Child("resource")
		if b.Resource.APIGroup != nil {
			for _, m := range utilvalidation.IsDNS1123Subdomain(*b.Resource.APIGroup) {
				errs = append(errs, field.Invalid(rp.Child("apiGroup"), *b.Resource.APIGroup, m))
			}
		}
		if b.Resource.Kind == "" {
			errs = append(errs, field.Required(rp.Child("kind"), "kind is required"))
		} else {
			for _, m := range pathvalidation.ValidatePathSegmentName(b.Resource.Kind, false) {
				errs = append(errs, field.Invalid(rp.Child("kind"), b.Resource.Kind, m))
			}
		}
		if b.Resource.Name == "" {
			errs = append(errs, field.Required(rp.Child("name"), "name is required"))
		} else {
			for _, m := range pathvalidation.ValidatePathSegmentName(b.Resource.Name, false) {
				errs = append(errs, field.Invalid(rp.Child("name"), b.Resource.Name, m))
			}
		}
	case b.Service != nil:
		sp := p.Child("service")
		if b.Service.Name == "" {
			errs = append(errs, field.Required(sp.Child("name"), ""))
		} else {
			for _, m := range utilvalidation.IsDNS1035Label(b.Service.Name) {
				errs = append(errs, field.Invalid(sp.Child("name"), b.Service.Name, m))
			}
		}
		port := b.Service.Port
		switch {
		case port.Name != "" && port.Number != 0:
			errs = append(errs, field.Invalid(sp.Child("port"), port, "cannot set both port name & port number"))
		case port.Name != "":
			for _, m := range utilvalidation.IsValidPortName(port.Name) {
				errs = append(errs, field.Invalid(sp.Child("port", "name"), port.Name, m))
			}
		case port.Number != 0:
			for _, m := range utilvalidation.IsValidPortNum(int(port.Number)) {
				errs = append(errs, field.Invalid(sp.Child("port", "number"), port.Number, m))
			}
		default:
			errs = append(errs, field.Required(sp.Child("port"), "port name or number is required"))
		}
	default:
		errs = append(errs, field.Invalid(p, "", "resource or service backend is required"))
	}
	return errs
}

// IngressHosts is an Ingress's HOSTS cell, as kubectl: the rules' hosts
// ("*" for a rule without one), at most four, then "+ N more...".
func IngressHosts(ing *networkingv1.Ingress) string {
	var hosts []string
	for _, r := range ing.Spec.Rules {
		h := r.Host
		if h == "" {
			h = "*"
		}
		hosts = append(hosts, h)
	}
	if len(hosts) == 0 {
		return "*"
	}
	if len(hosts) > 4 {
		return strings.Join(hosts[:4], ",") + fmt.Sprintf(" + %d more...", len(hosts)-4)
	}
	return strings.Join(hosts, ",")
}

// IngressAddress is an Ingress's ADDRESS cell: its status.loadBalancer
// addresses (IPs, or hostnames), joined by ",".
func IngressAddress(ing *networkingv1.Ingress) string {
	var out []string
	for _, in := range ing.Status.LoadBalancer.Ingress {
		switch {
		case in.IP != "":
			out = append(out, in.IP)
		case in.Hostname != "":
			out = append(out, in.Hostname)
		}
	}
	return strings.Join(out, ",")
}

// IngressClassOf is an Ingress's class as written: spec.ingressClassName,
// else the legacy annotation, else "".
func IngressClassOf(ing *networkingv1.Ingress) string {
	if c := ing.Spec.IngressClassName; c != nil && *c != "" {
		return *c
	}
	return ing.Annotations[AnnotationIngressClass]
}

func ingressColumns() []Column {
	in := func(f func(*networkingv1.Ingress) string) func(Object) string {
		return func(o Object) string { return f(o.(*networkingv1.Ingress)) }
	}
	return []Column{
		nameColumn,
		{Name: "CLASS", Cell: in(func(ing *networkingv1.Ingress) string { return orNone(IngressClassOf(ing)) })},
		{Name: "HOSTS", Cell: in(IngressHosts)},
		{Name: "ADDRESS", Cell: in(IngressAddress)},
		{Name: "PORTS", Cell: in(func(ing *networkingv1.Ingress) string {
			if len(ing.Spec.TLS) > 0 {
				return "80, 443"
			}
			return "80"
		})},
		ageColumn,
	}
}

// IngressClassIsDefault reports whether c is marked as the default class.
func IngressClassIsDefault(c *networkingv1.IngressClass) bool {
	return c.Annotations[AnnotationDefaultIngressClass] == "true"
}

// DefaultIngressClass defaults parameters.scope to Cluster, as the API
// server does.
func DefaultIngressClass(c *networkingv1.IngressClass) {
	if p := c.Spec.Parameters; p != nil && p.Scope == nil {
		s := networkingv1.IngressClassParametersReferenceScopeCluster
		p.Scope = &s
	}
}

// maxIngressClassController is the longest spec.controller.
const maxIngressClassController = 250

var ingressClassScopes = sets.New(networkingv1.IngressClassParametersReferenceScopeCluster, networkingv1.IngressClassParametersReferenceScopeNamespace)

// ValidateIngressClass checks an IngressClass as the API server does.
func ValidateIngressClass(c *networkingv1.IngressClass) field.ErrorList {
	sp := field.NewPath("spec")
	var errs field.ErrorList
	if len(c.Spec.Controller) > maxIngressClassController {
		errs = append(errs, field.TooLong(sp.Child("controller"), "", maxIngressClassController))
	}
	errs = append(errs, utilvalidation.IsDomainPrefixedPath(sp.Child("controller"), c.Spec.Controller)...)
	if v, ok := c.Annotations[AnnotationDefaultIngressClass]; ok && v != "true" && v != "false" {
		errs = append(errs, field.NotSupported(field.NewPath("metadata", "annotations").Key(AnnotationDefaultIngressClass), v, []string{"true", "false"}))
	}
	p := c.Spec.Parameters
	if p == nil {
		return errs
	}
	pp := sp.Child("parameters")
	if p.APIGroup != nil {
		for _, m := range utilvalidation.IsDNS1123Subdomain(*p.APIGroup) {
			errs = append(errs, field.Invalid(pp.Child("apiGroup"), *p.APIGroup, m))
		}
	}
	if p.Kind == "" {
		errs = append(errs, field.Required(pp.Child("kind"), "kind is required"))
	}
	if p.Name == "" {
		errs = append(errs, field.Required(pp.Child("name"), "name is required"))
	}
	if p.Scope == nil {
		errs = append(errs, field.Required(pp.Child("scope"), ""))
		return errs
	}
	scope := *p.Scope
	if !ingressClassScopes.Has(scope) {
		errs = append(errs, field.NotSupported(pp.Child("scope"), scope, sets.List(ingressClassScopes)))
	}
	switch {
	case scope == networkingv1.IngressClassParametersReferenceScopeNamespace && (p.Namespace == nil || *p.Namespace == ""):
		errs = append(errs, field.Required(pp.Child("namespace"), "`parameters.scope` is set to 'Namespace'"))
	case scope == networkingv1.IngressClassParametersReferenceScopeCluster && p.Namespace != nil:
		errs = append(errs, field.Forbidden(pp.Child("namespace"), "`parameters.scope` is set to 'Cluster'"))
	case p.Namespace != nil:
		for _, m := range utilvalidation.IsDNS1123Label(*p.Namespace) {
			errs = append(errs, field.Invalid(pp.Child("namespace"), *p.Namespace, m))
		}
	}
	return errs
}

// validateIngressClassUpdate: spec.controller is immutable.
func validateIngressClassUpdate(old, new *networkingv1.IngressClass) field.ErrorList {
	if old.Spec.Controller != new.Spec.Controller {
		return field.ErrorList{field.Invalid(field.NewPath("spec", "controller"), new.Spec.Controller, "field is immutable")}
	}
	return nil
}

// IngressClassParameters is an IngressClass's PARAMETERS cell, as kubectl:
// "<none>" or `Kind.group/name` ("ConfigMap/foo", "IngressParameters.k8s.example.com/p").
func IngressClassParameters(c *networkingv1.IngressClass) string {
	p := c.Spec.Parameters
	if p == nil {
		return None
	}
	s := p.Kind
	if p.APIGroup != nil && *p.APIGroup != "" {
		s += "." + *p.APIGroup
	}
	return s + "/" + p.Name
}

func ingressClassColumns() []Column {
	ic := func(f func(*networkingv1.IngressClass) string) func(Object) string {
		return func(o Object) string { return f(o.(*networkingv1.IngressClass)) }
	}
	return []Column{
		nameColumn,
		{Name: "CONTROLLER", Cell: ic(func(c *networkingv1.IngressClass) string { return c.Spec.Controller })},
		{Name: "PARAMETERS", Cell: ic(IngressClassParameters)},
		ageColumn,
	}
}

// IngressProblems returns the problems the ingress-status controller
// reported on an Ingress (annotation AnnotationIngressProblems).
func IngressProblems(ing *networkingv1.Ingress) []string {
	v := ing.Annotations[AnnotationIngressProblems]
	if v == "" {
		return nil
	}
	return strings.Split(v, "\n")
}

// JoinIngressProblems is the AnnotationIngressProblems value of a set of
// problem messages: sorted, deduplicated, one per line ("" for none).
func JoinIngressProblems(msgs []string) string {
	s := sets.New(msgs...)
	s.Delete("")
	out := sets.List(s)
	sort.Strings(out)
	return strings.Join(out, "\n")
}
