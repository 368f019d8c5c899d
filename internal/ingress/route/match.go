package route

import (
	"crypto/tls"
	"strings"
)

// Matching, in detail (the choices the package doc leaves out):
//
// Host: the Host header loses its port ("foo.com:8080", "[::1]:80"), a
// trailing dot and its letter case. The server for a host is the exact
// host's, else the wildcard "*.parent"'s (one label only), else the
// catch-all of the host-less rules. There is no fall-through: once a
// server is chosen, a path no route of it matches gets that server's
// fallback (see below), not another server's routes, as nginx picks a
// server block by name before looking at locations.
//
// Path: the candidates of a server are ordered by path length, longest
// first; on equal length Exact comes before Prefix, and Prefix before
// Regex (literal paths beat patterns). The first candidate that matches
// wins. Regex routes are ordered among themselves by pattern length,
// longest first, then by the age of their Ingress and rule order. Only the
// ImplementationSpecific paths of an Ingress with use-regex or
// rewrite-target are regexes; ingress-nginx also turns the other paths of
// the same host into regexes, podnet does not. The length of a Prefix
// route is that of its path without trailing slashes.
//
// Fallback: a server whose owners (the Ingresses with a rule for its host)
// include one with spec.defaultBackend answers unmatched paths with a
// route synthesised for the oldest such Ingress: Path "", PathType Prefix,
// Backend its spec.defaultBackend. Without one, Match returns no route and
// the table's DefaultBackend applies.
//
// Match does not allocate unless the host has upper-case letters or a
// Regex route matches.

// NormalizeHost turns a Host header or TLS server name into the form rule
// hosts are compared in: no port, no trailing dots, ASCII letters in lower
// case. It does not allocate when host has no upper-case letter.
func NormalizeHost(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			host = host[1:i]
		}
	} else if i := strings.IndexByte(host, ':'); i >= 0 && strings.IndexByte(host[i+1:], ':') < 0 {
		host = host[:i]
	}
	return lowerASCII(strings.TrimRight(host, "."))
}

// lowerASCII lower-cases the ASCII letters of s (host names are ASCII:
// IDNs arrive as punycode), allocating only if it has upper-case ones.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// lookup finds the server for a normalised host.
func (t *tableData) lookup(host string) *server {
	if s, ok := t.exact[host]; ok {
		return s
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		if s, ok := t.wild[host[i+1:]]; ok {
			return s
		}
	}
	return t.any
}

func (t *tableData) match(host, path string) Match {
	s := t.lookup(NormalizeHost(host))
	if s == nil {
		return Match{}
	}
	m := s.match(path)
	if m.Route == nil && s.fallback != nil {
		m.Route = s.fallback
	}
	return m
}

// elementPrefix reports whether prefix (a Prefix route's key: no trailing
// slash, or "/") is a path-element prefix of path.
func elementPrefix(prefix, path string) bool {
	if prefix == "/" {
		return true
	}
	return strings.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

func (s *server) match(path string) Match {
	var best *Route
	bestLen := -1
	if r, ok := s.exact[path]; ok {
		best, bestLen = r, len(path)
	} else if len(s.prefix) > 0 {
		// Walk the element prefixes of path, longest first.
		for end := len(path); end > 0; end = strings.LastIndexByte(path[:end], '/') {
			if r, ok := s.prefix[path[:end]]; ok {
				best, bestLen = r, end
				break
			}
		}
		if best == nil {
			if r, ok := s.prefix["/"]; ok {
				best, bestLen = r, 1
			}
		}
	}
	for _, r := range s.regex {
		if len(r.Path) <= bestLen {
			break
		}
		if g := r.Regex.FindStringSubmatch(path); g != nil {
			return Match{Route: r, Groups: g}
		}
	}
	return Match{Route: best}
}

func (t *tableData) certificate(serverName string) *tls.Certificate {
	if e := t.lookupCert(serverName); e != nil {
		return e.cert
	}
	return nil
}

func (t *tableData) lookupCert(serverName string) *certEntry {
	h := NormalizeHost(serverName)
	if e, ok := t.certs[h]; ok {
		return e
	}
	if i := strings.IndexByte(h, '.'); i > 0 {
		if e, ok := t.wildCerts[h[i+1:]]; ok {
			return e
		}
	}
	return nil
}

// Rewrite expands a rewrite-target with a regex route's groups as nginx
// does: "$" and one digit is that group ("$1abc" is group 1 then "abc",
// "$10" is group 1 then "0"; "$0" is the whole match), a group the regex
// does not have is "", and any other "$" is kept as it is ("$$" stays
// "$$", "$host" stays "$host").
func Rewrite(target string, groups []string) string {
	if strings.IndexByte(target, '$') < 0 {
		return target
	}
	var b strings.Builder
	b.Grow(len(target))
	for i := 0; i < len(target); i++ {
		c := target[i]
		if c == '$' && i+1 < len(target) && '0' <= target[i+1] && target[i+1] <= '9' {
			if n := int(target[i+1] - '0'); n < len(groups) {
				b.WriteString(groups[n])
			}
			i++
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
