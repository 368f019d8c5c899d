package route

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// String dumps the table as text, one server per block, for golden tests
// and debugging. The format is stable but not a contract.
func (t *Table) String() string {
	if t == nil {
		return "<nil>\n"
	}
	var b strings.Builder
	if t.defaultBackend != nil {
		fmt.Fprintf(&b, "default %s (%s)\n", backendString(t.defaultBackend), t.defaultOwner)
	}
	seen := map[*server]bool{}
	var servers []*server
	add := func(s *server) {
		if s != nil && !seen[s] {
			seen[s] = true
			servers = append(servers, s)
		}
	}
	for _, s := range t.exact {
		add(s)
	}
	for _, s := range t.wild {
		add(s)
	}
	add(t.any)
	slices.SortFunc(servers, func(x, y *server) int { return cmp.Compare(x.host, y.host) })
	for _, s := range servers {
		name := s.host
		if name == "" {
			name = "*"
		}
		fmt.Fprintf(&b, "server %s", name)
		if len(s.aliases) > 0 {
			fmt.Fprintf(&b, " aliases=%s", strings.Join(s.aliases, ","))
		}
		if e := t.certEntry(s.host); e != nil {
			fmt.Fprintf(&b, " cert=%s", e.secret)
		}
		b.WriteString("\n")
		for _, r := range s.ordered() {
			writeRoute(&b, r)
		}
		if s.fallback != nil {
			fmt.Fprintf(&b, "  fallback -> %s (%s)\n", backendString(s.fallback.Backend), s.fallback.Ingress)
		}
	}
	var certHosts []string
	for h, e := range t.certs {
		if _, ok := t.exact[h]; !ok {
			certHosts = append(certHosts, h+" cert="+e.secret.String())
		}
	}
	for p, e := range t.wildCerts {
		if _, ok := t.wild[p]; !ok {
			certHosts = append(certHosts, "*."+p+" cert="+e.secret.String())
		}
	}
	slices.Sort(certHosts)
	for _, c := range certHosts {
		fmt.Fprintf(&b, "tls %s\n", c)
	}
	return b.String()
}

func (t *tableData) certEntry(host string) *certEntry {
	if p, ok := strings.CutPrefix(host, "*."); ok {
		return t.wildCerts[p]
	}
	return t.certs[host]
}

// ordered lists a server's routes in the order Match tries them.
func (s *server) ordered() []*Route {
	var rs []*Route
	for _, r := range s.exact {
		rs = append(rs, r)
	}
	for _, r := range s.prefix {
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(x, y *Route) int {
		return cmp.Or(cmp.Compare(routeLen(y), routeLen(x)), cmp.Compare(typeRank(x.PathType), typeRank(y.PathType)))
	})
	// Merge the regexes in: before the first literal route of equal or
	// shorter length.
	out := make([]*Route, 0, len(rs)+len(s.regex))
	i := 0
	for _, re := range s.regex {
		for i < len(rs) && routeLen(rs[i]) >= len(re.Path) {
			out = append(out, rs[i])
			i++
		}
		out = append(out, re)
	}
	return append(out, rs[i:]...)
}

func routeLen(r *Route) int {
	if r.PathType == Prefix {
		return len(prefixKey(r.Path))
	}
	return len(r.Path)
}

func writeRoute(b *strings.Builder, r *Route) {
	fmt.Fprintf(b, "  %-6s %s -> %s (%s)", r.PathType, r.Path, backendString(r.Backend), r.Ingress)
	if r.TLS {
		b.WriteString(" tls")
	}
	if r.DefaultBackend != nil {
		fmt.Fprintf(b, " default-backend=%s", backendString(r.DefaultBackend))
	}
	b.WriteString("\n")
	for _, c := range r.Canaries {
		fmt.Fprintf(b, "    canary %s (%s)", backendString(c.Backend), c.Ingress)
		if c.Config != nil {
			if c.Config.CanaryByHeader != "" {
				fmt.Fprintf(b, " header=%s", c.Config.CanaryByHeader)
			}
			if c.Config.CanaryByCookie != "" {
				fmt.Fprintf(b, " cookie=%s", c.Config.CanaryByCookie)
			}
			if c.Config.CanaryWeight > 0 {
				fmt.Fprintf(b, " weight=%d/%d", c.Config.CanaryWeight, c.Config.CanaryWeightTotal)
			}
		}
		b.WriteString("\n")
	}
}

func backendString(be *Backend) string {
	if be == nil {
		return "<none>"
	}
	s := be.Namespace + "/" + be.Service + ":" + be.Port
	if be.Err != "" {
		return s + " !" + be.Err
	}
	var eps []string
	for _, e := range be.Endpoints {
		a := e.Addr
		if e.Terminating {
			a += "(terminating)"
		}
		eps = append(eps, a)
	}
	return s + " [" + strings.Join(eps, " ") + "]"
}
