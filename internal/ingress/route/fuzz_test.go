package route

import (
	"fmt"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
)

// routeMatches is the reference matcher of one route, written from the
// documented semantics rather than from the table's indexes.
func routeMatches(r *Route, path string) bool {
	switch r.PathType {
	case Exact:
		return r.Path == path
	case Prefix:
		return elementPrefix(prefixKey(r.Path), path)
	default:
		return r.Regex.MatchString(path)
	}
}

// checkMatch compares tab.Match with a linear scan of the chosen server's
// routes in documented order, and checks the result's invariants.
func checkMatch(t *testing.T, tab *Table, host, path string) {
	t.Helper()
	m := tab.Match(host, path)
	h := NormalizeHost(host)
	s := tab.lookup(h)
	var want *Route
	if s != nil {
		for _, r := range s.ordered() {
			if routeMatches(r, path) {
				want = r
				break
			}
		}
		if want == nil {
			want = s.fallback
		}
	}
	if m.Route != want {
		t.Fatalf("Match(%q, %q) = %+v, reference %+v", host, path, m.Route, want)
	}
	r := m.Route
	if r == nil {
		if m.Groups != nil {
			t.Fatalf("groups without route")
		}
		return
	}
	switch {
	case r.Path == "":
		// the per-host fallback
	case r.PathType == Prefix:
		k := prefixKey(r.Path)
		if k != "/" && !(path == k || strings.HasPrefix(path, k+"/")) {
			t.Fatalf("Prefix route %q returned for %q", r.Path, path)
		}
	case r.PathType == Exact:
		if r.Path != path {
			t.Fatalf("Exact route %q returned for %q", r.Path, path)
		}
	case r.PathType == Regex:
		if len(m.Groups) == 0 || !strings.HasPrefix(path, m.Groups[0]) || len(m.Groups) != r.Regex.NumSubexp()+1 {
			t.Fatalf("Regex route %q for %q: groups %q", r.Path, path, m.Groups)
		}
	}
	if r.PathType != Regex && m.Groups != nil {
		t.Fatalf("groups %q for %s route", m.Groups, r.PathType)
	}
	// The route belongs to the server of the host.
	switch {
	case r.Host == "":
	case strings.HasPrefix(r.Host, "*."):
		i := strings.IndexByte(h, '.')
		if i <= 0 || h[i:] != r.Host[1:] {
			t.Fatalf("wildcard %q route for host %q", r.Host, h)
		}
	default:
		if r.Host != h && !contains(s.aliases, h) {
			t.Fatalf("host %q route for host %q", r.Host, h)
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func FuzzMatch(f *testing.F) {
	tab, _ := Build(routingInput())
	for _, s := range [][2]string{
		{"foo.com", "/foo/bar/"}, {"FOO.com:80", "/v11"}, {"a.foo.com", "/"}, {"a.b.foo.com", "/any/x"},
		{"re.com", "/API/v9/x"}, {"re.com", "/api/v1/users"}, {"[::1]:80", ""}, {"d.com", "/nope"},
		{"rw.com", "/svc"}, {"foo.com.", "//foo//bar"}, {"x", "foo"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, host, path string) {
		checkMatch(t, tab, host, path)
	})
}

func FuzzHost(f *testing.F) {
	for _, s := range []string{"foo.com", "Foo.COM.:8080", "[::1]:80", "[FD00::1]", "::1", "a:b", "[", "]:", "..", "É.com", "\xff:1"} {
		f.Add(s)
	}
	tab, _ := Build(routingInput())
	f.Fuzz(func(t *testing.T, host string) {
		h := NormalizeHost(host)
		if len(h) > len(host) {
			t.Fatalf("%q grew to %q", host, h)
		}
		if strings.HasSuffix(h, ".") {
			t.Fatalf("%q: trailing dot in %q", host, h)
		}
		for i := 0; i < len(h); i++ {
			if 'A' <= h[i] && h[i] <= 'Z' {
				t.Fatalf("%q: upper case in %q", host, h)
			}
		}
		if !strings.ContainsAny(host, ":[") && strings.ToLower(strings.TrimRight(host, ".")) == strings.TrimRight(host, ".") && h != strings.TrimRight(host, ".") {
			t.Fatalf("%q changed to %q", host, h)
		}
		if !strings.ContainsAny(h, ":[]") && NormalizeHost(h) != h {
			t.Fatalf("not idempotent: %q -> %q -> %q", host, h, NormalizeHost(h))
		}
		checkMatch(t, tab, host, "/")
		_ = tab.Certificate(host)
	})
}

func FuzzRewrite(f *testing.F) {
	for _, s := range []string{"/$2", "/$1abc$10", "$$", "$", "/x/$9/$0", "$host"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		// Without groups every "$digit" vanishes and nothing else changes;
		// with groups "<0>".."<9>" each "$digit" becomes its group.
		var none, all strings.Builder
		for i := 0; i < len(target); i++ {
			if target[i] == '$' && i+1 < len(target) && target[i+1] >= '0' && target[i+1] <= '9' {
				fmt.Fprintf(&all, "<%c>", target[i+1])
				i++
				continue
			}
			none.WriteByte(target[i])
			all.WriteByte(target[i])
		}
		if got := Rewrite(target, nil); got != none.String() {
			t.Fatalf("Rewrite(%q, nil) = %q, want %q", target, got, none.String())
		}
		groups := make([]string, 10)
		for i := range groups {
			groups[i] = fmt.Sprintf("<%d>", i)
		}
		if got := Rewrite(target, groups); got != all.String() {
			t.Fatalf("Rewrite(%q, groups) = %q, want %q", target, got, all.String())
		}
	})
}

// FuzzBuild compiles an Ingress with arbitrary host, path and type next to
// the fixed ones and checks that Build never panics and Match stays
// consistent, for the fuzzed host and path in particular.
func FuzzBuild(f *testing.F) {
	f.Add("foo.com", "/foo", "Prefix", true, "foo.com", "/foo/x")
	f.Add("*.foo.com", "/(a|b)+", "Impl", true, "x.foo.com", "/ab")
	f.Add("", "", "Exact", false, "any", "/")
	f.Add("FOO.com.", "/[", "Impl", true, "foo.com", "/[")
	f.Fuzz(func(t *testing.T, host, path, typ string, regex bool, reqHost, reqPath string) {
		in := routingInput()
		opts := []ingOpt{rule(host), func(i *networkingv1.Ingress) {
			pt := networkingv1.PathType(typ)
			if typ == "Impl" {
				pt = networkingv1.PathTypeImplementationSpecific
			}
			i.Spec.Rules[0].HTTP = &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{Path: path, PathType: &pt, Backend: svcBackend("web:80")}}}
			i.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{host}, SecretName: "x"}}
		}}
		if regex {
			opts = append(opts, ann("use-regex", "true"))
		}
		in.Ingresses = append(in.Ingresses, mkIng("a", "fuzz", 100, opts...))
		tab, _ := Build(in)
		checkMatch(t, tab, reqHost, reqPath)
		checkMatch(t, tab, host, path)
		_ = tab.String()
	})
}
