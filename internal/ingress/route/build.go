package route

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/podnet/podnet/internal/ingress/annotations"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Build, in detail (the choices the package doc leaves out):
//
//   - Ingresses are taken oldest first (creationTimestamp, then
//     namespace/name); an Ingress whose annotations do not parse is left
//     out, with one Problem per bad annotation.
//   - Conflicts are per host, path and resolved type; Prefix paths compare
//     without trailing slashes ("/foo" and "/foo/" conflict). A path listed
//     twice in one Ingress keeps its first entry.
//   - Canary Ingresses never make routes, server names, certificates or
//     default backends: each of their paths attaches to the main route of
//     the same host whose path is the same up to trailing slashes, whatever
//     the path types (an exact match of type and path is preferred).
//   - Backends: a Service port is found by number or by name among the TCP
//     ports; its endpoints come from the EndpointSlices labelled with the
//     Service's name, from the slice port of the same name. Endpoints whose
//     ready condition is not false and that are not terminating come first,
//     then terminating ones still serving; each group is sorted by address.
//     ExternalName Services are not supported (the proxy would have to
//     resolve names at request time): Backend.Err says so. Resource
//     backends are not supported either.
//   - The default-backend annotation names a Service of the Ingress's
//     namespace; podnet uses its first TCP port (Route.DefaultBackend).
//   - TLS: a tls section's hosts get its Secret's certificate, parsed once
//     per Secret; the oldest Ingress naming a host wins it. A missing or
//     unusable Secret is a Problem and the host gets no certificate (the
//     proxy's default one). A certificate whose names do not cover the host
//     is a Problem but is served anyway. A tls section without hosts does
//     nothing. Route.TLS is true when the route's host (or a wildcard tls
//     host covering it) is listed in a tls section with a secretName, even
//     if that Secret is unusable, as ingress-nginx redirects as soon as TLS
//     is configured.
//   - server-alias: the names become extra names of the server of the
//     Ingress's first rule host (and share its certificate). A name that is
//     the host of some rule, or an alias of an older Ingress, is ignored
//     with a Problem.

// Annotation keys Served reads.
const (
	legacyClassAnnotation  = "kubernetes.io/ingress.class"
	defaultClassAnnotation = "ingressclass.kubernetes.io/is-default-class"
)

// served implements Served.
//
// A class named by spec.ingressClassName must be an IngressClass of ours.
// A class named only by the legacy annotation is ours when it is the name
// of one of our IngressClasses, or when it is ClassName and no IngressClass
// of our controller exists (so the legacy annotation works before the
// default class is created). An Ingress naming no class is ours when one of
// our IngressClasses is marked default.
func served(ing *networkingv1.Ingress, classes []*networkingv1.IngressClass) bool {
	if ing == nil {
		return false
	}
	name, legacy := "", false
	if ing.Spec.IngressClassName != nil && *ing.Spec.IngressClassName != "" {
		name = *ing.Spec.IngressClassName
	} else if v := ing.Annotations[legacyClassAnnotation]; v != "" {
		name, legacy = v, true
	}
	ours, isDefault := 0, false
	for _, c := range classes {
		if c == nil || c.Spec.Controller != ControllerName {
			continue
		}
		ours++
		if name != "" && c.Name == name {
			return true
		}
		if c.Annotations[defaultClassAnnotation] == "true" {
			isDefault = true
		}
	}
	if name == "" {
		return isDefault
	}
	return legacy && ours == 0 && name == ClassName
}

// server is the routes of one host name (exact, wildcard or "" for any).
type server struct {
	host  string
	exact map[string]*Route // Exact routes by path
	// prefix holds Prefix routes by their path without trailing slashes
	// ("/" for the root).
	prefix map[string]*Route
	// regex holds Regex routes, longest pattern first, then in the order of
	// their Ingresses' age and rule order.
	regex []*Route
	// owners are the Ingresses with a rule for the host, oldest first.
	owners []*ingress
	// fallback is the synthesised route to the spec.defaultBackend of the
	// oldest owner that has one; nil if none does.
	fallback *Route
	aliases  []string
}

func newServer(host string) *server {
	return &server{host: host, exact: map[string]*Route{}, prefix: map[string]*Route{}}
}

// certEntry is a TLS host's certificate and where it came from.
type certEntry struct {
	secret types.NamespacedName
	cert   *tls.Certificate
}

type tableData struct {
	exact map[string]*server // by host
	wild  map[string]*server // "*.foo.com" by "foo.com"
	any   *server            // host "" (nil if no host-less rule)

	certs     map[string]*certEntry // by host
	wildCerts map[string]*certEntry // "*.foo.com" by "foo.com"

	defaultBackend *Backend
	defaultOwner   types.NamespacedName
	routes         []*Route
}

// ingress is a served Ingress with its parsed annotations.
type ingress struct {
	obj *networkingv1.Ingress
	nn  types.NamespacedName
	cfg *annotations.Config
}

type builder struct {
	services  map[types.NamespacedName]*corev1.Service
	slices    map[types.NamespacedName][]*discoveryv1.EndpointSlice
	secrets   map[types.NamespacedName]*corev1.Secret
	backends  map[string]*Backend
	certs     map[types.NamespacedName]*tls.Certificate
	certErrs  map[types.NamespacedName]string
	problems  []Problem
	seen      map[Problem]bool
	servers   map[string]*server
	t         *Table
	tlsHosts  map[string]bool // hosts listed in a tls section with a secretName
	tlsWild   map[string]bool // parents of "*.foo.com" tls hosts
	aliasedBy map[string]types.NamespacedName
}

func (b *builder) problem(nn types.NamespacedName, format string, args ...any) {
	p := Problem{Ingress: nn, Message: fmt.Sprintf(format, args...)}
	if !b.seen[p] {
		b.seen[p] = true
		b.problems = append(b.problems, p)
	}
}

// older orders Ingresses by age: creationTimestamp, then namespace/name.
func older(a, c *ingress) int {
	ta, tc := a.obj.CreationTimestamp.Time, c.obj.CreationTimestamp.Time
	if !ta.Equal(tc) {
		if ta.Before(tc) {
			return -1
		}
		return 1
	}
	return cmp.Or(cmp.Compare(a.nn.Namespace, c.nn.Namespace), cmp.Compare(a.nn.Name, c.nn.Name))
}

func build(in Input) (*Table, []Problem) {
	b := &builder{
		services:  map[types.NamespacedName]*corev1.Service{},
		slices:    map[types.NamespacedName][]*discoveryv1.EndpointSlice{},
		secrets:   map[types.NamespacedName]*corev1.Secret{},
		backends:  map[string]*Backend{},
		certs:     map[types.NamespacedName]*tls.Certificate{},
		certErrs:  map[types.NamespacedName]string{},
		seen:      map[Problem]bool{},
		servers:   map[string]*server{},
		tlsHosts:  map[string]bool{},
		tlsWild:   map[string]bool{},
		aliasedBy: map[string]types.NamespacedName{},
		t: &Table{tableData{
			exact:     map[string]*server{},
			wild:      map[string]*server{},
			certs:     map[string]*certEntry{},
			wildCerts: map[string]*certEntry{},
		}},
	}
	for _, s := range in.Services {
		if s != nil {
			b.services[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
		}
	}
	for _, s := range in.EndpointSlices {
		if s == nil {
			continue
		}
		if svc := s.Labels[discoveryv1.LabelServiceName]; svc != "" {
			k := types.NamespacedName{Namespace: s.Namespace, Name: svc}
			b.slices[k] = append(b.slices[k], s)
		}
	}
	for _, s := range in.Secrets {
		if s != nil {
			b.secrets[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
		}
	}

	var ings []*ingress
	for _, obj := range in.Ingresses {
		if !served(obj, in.IngressClasses) {
			continue
		}
		nn := types.NamespacedName{Namespace: obj.Namespace, Name: obj.Name}
		cfg, errs, _ := annotations.Parse(obj)
		if len(errs) > 0 {
			for _, e := range errs {
				b.problem(nn, "%s", e.Error())
			}
			continue
		}
		ings = append(ings, &ingress{obj: obj, nn: nn, cfg: cfg})
	}
	slices.SortFunc(ings, older)

	for _, ing := range ings {
		if !ing.cfg.Canary {
			b.addMain(ing)
		}
	}
	for _, ing := range ings {
		if ing.cfg.Canary {
			b.addCanary(ing)
		}
	}
	for _, ing := range ings {
		if !ing.cfg.Canary {
			b.addTLS(ing)
		}
	}
	for _, ing := range ings {
		if !ing.cfg.Canary {
			b.addAliases(ing)
		}
	}
	b.finish()
	slices.SortStableFunc(b.problems, func(x, y Problem) int {
		return cmp.Or(cmp.Compare(x.Ingress.Namespace, y.Ingress.Namespace), cmp.Compare(x.Ingress.Name, y.Ingress.Name))
	})
	return b.t, b.problems
}

// normHost lower-cases a rule or tls host and drops trailing dots.
func normHost(h string) string {
	return lowerASCII(strings.TrimRight(strings.TrimSpace(h), "."))
}

// prefixKey is a Prefix path without its trailing slashes ("/" stays).
func prefixKey(p string) string {
	k := strings.TrimRight(p, "/")
	if k == "" {
		return "/"
	}
	return k
}

func hostLabel(h string) string {
	if h == "" {
		return "any host"
	}
	return "host " + h
}

func (b *builder) server(host string) *server {
	s := b.servers[host]
	if s == nil {
		s = newServer(host)
		b.servers[host] = s
	}
	return s
}

func addOwner(s *server, ing *ingress) {
	if len(s.owners) == 0 || s.owners[len(s.owners)-1] != ing {
		s.owners = append(s.owners, ing)
	}
}

// resolveType turns an Ingress path type into the route's.
func resolveType(pt *networkingv1.PathType, cfg *annotations.Config) PathType {
	if pt != nil {
		switch *pt {
		case networkingv1.PathTypeExact:
			return Exact
		case networkingv1.PathTypePrefix:
			return Prefix
		}
	}
	if cfg.UseRegex || cfg.RewriteTarget != "" {
		return Regex
	}
	return Prefix
}

func (b *builder) addMain(ing *ingress) {
	if ing.obj.Spec.DefaultBackend != nil && b.t.defaultBackend == nil {
		b.t.defaultBackend = b.backend(ing, ing.obj.Spec.DefaultBackend)
		b.t.defaultOwner = ing.nn
	}
	for _, rule := range ing.obj.Spec.Rules {
		host := normHost(rule.Host)
		s := b.server(host)
		addOwner(s, ing)
		if rule.HTTP == nil {
			continue
		}
		for _, p := range rule.HTTP.Paths {
			path := p.Path
			if path == "" {
				path = "/"
			}
			r := &Route{
				Ingress:  ing.nn,
				Host:     host,
				Path:     path,
				PathType: resolveType(p.PathType, ing.cfg),
				Config:   ing.cfg,
			}
			if r.PathType != Regex && !strings.HasPrefix(path, "/") {
				b.problem(ing.nn, "path %q of %s must start with /", path, hostLabel(host))
				continue
			}
			if r.PathType == Regex {
				re, err := compilePath(path)
				if err != nil {
					b.problem(ing.nn, "path %q of %s is not a valid regular expression: %v", path, hostLabel(host), err)
					continue
				}
				r.Regex = re
			}
			var m map[string]*Route
			key := path
			switch r.PathType {
			case Exact:
				m = s.exact
			case Prefix:
				m, key = s.prefix, prefixKey(path)
			}
			var prev *Route
			if m != nil {
				prev = m[key]
			} else {
				for _, o := range s.regex {
					if o.Path == path {
						prev = o
						break
					}
				}
			}
			if prev != nil {
				if prev.Ingress == ing.nn {
					b.problem(ing.nn, "path %s (%s) of %s is listed twice; the first one is used", path, r.PathType, hostLabel(host))
				} else {
					b.problem(ing.nn, "path %s of %s is already served by %s (older)", path, hostLabel(host), prev.Ingress)
				}
				continue
			}
			r.Backend = b.backend(ing, &p.Backend)
			r.DefaultBackend = b.annotationBackend(ing)
			if m != nil {
				m[key] = r
			} else {
				s.regex = append(s.regex, r)
			}
			b.t.routes = append(b.t.routes, r)
		}
	}
}

// compilePath compiles a Regex path as nginx's "~*" location would:
// case-insensitive, anchored at the start. The path is checked alone
// first so that it cannot close the anchoring group ("/a)|(/b").
func compilePath(path string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(path); err != nil {
		return nil, err
	}
	return regexp.Compile("(?i)^(?:" + path + ")")
}

// addCanary attaches the paths of a canary Ingress to the main routes of
// the same host and path (the path types may differ).
func (b *builder) addCanary(ing *ingress) {
	for _, rule := range ing.obj.Spec.Rules {
		host := normHost(rule.Host)
		if rule.HTTP == nil {
			continue
		}
		for _, p := range rule.HTTP.Paths {
			path := p.Path
			if path == "" {
				path = "/"
			}
			main := b.mainFor(host, path)
			if main == nil {
				b.problem(ing.nn, "canary path %s of %s has no main route to attach to", path, hostLabel(host))
				continue
			}
			main.Canaries = append(main.Canaries, &Canary{
				Ingress: ing.nn,
				Backend: b.backend(ing, &p.Backend),
				Config:  ing.cfg,
			})
		}
	}
}

func (b *builder) mainFor(host, path string) *Route {
	s := b.servers[host]
	if s == nil {
		return nil
	}
	if r := s.exact[path]; r != nil {
		return r
	}
	if r := s.prefix[prefixKey(path)]; r != nil {
		return r
	}
	if r := s.exact[prefixKey(path)]; r != nil {
		return r
	}
	for _, r := range s.regex {
		if prefixKey(r.Path) == prefixKey(path) {
			return r
		}
	}
	return nil
}

// backend resolves an Ingress backend in the Ingress's namespace. Backends
// are shared: routes to the same Service port get the same *Backend.
func (b *builder) backend(ing *ingress, ib *networkingv1.IngressBackend) *Backend {
	ns := ing.nn.Namespace
	if ib.Service == nil {
		be := &Backend{Namespace: ns, Err: "resource backends are not supported"}
		if ib.Resource != nil {
			be.Service = ib.Resource.Kind + "/" + ib.Resource.Name
		}
		b.problem(ing.nn, "%s", be.Err)
		return be
	}
	port := ib.Service.Port.Name
	if port == "" {
		port = strconv.Itoa(int(ib.Service.Port.Number))
	}
	return b.serviceBackend(ing.nn, ns, ib.Service.Name, port, false)
}

// backendProblem reports a backend's configuration error, naming the
// Service when the error does not.
func (b *builder) backendProblem(owner types.NamespacedName, be *Backend) {
	if strings.HasPrefix(be.Err, "service ") {
		b.problem(owner, "%s", be.Err)
		return
	}
	b.problem(owner, "service %s/%s: %s", be.Namespace, be.Service, be.Err)
}

// annotationBackend resolves the default-backend annotation: a Service in
// the Ingress's namespace, on its first port.
func (b *builder) annotationBackend(ing *ingress) *Backend {
	name := ing.cfg.DefaultBackend
	if name == "" {
		return nil
	}
	return b.serviceBackend(ing.nn, ing.nn.Namespace, name, "", true)
}

func (b *builder) serviceBackend(owner types.NamespacedName, ns, name, port string, firstPort bool) *Backend {
	key := ns + "/" + name + "/" + port
	if be := b.backends[key]; be != nil {
		if be.Err != "" {
			b.backendProblem(owner, be)
		}
		return be
	}
	be := &Backend{Namespace: ns, Service: name, Port: port}
	b.backends[key] = be
	defer func() {
		if be.Err != "" {
			b.backendProblem(owner, be)
		}
	}()
	svc := b.services[types.NamespacedName{Namespace: ns, Name: name}]
	if svc == nil {
		be.Err = fmt.Sprintf("service %s/%s not found", ns, name)
		return be
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		be.Err = "ExternalName services are not supported"
		return be
	}
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if p.Protocol != "" && p.Protocol != corev1.ProtocolTCP {
			continue
		}
		if firstPort || p.Name == port || (port != "" && strconv.Itoa(int(p.Port)) == port) {
			sp = p
			break
		}
	}
	if sp == nil {
		if firstPort {
			be.Err = fmt.Sprintf("service %s/%s has no TCP port", ns, name)
		} else {
			be.Err = fmt.Sprintf("service %s/%s has no port %s", ns, name, port)
		}
		return be
	}
	if firstPort {
		be.Port = strconv.Itoa(int(sp.Port))
	}
	be.Endpoints = b.endpoints(types.NamespacedName{Namespace: ns, Name: name}, sp.Name)
	return be
}

// endpoints lists the addresses of a Service port from its EndpointSlices:
// ready ones, then terminating ones still serving, each sorted by address
// and without duplicates.
func (b *builder) endpoints(svc types.NamespacedName, portName string) []Endpoint {
	var ready, term []Endpoint
	seen := map[string]bool{}
	termSeen := map[string]int{}
	for _, sl := range b.slices[svc] {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 && sl.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var port int32 = -1
		for _, p := range sl.Ports {
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			if name == portName && (p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP) && p.Port != nil {
				port = *p.Port
				break
			}
		}
		if port < 0 {
			continue
		}
		for _, ep := range sl.Endpoints {
			if len(ep.Addresses) == 0 {
				continue
			}
			c := ep.Conditions
			isReady := c.Ready == nil || *c.Ready
			terminating := c.Terminating != nil && *c.Terminating
			serving := c.Serving == nil || *c.Serving
			e := Endpoint{Addr: net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(port)))}
			if ep.NodeName != nil {
				e.Node = *ep.NodeName
			}
			switch {
			case isReady && !terminating:
				if !seen[e.Addr] {
					seen[e.Addr] = true
					ready = append(ready, e)
				}
			case terminating && serving:
				e.Terminating = true
				if _, ok := termSeen[e.Addr]; !ok {
					termSeen[e.Addr] = len(term)
					term = append(term, e)
				}
			}
		}
	}
	byAddr := func(x, y Endpoint) int {
		ax, ex := netip.ParseAddrPort(x.Addr)
		ay, ey := netip.ParseAddrPort(y.Addr)
		if ex != nil || ey != nil {
			return cmp.Compare(x.Addr, y.Addr)
		}
		return ax.Compare(ay)
	}
	slices.SortFunc(ready, byAddr)
	term = slices.DeleteFunc(term, func(e Endpoint) bool { return seen[e.Addr] })
	slices.SortFunc(term, byAddr)
	out := append(ready, term...)
	if len(out) == 0 {
		return nil
	}
	return out
}

// loadCert parses a kubernetes.io/tls Secret once.
func (b *builder) loadCert(nn types.NamespacedName) (*tls.Certificate, string) {
	if c := b.certs[nn]; c != nil {
		return c, ""
	}
	if e, ok := b.certErrs[nn]; ok {
		return nil, e
	}
	fail := func(format string, args ...any) (*tls.Certificate, string) {
		msg := fmt.Sprintf("secret %s: ", nn) + fmt.Sprintf(format, args...)
		b.certErrs[nn] = msg
		return nil, msg
	}
	s := b.secrets[nn]
	if s == nil {
		return fail("not found")
	}
	if s.Type != corev1.SecretTypeTLS {
		return fail("type is %q, want %q", s.Type, corev1.SecretTypeTLS)
	}
	crt, key := s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey]
	if len(crt) == 0 || len(key) == 0 {
		return fail("needs %s and %s", corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	}
	c, err := tls.X509KeyPair(crt, key)
	if err != nil {
		return fail("%v", err)
	}
	b.certs[nn] = &c
	return &c, ""
}

// addTLS registers the certificates of an Ingress's tls sections; the
// oldest Ingress naming a host wins it.
func (b *builder) addTLS(ing *ingress) {
	for _, t := range ing.obj.Spec.TLS {
		if t.SecretName == "" {
			continue
		}
		nn := types.NamespacedName{Namespace: ing.nn.Namespace, Name: t.SecretName}
		cert, msg := b.loadCert(nn)
		if msg != "" {
			b.problem(ing.nn, "%s", msg)
		}
		for _, h := range t.Hosts {
			h = normHost(h)
			if h == "" {
				continue
			}
			m, key := b.t.certs, h
			if parent, ok := strings.CutPrefix(h, "*."); ok {
				m, key = b.t.wildCerts, parent
				b.tlsWild[parent] = true
			} else {
				b.tlsHosts[h] = true
			}
			if cert == nil {
				continue
			}
			if _, taken := m[key]; taken {
				continue
			}
			if cert.Leaf != nil {
				probe := h
				if strings.HasPrefix(h, "*.") {
					probe = "x" + h[1:]
				}
				if err := cert.Leaf.VerifyHostname(probe); err != nil {
					b.problem(ing.nn, "secret %s: certificate is not valid for %s (served anyway): %v", nn, h, err)
				}
			}
			m[key] = &certEntry{secret: nn, cert: cert}
		}
	}
}

// addAliases maps the server-alias names of an Ingress to the server of
// its first rule host. A name that is a host of some rule, or an alias of
// an older Ingress, is left alone.
func (b *builder) addAliases(ing *ingress) {
	if len(ing.cfg.ServerAlias) == 0 {
		return
	}
	var target string
	for _, r := range ing.obj.Spec.Rules {
		if h := normHost(r.Host); h != "" {
			target = h
			break
		}
	}
	if target == "" {
		b.problem(ing.nn, "server-alias needs a rule with a host")
		return
	}
	s := b.servers[target]
	for _, a := range ing.cfg.ServerAlias {
		a = normHost(a)
		if a == "" || a == target {
			continue
		}
		if _, ok := b.servers[a]; ok {
			b.problem(ing.nn, "server-alias %s is the host of a rule; the alias is ignored", a)
			continue
		}
		if by, ok := b.aliasedBy[a]; ok {
			if by != ing.nn {
				b.problem(ing.nn, "server-alias %s is already an alias of %s (older)", a, by)
			}
			continue
		}
		b.aliasedBy[a] = ing.nn
		s.aliases = append(s.aliases, a)
		if parent, ok := strings.CutPrefix(a, "*."); ok {
			b.t.wild[parent] = s
			if e := b.t.certs[target]; e != nil && b.t.wildCerts[parent] == nil {
				b.t.wildCerts[parent] = e
			}
		} else {
			b.t.exact[a] = s
			if e := b.t.certs[target]; e != nil && b.t.certs[a] == nil {
				b.t.certs[a] = e
			}
		}
	}
}

// hasTLS reports whether a rule host is listed in a tls section with a
// secretName (directly, or by a wildcard tls host covering it).
func (b *builder) hasTLS(host string) bool {
	if host == "" {
		return false
	}
	if b.tlsHosts[host] {
		return true
	}
	if parent, ok := strings.CutPrefix(host, "*."); ok {
		return b.tlsWild[parent]
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		return b.tlsWild[host[i+1:]]
	}
	return false
}

func typeRank(t PathType) int {
	switch t {
	case Exact:
		return 0
	case Prefix:
		return 1
	}
	return 2
}

func (b *builder) finish() {
	for host, s := range b.servers {
		// Regex routes: longest pattern first; equal lengths keep the
		// order they were added in (older Ingress first, then rule order).
		slices.SortStableFunc(s.regex, func(x, y *Route) int { return cmp.Compare(len(y.Path), len(x.Path)) })
		for _, o := range s.owners {
			if o.obj.Spec.DefaultBackend != nil {
				s.fallback = &Route{
					Ingress:        o.nn,
					Host:           host,
					Path:           "",
					PathType:       Prefix,
					Backend:        b.backend(o, o.obj.Spec.DefaultBackend),
					Config:         o.cfg,
					DefaultBackend: b.annotationBackend(o),
					TLS:            b.hasTLS(host),
				}
				break
			}
		}
		slices.Sort(s.aliases)
		switch {
		case host == "":
			b.t.any = s
		case strings.HasPrefix(host, "*."):
			b.t.wild[host[2:]] = s
		default:
			b.t.exact[host] = s
		}
	}
	for _, r := range b.t.routes {
		r.TLS = b.hasTLS(r.Host)
	}
	slices.SortFunc(b.t.routes, func(x, y *Route) int {
		return cmp.Or(cmp.Compare(x.Host, y.Host), cmp.Compare(x.Path, y.Path), cmp.Compare(typeRank(x.PathType), typeRank(y.PathType)))
	})
}
