// Package route compiles Ingresses, Services, EndpointSlices, Secrets and
// IngressClasses into an immutable routing table (Build) and answers, for
// a request's host and path, which route serves it (Table.Match) and, for
// a TLS ClientHello's server name, which certificate (Table.Certificate).
// It is pure: no I/O, no clock, no goroutines. The ingress proxy swaps a
// new *Table in atomically on every change, so a reload is one pointer
// store.
//
// The semantics are Ingress v1's, with ingress-nginx's choices where the
// specification leaves room:
//   - hosts: exact, or a wildcard "*.foo.com" matching exactly one label;
//     the Host header (port stripped, case-folded) picks the route;
//   - pathType Exact; Prefix matched element by element ("/foo" matches
//     "/foo" and "/foo/bar", not "/foobar"; a trailing slash is ignored);
//     ImplementationSpecific is Prefix, or a case-insensitive regex
//     anchored at the start under use-regex (rewrite-target implies it);
//   - the longest match wins, Exact beats Prefix on a tie;
//   - rules of several Ingresses for one host merge; on a conflict (same
//     host, path and pathType) the oldest Ingress wins (creationTimestamp,
//     then namespace/name) and the loser gets a Problem;
//   - canary Ingresses (annotation canary: "true") attach to the main
//     route of the same host and path instead of competing with it.
package route

import (
	"crypto/tls"
	"regexp"

	"github.com/podnet/podnet/internal/ingress/annotations"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
)

// ControllerName is the IngressClass controller podnet serves.
const ControllerName = "podnet.io/ingress-controller"

// ClassName is the IngressClass podnet creates.
const ClassName = "podnet"

// Input is everything Build reads. Slices may be in any order.
type Input struct {
	Ingresses      []*networkingv1.Ingress
	IngressClasses []*networkingv1.IngressClass
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Secrets        []*corev1.Secret
}

// PathType is an Ingress path's type after ImplementationSpecific is
// resolved: Exact, Prefix or Regex.
type PathType string

const (
	Exact  PathType = "Exact"
	Prefix PathType = "Prefix"
	Regex  PathType = "Regex"
)

// Endpoint is one upstream address of a Backend.
type Endpoint struct {
	Addr        string // "10.244.1.5:8080" ("[fd00::5]:8080")
	Node        string
	Terminating bool // draining: no new requests, unless nothing else is left
}

// Backend is a Service port a route sends requests to.
type Backend struct {
	Namespace, Service string
	// Port is the Service port as the Ingress wrote it: a number ("80")
	// or a name ("http").
	Port string
	// Endpoints are the ready endpoints first, then terminating ones that
	// are still serving; empty when none is ready (the proxy answers 503).
	Endpoints []Endpoint
	// Err says why the backend has no endpoints when that is a
	// configuration error (a missing Service or port); "" otherwise.
	Err string
}

// Key names a backend for metrics and logs: "ns-svc-port", as
// ingress-nginx names its upstreams.
func (b *Backend) Key() string { return b.Namespace + "-" + b.Service + "-" + b.Port }

// Canary is an alternative backend of a route, from a canary Ingress.
type Canary struct {
	Ingress types.NamespacedName
	Backend *Backend
	Config  *annotations.Config // CanaryByHeader, CanaryByCookie, CanaryWeight...
}

// Route is one path of one host.
type Route struct {
	Ingress  types.NamespacedName
	Host     string // as in the rule: "foo.com", "*.foo.com", or "" for any host
	Path     string // as in the rule ("/" when empty)
	PathType PathType
	Regex    *regexp.Regexp // PathType Regex: "(?i)^(?:" + Path + ")"
	Backend  *Backend
	Config   *annotations.Config
	Canaries []*Canary
	// DefaultBackend is the Service named by the Ingress's default-backend
	// annotation (same namespace, its first TCP port), resolved; nil
	// without the annotation. The proxy sends a request there when Backend
	// has no endpoints, and for the status codes of custom-http-errors.
	DefaultBackend *Backend
	// TLS: the host is in a tls section of an Ingress (the HTTP side
	// redirects to HTTPS with 308 unless ssl-redirect is "false").
	TLS bool
}

// Match is the result of Table.Match.
type Match struct {
	Route *Route
	// Groups are the regex's submatches of the path (Groups[0] is the
	// whole match) for PathType Regex; nil otherwise.
	Groups []string
}

// Problem is a reason an Ingress is not (fully) served: a conflict lost,
// a missing Service, port or Secret, a bad annotation. The status loop
// reports it on the Ingress.
type Problem struct {
	Ingress types.NamespacedName
	Message string
}

// Table is a compiled, immutable routing table. Its zero value matches
// nothing. Build returns a *Table; its methods are safe for concurrent use.
type Table struct {
	tableData
}

// Match returns the route for host (a Host header: a port and letter case
// are ignored) and path (the request's URL path, not decoded twice), or a
// Match with a nil Route when nothing matches (then DefaultBackend
// applies).
func (t *Table) Match(host, path string) Match { return t.match(host, path) }

// Certificate returns the certificate for a ClientHello's server name:
// the Secret of the tls section naming the host (exact, then wildcard), or
// nil (the proxy then serves its built-in default certificate).
func (t *Table) Certificate(serverName string) *tls.Certificate { return t.certificate(serverName) }

// DefaultBackend is the backend for requests no route matches: the
// spec.defaultBackend of the oldest served Ingress that has one, or nil
// (the proxy answers 404 from its built-in default backend).
func (t *Table) DefaultBackend() *Backend { return t.defaultBackend }

// Routes lists every route, sorted by host, then path, then type (for
// golden tests and `describe`).
func (t *Table) Routes() []*Route { return t.routes }

// Served reports whether the Ingress is one podnet serves: its class
// (spec.ingressClassName, else the legacy kubernetes.io/ingress.class
// annotation) is an IngressClass whose controller is ControllerName, or it
// names none and such a class is marked default
// (ingressclass.kubernetes.io/is-default-class: "true").
func Served(ing *networkingv1.Ingress, classes []*networkingv1.IngressClass) bool {
	return served(ing, classes)
}

// Build compiles in into a table and the problems found. It never fails:
// what cannot be served is left out and reported.
func Build(in Input) (*Table, []Problem) { return build(in) }
