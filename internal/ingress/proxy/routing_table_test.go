package proxy

import "testing"

// TestRoutingTable is Ingress v1's routing, case by case, through the real
// proxy over HTTP: each request names which backend answered and the path
// it saw. Hosts (exact, one-label wildcards, any host), Exact, Prefix by
// path element with trailing slashes, ImplementationSpecific as Prefix
// and as a regex under use-regex, the longest match with Exact winning a
// tie, rules of several Ingresses merged for one host, a conflict won by
// the oldest Ingress, a host's own defaultBackend, and the global one.
func TestRoutingTable(t *testing.T) {
	e := newEnv(t)
	w := &world{}
	for _, name := range []string{"a", "b", "c", "d", "old", "new", "rx", "hostdef", "def"} {
		w.service(name, newBackend(t, name, nil).addr)
	}
	// The oldest first: "global" holds the global default backend (the
	// oldest Ingress with one), "first" wins the conflict on shop.com /cart.
	w.ingress("global", defaultBackend("def"))
	w.ingress("first",
		path("foo.com", "Prefix /v1 a"), path("foo.com", "Prefix /v11 b"),
		path("foo.com", "Exact /docs c"), path("foo.com", "Prefix /docs a"),
		path("foo.com", "Prefix /api/ d"), path("foo.com", "Impl /impl c"),
		path("*.wild.com", "Prefix / b"), path("", "Prefix /anyhost d"),
		path("shop.com", "Prefix /cart old"))
	w.ingress("merged", path("foo.com", "Prefix /v1/deep b"), path("shop.com", "Prefix /cart new"))
	w.ingress("regex", ann("use-regex", "true"), path("rx.com", "Impl /item/[0-9]+ rx"), path("rx.com", "Prefix /static a"))
	w.ingress("fallback", path("hd.com", "Exact /only a"), defaultBackend("hostdef"))
	_, problems := buildTable(w)
	if len(problems) != 1 || problems[0].Ingress.Name != "merged" {
		t.Errorf("problems: %v, want the lost conflict of default/merged", problems)
	}
	e.load(w)

	cases := []struct {
		name, host, target string
		backend, path      string // backend "" means the built-in 404
	}{
		{"prefix itself", "foo.com", "/v1", "a", "/v1"},
		{"prefix with a trailing slash", "foo.com", "/v1/", "a", "/v1/"},
		{"prefix by element", "foo.com", "/v1/x", "a", "/v1/x"},
		{"/v1 does not match /v11", "foo.com", "/v11", "b", "/v11"},
		{"/v1 does not match /v1x", "foo.com", "/v1x", "hostdef_none", ""},
		{"longest prefix, from another Ingress (merged)", "foo.com", "/v1/deep/er", "b", "/v1/deep/er"},
		{"exact beats prefix on a tie", "foo.com", "/docs", "c", "/docs"},
		{"exact is exact: the prefix takes /docs/", "foo.com", "/docs/", "a", "/docs/"},
		{"a rule's trailing slash is ignored", "foo.com", "/api", "d", "/api"},
		{"a rule's trailing slash, deeper", "foo.com", "/api/x", "d", "/api/x"},
		{"ImplementationSpecific is Prefix", "foo.com", "/impl/x", "c", "/impl/x"},
		{"host is case-insensitive, port ignored", "FOO.COM:8080", "/v1", "a", "/v1"},
		{"wildcard: one label", "x.wild.com", "/p", "b", "/p"},
		{"wildcard: not two labels", "x.y.wild.com", "/p", "def", "/p"},
		{"wildcard: not the apex", "wild.com", "/p", "def", "/p"},
		{"any-host rule", "other.com", "/anyhost/x", "d", "/anyhost/x"},
		{"conflict: the oldest Ingress wins", "shop.com", "/cart", "old", "/cart"},
		{"regex under use-regex", "rx.com", "/item/42", "rx", "/item/42"},
		{"regex is anchored at the start", "rx.com", "/x/item/42", "def", "/x/item/42"},
		{"regex is case-insensitive", "rx.com", "/ITEM/7", "rx", "/ITEM/7"},
		{"a Prefix beside regexes", "rx.com", "/static/app.js", "a", "/static/app.js"},
		{"a host's own defaultBackend", "hd.com", "/elsewhere", "hostdef", "/elsewhere"},
		{"the host's Exact rule still wins", "hd.com", "/only", "a", "/only"},
		{"no rule: the global defaultBackend", "nobody.com", "/x", "def", "/x"},
	}
	for _, c := range cases {
		r := e.do("GET", c.host, c.target)
		want := c.backend
		if want == "hostdef_none" {
			// foo.com has no defaultBackend of its own: the global one.
			want, c.path = "def", c.target
		}
		if r.code != 200 {
			t.Errorf("%s: %s%s: status %d (%q), want %s", c.name, c.host, c.target, r.code, r.body, want)
			continue
		}
		if s := r.seen(t); s.Name != want || s.Path != c.path {
			t.Errorf("%s: %s%s: %s saw %s, want %s saw %s", c.name, c.host, c.target, s.Name, s.Path, want, c.path)
		}
	}

	// Without any default backend, no match is the built-in 404.
	w2 := &world{}
	w2.service("a", newBackend(t, "a2", nil).addr)
	w2.ingress("only", path("foo.com", "Prefix /v1 a"))
	e.load(w2)
	for _, target := range []string{"/v11", "/"} {
		if r := e.do("GET", "foo.com", target); r.code != 404 || r.body != "default backend - 404" {
			t.Errorf("foo.com%s with no default backend: %d %q", target, r.code, r.body)
		}
	}
}
