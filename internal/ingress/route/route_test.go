package route

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// withServices adds a Service with port http:80 for every Service the
// Ingresses name that is not in in.Services yet.
func withServices(in Input) Input {
	have := map[string]bool{}
	for _, s := range in.Services {
		have[s.Namespace+"/"+s.Name] = true
	}
	add := func(ns string, b *networkingv1.IngressBackend) {
		if b == nil || b.Service == nil || have[ns+"/"+b.Service.Name] {
			return
		}
		have[ns+"/"+b.Service.Name] = true
		in.Services = append(in.Services, mkSvc(ns, b.Service.Name, "http:80"))
	}
	for _, i := range in.Ingresses {
		add(i.Namespace, i.Spec.DefaultBackend)
		for _, r := range i.Spec.Rules {
			if r.HTTP != nil {
				for _, p := range r.HTTP.Paths {
					add(i.Namespace, &p.Backend)
				}
			}
		}
	}
	return in
}

func routingInput() Input {
	return withServices(Input{
		IngressClasses: []*networkingv1.IngressClass{podnetClass(true)},
		Ingresses: []*networkingv1.Ingress{
			mkIng("a", "main", 0, rule("foo.com",
				"Exact /exact web:80",
				"Prefix /foo web:80",
				"Prefix /v1 v1:80",
				"Prefix /v11/ v11:80",
				`Prefix "" root:80`,
				"Impl /impl impl:80",
				"Exact /foo/bar exactfb:80",
				"Prefix /foo/bar prefixfb:80",
			)),
			mkIng("a", "wild", 1, rule("*.foo.com", "Prefix / wild:80")),
			mkIng("a", "regex", 2, ann("use-regex", "true"), rule("re.com",
				"Impl /api/v[0-9]+ apiv:80",
				"Impl /api/(.*) apiall:80",
				"Prefix /api/v1/users users:80",
				"Exact /x x:80",
			)),
			mkIng("a", "anyhost", 3, defBackend("anydef:80"), rule("", "Prefix /any any:80")),
			mkIng("a", "withdef", 4, defBackend("ddef:80"), rule("d.com", "Prefix /x dx:80")),
			mkIng("a", "global", 5, defBackend("glob:80")),
			mkIng("a", "merge2", 6, rule("foo.com", "Prefix /merged m2:80", "Prefix /foo/ other:80")),
			mkIng("b", "b-old", -5, rule("foo.com", "Prefix /old bold:80")),
			mkIng("a", "a-new", 7, rule("foo.com", "Prefix /old anew:80")),
			mkIng("a", "can", 8, ann("canary", "true"), ann("canary-weight", "10"),
				rule("foo.com", "Prefix /foo/ canary:80", "Prefix /nomain c2:80")),
			mkIng("a", "rw", 9, ann("rewrite-target", "/$2"), rule("rw.com", "Impl /svc(/|$)(.*) rw:80")),
			mkIng("a", "prefixrw", 10, ann("rewrite-target", "/"), rule("rw.com", "Prefix /plain plain:80")),
			// Not ours: ignored entirely (it would win /foo otherwise).
			mkIng("a", "nginx", -10, func(i *networkingv1.Ingress) { s := "nginx"; i.Spec.IngressClassName = &s },
				rule("foo.com", "Prefix /foo nginx:80")),
			// Bad annotation: not served.
			mkIng("a", "badann", -9, ann("proxy-body-size", "lots"), rule("foo.com", "Prefix /bad bad:80")),
		},
	})
}

func TestMatch(t *testing.T) {
	tab, problems := Build(routingInput())
	cases := []struct {
		host, path string
		svc        string // backend Service of the route; "" = no route
		path2      string // the route's Path, when it matters
		groups     []string
	}{
		{"foo.com", "/exact", "web", "/exact", nil},
		{"foo.com", "/exact/", "root", "/", nil},
		{"foo.com", "/foo", "web", "/foo", nil},
		{"foo.com", "/foo/", "web", "", nil},
		{"foo.com", "/foo/baz", "web", "", nil},
		{"foo.com", "/foobar", "root", "", nil},
		{"foo.com", "/foo/bar", "exactfb", "", nil},
		{"foo.com", "/foo/bar/", "prefixfb", "", nil},
		{"foo.com", "/foo/bar/x", "prefixfb", "", nil},
		{"foo.com", "/v1", "v1", "", nil},
		{"foo.com", "/v1/x", "v1", "", nil},
		{"foo.com", "/v11", "v11", "/v11/", nil},
		{"foo.com", "/v11/x", "v11", "", nil},
		{"foo.com", "/v111", "root", "", nil},
		{"foo.com", "", "root", "", nil},
		{"foo.com", "/", "root", "", nil},
		{"FOO.com:8080", "/v1", "v1", "", nil},
		{"foo.com.", "/v1", "v1", "", nil},
		{"foo.com", "/impl/x", "impl", "", nil},
		{"foo.com", "/IMPL", "root", "", nil}, // Prefix is case-sensitive
		{"foo.com", "/merged/1", "m2", "", nil},
		{"foo.com", "/old", "bold", "", nil},
		{"foo.com", "/bad", "root", "", nil},
		{"a.foo.com", "/x", "wild", "", nil},
		{"A.Foo.Com:443", "/x", "wild", "", nil},
		{"a.b.foo.com", "/any/1", "any", "", nil},
		{"a.b.foo.com", "/x", "anydef", "", nil},
		{"re.com", "/api/v2", "apiv", "", []string{"/api/v2"}},
		{"re.com", "/API/V2/x", "apiv", "", []string{"/API/V2"}},
		{"re.com", "/api/v1/users", "users", "", nil},
		{"re.com", "/api/v1/usersx", "users", "", nil}, // no: see below
		{"re.com", "/api/zzz", "apiall", "", []string{"/api/zzz", "zzz"}},
		{"re.com", "/x", "x", "", nil},
		{"re.com", "/y", "", "", nil},
		{"d.com", "/x/1", "dx", "", nil},
		{"d.com", "/nope", "ddef", "", nil},
		{"unknown.com", "/any", "any", "", nil},
		{"unknown.com", "/zzz", "anydef", "", nil},
		{"[::1]:80", "/any", "any", "", nil},
		{"rw.com", "/svc/a/b", "rw", "", []string{"/svc/a/b", "/", "a/b"}},
		{"rw.com", "/plain/x", "plain", "", nil},
	}
	// /api/v1/usersx is not under the Prefix /api/v1/users, so the regex
	// /api/v[0-9]+ (longer than /api/(.*)) takes it.
	cases[30].svc, cases[30].groups = "apiv", []string{"/api/v1"}
	for _, c := range cases {
		m := tab.Match(c.host, c.path)
		got := ""
		if m.Route != nil {
			got = m.Route.Backend.Service
		}
		if got != c.svc {
			t.Errorf("Match(%q, %q) = %q, want %q", c.host, c.path, got, c.svc)
			continue
		}
		if c.path2 != "" && m.Route.Path != c.path2 {
			t.Errorf("Match(%q, %q) path %q, want %q", c.host, c.path, m.Route.Path, c.path2)
		}
		if !slices.Equal(m.Groups, c.groups) {
			t.Errorf("Match(%q, %q) groups %q, want %q", c.host, c.path, m.Groups, c.groups)
		}
	}

	// The per-host fallback is a synthesised route.
	if m := tab.Match("d.com", "/nope"); m.Route.Path != "" || m.Route.PathType != Prefix || m.Route.Ingress.Name != "withdef" {
		t.Errorf("fallback %+v", m.Route)
	}
	if d := tab.DefaultBackend(); d == nil || d.Service != "anydef" {
		t.Errorf("DefaultBackend %+v", d)
	}
	// Canary attached to the main /foo route.
	m := tab.Match("foo.com", "/foo")
	if len(m.Route.Canaries) != 1 || m.Route.Canaries[0].Backend.Service != "canary" || m.Route.Canaries[0].Config.CanaryWeight != 10 || m.Route.Canaries[0].Ingress.Name != "can" {
		t.Errorf("canaries %+v", m.Route.Canaries)
	}
	for _, r := range tab.Routes() {
		if r.Ingress.Name == "can" || r.Ingress.Name == "nginx" || r.Ingress.Name == "badann" {
			t.Errorf("route from %s: %+v", r.Ingress, r)
		}
	}
	if m := tab.Match("re.com", "/api/v2"); m.Route.PathType != Regex || m.Route.Regex == nil {
		t.Errorf("regex route %+v", m.Route)
	}
	if m := tab.Match("rw.com", "/plain"); m.Route.PathType != Prefix {
		t.Errorf("a Prefix path stays Prefix under rewrite-target: %+v", m.Route)
	}

	wantProblems := []struct{ ing, msg string }{
		{"a/merge2", "path /foo/ of host foo.com is already served by a/main (older)"},
		{"a/a-new", "path /old of host foo.com is already served by b/b-old (older)"},
		{"a/can", "canary path /nomain of host foo.com has no main route"},
		{"a/badann", "nginx.ingress.kubernetes.io/proxy-body-size"},
	}
	for _, w := range wantProblems {
		if !hasProblem(problems, w.ing, w.msg) {
			t.Errorf("no problem %s %q in %v", w.ing, w.msg, problems)
		}
	}
	if len(problems) != len(wantProblems) {
		t.Errorf("problems %v", problems)
	}
}

func hasProblem(ps []Problem, ing, msg string) bool {
	for _, p := range ps {
		if p.Ingress.String() == ing && strings.Contains(p.Message, msg) {
			return true
		}
	}
	return false
}

func TestRoutesSorted(t *testing.T) {
	tab, _ := Build(routingInput())
	rs := tab.Routes()
	if !slices.IsSortedFunc(rs, func(x, y *Route) int {
		if x.Host != y.Host {
			return strings.Compare(x.Host, y.Host)
		}
		return strings.Compare(x.Path, y.Path)
	}) {
		t.Error("Routes not sorted")
	}
	if len(rs) != 19 {
		t.Errorf("%d routes", len(rs))
	}
}

func TestZeroTable(t *testing.T) {
	var tab Table
	if m := tab.Match("foo.com", "/"); m.Route != nil {
		t.Error(m)
	}
	if tab.Certificate("foo.com") != nil || tab.DefaultBackend() != nil || tab.Routes() != nil {
		t.Error("zero table not empty")
	}
}

func TestConflictTieByName(t *testing.T) {
	// Same creationTimestamp: namespace, then name decide.
	tab, ps := Build(withServices(Input{
		IngressClasses: []*networkingv1.IngressClass{podnetClass(false)},
		Ingresses: []*networkingv1.Ingress{
			mkIng("b", "x", 0, rule("h.com", "Exact /p b:80")),
			mkIng("a", "z", 0, rule("h.com", "Exact /p az:80")),
			mkIng("a", "y", 0, rule("h.com", "Exact /p ay:80", "Exact /p dup:80")),
		},
	}))
	if m := tab.Match("h.com", "/p"); m.Route.Backend.Service != "ay" {
		t.Errorf("winner %s", m.Route.Backend.Service)
	}
	if !hasProblem(ps, "a/z", "already served by a/y") || !hasProblem(ps, "b/x", "already served by a/y") || !hasProblem(ps, "a/y", "listed twice") {
		t.Error(ps)
	}
}

func TestSameHostDifferentTypesNoConflict(t *testing.T) {
	tab, ps := Build(withServices(Input{
		IngressClasses: []*networkingv1.IngressClass{podnetClass(false)},
		Ingresses: []*networkingv1.Ingress{
			mkIng("a", "one", 0, rule("h.com", "Exact /p e:80")),
			mkIng("a", "two", 1, rule("h.com", "Prefix /p p:80")),
		},
	}))
	if len(ps) != 0 {
		t.Fatal(ps)
	}
	if tab.Match("h.com", "/p").Route.Backend.Service != "e" || tab.Match("h.com", "/p/q").Route.Backend.Service != "p" {
		t.Error("merge of Exact and Prefix")
	}
}

func TestServed(t *testing.T) {
	s := func(v string) *string { return &v }
	withClass := func(c *string) ingOpt {
		return func(i *networkingv1.Ingress) { i.Spec.IngressClassName = c }
	}
	def, nodef := podnetClass(true), podnetClass(false)
	other := otherClass("nginx")
	custom := podnetClass(false)
	custom.Name = "edge"
	otherDefault := otherClass("nginx")
	otherDefault.Annotations = map[string]string{defaultClassAnnotation: "true"}
	cases := []struct {
		name    string
		ing     *networkingv1.Ingress
		classes []*networkingv1.IngressClass
		want    bool
	}{
		{"spec podnet", mkIng("a", "i", 0), []*networkingv1.IngressClass{nodef}, true},
		{"spec podnet, no class object", mkIng("a", "i", 0), nil, false},
		{"spec other", mkIng("a", "i", 0, withClass(s("nginx"))), []*networkingv1.IngressClass{nodef, other}, false},
		{"spec custom class of ours", mkIng("a", "i", 0, withClass(s("edge"))), []*networkingv1.IngressClass{custom}, true},
		{"spec unknown class", mkIng("a", "i", 0, withClass(s("nope"))), []*networkingv1.IngressClass{def}, false},
		{"none, default ours", mkIng("a", "i", 0, noClass()), []*networkingv1.IngressClass{def}, true},
		{"none, empty name, default ours", mkIng("a", "i", 0, withClass(s(""))), []*networkingv1.IngressClass{def}, true},
		{"none, ours not default", mkIng("a", "i", 0, noClass()), []*networkingv1.IngressClass{nodef}, false},
		{"none, other default", mkIng("a", "i", 0, noClass()), []*networkingv1.IngressClass{nodef, otherDefault}, false},
		{"legacy podnet", mkIng("a", "i", 0, noClass(), ann(legacyClassAnnotation, "podnet")), []*networkingv1.IngressClass{nodef}, true},
		{"legacy podnet, no classes", mkIng("a", "i", 0, noClass(), ann(legacyClassAnnotation, "podnet")), nil, true},
		{"legacy podnet, only other classes", mkIng("a", "i", 0, noClass(), ann(legacyClassAnnotation, "podnet")), []*networkingv1.IngressClass{other}, true},
		{"legacy custom", mkIng("a", "i", 0, noClass(), ann(legacyClassAnnotation, "edge")), []*networkingv1.IngressClass{custom}, true},
		{"legacy podnet, ours named edge", mkIng("a", "i", 0, noClass(), ann(legacyClassAnnotation, "podnet")), []*networkingv1.IngressClass{custom}, false},
		{"legacy nginx", mkIng("a", "i", 0, noClass(), ann(legacyClassAnnotation, "nginx")), []*networkingv1.IngressClass{def, other}, false},
		{"legacy nginx, ours default", mkIng("a", "i", 0, noClass(), ann(legacyClassAnnotation, "nginx")), []*networkingv1.IngressClass{def}, false},
		{"spec wins over legacy", mkIng("a", "i", 0, ann(legacyClassAnnotation, "nginx")), []*networkingv1.IngressClass{def}, true},
		{"nil", nil, []*networkingv1.IngressClass{def}, false},
	}
	for _, c := range cases {
		if got := Served(c.ing, c.classes); got != c.want {
			t.Errorf("%s: Served = %v", c.name, got)
		}
	}
}

func TestBuildSkipsUnserved(t *testing.T) {
	other := "nginx"
	tab, ps := Build(withServices(Input{
		IngressClasses: []*networkingv1.IngressClass{podnetClass(false), otherClass("nginx")},
		Ingresses: []*networkingv1.Ingress{
			mkIng("a", "theirs", 0, func(i *networkingv1.Ingress) { i.Spec.IngressClassName = &other }, rule("h.com", "Prefix / x:80"), defBackend("x:80")),
			mkIng("a", "unclassed", 0, noClass(), rule("h.com", "Prefix / x:80"), ann("proxy-body-size", "bad")),
		},
	}))
	if len(tab.Routes()) != 0 || tab.DefaultBackend() != nil || len(ps) != 0 {
		t.Errorf("routes %v default %v problems %v", tab.Routes(), tab.DefaultBackend(), ps)
	}
}

func TestServerAlias(t *testing.T) {
	tab, ps := Build(withServices(Input{
		IngressClasses: []*networkingv1.IngressClass{podnetClass(false)},
		Ingresses: []*networkingv1.Ingress{
			mkIng("a", "one", 0, ann("server-alias", "www.foo.com, *.alias.com, bar.com"), rule("foo.com", "Prefix / foo:80")),
			mkIng("a", "two", 1, ann("server-alias", "www.foo.com"), rule("bar.com", "Prefix / bar:80")),
		},
	}))
	for host, want := range map[string]string{"foo.com": "foo", "www.foo.com": "foo", "x.alias.com": "foo", "bar.com": "bar", "alias.com": ""} {
		got := ""
		if m := tab.Match(host, "/"); m.Route != nil {
			got = m.Route.Backend.Service
		}
		if got != want {
			t.Errorf("%s -> %q, want %q", host, got, want)
		}
	}
	if m := tab.Match("www.foo.com", "/"); m.Route.Host != "foo.com" {
		t.Errorf("route host %q", m.Route.Host)
	}
	if !hasProblem(ps, "a/one", "server-alias bar.com is the host of a rule") || !hasProblem(ps, "a/two", "already an alias of a/one") || len(ps) != 2 {
		t.Error(ps)
	}
}

func TestDefaultBackendAnnotation(t *testing.T) {
	in := Input{
		IngressClasses: []*networkingv1.IngressClass{podnetClass(false)},
		Ingresses: []*networkingv1.Ingress{
			mkIng("a", "one", 0, ann("default-backend", "errors"), rule("foo.com", "Prefix / foo:80")),
			mkIng("a", "two", 1, ann("default-backend", "missing"), rule("bar.com", "Prefix / bar:80")),
		},
		Services: []*corev1.Service{mkSvc("a", "errors", "metrics:9090", "http:8080")},
	}
	tab, ps := Build(withServices(in))
	d := tab.Match("foo.com", "/").Route.DefaultBackend
	if d == nil || d.Service != "errors" || d.Port != "9090" || d.Err != "" {
		t.Errorf("default backend %+v", d)
	}
	d = tab.Match("bar.com", "/").Route.DefaultBackend
	if d == nil || d.Err != "service a/missing not found" {
		t.Errorf("default backend %+v", d)
	}
	if !hasProblem(ps, "a/two", "service a/missing not found") || len(ps) != 1 {
		t.Error(ps)
	}
}

func TestCanaryOfRegexAndExact(t *testing.T) {
	tab, ps := Build(withServices(Input{
		IngressClasses: []*networkingv1.IngressClass{podnetClass(false)},
		Ingresses: []*networkingv1.Ingress{
			mkIng("a", "main", 0, ann("use-regex", "true"), rule("h.com", "Impl /re/.* re:80", "Exact /e e:80")),
			mkIng("a", "c1", 1, ann("canary", "true"), ann("canary-by-header", "X-C"), rule("h.com", "Prefix /re/.* cre:80", "Prefix /e ce:80")),
			mkIng("a", "c2", 2, ann("canary", "true"), rule("h.com", "Exact /e ce2:80")),
		},
	}))
	if len(ps) != 0 {
		t.Fatal(ps)
	}
	re := tab.Match("h.com", "/re/x").Route
	if len(re.Canaries) != 1 || re.Canaries[0].Backend.Service != "cre" || re.Canaries[0].Config.CanaryByHeader != "X-C" {
		t.Errorf("%+v", re.Canaries)
	}
	e := tab.Match("h.com", "/e").Route
	if len(e.Canaries) != 2 || e.Canaries[0].Backend.Service != "ce" || e.Canaries[1].Backend.Service != "ce2" {
		t.Errorf("%+v", e.Canaries)
	}
}

func TestBadPaths(t *testing.T) {
	_, ps := Build(withServices(Input{
		IngressClasses: []*networkingv1.IngressClass{podnetClass(false)},
		Ingresses: []*networkingv1.Ingress{
			mkIng("a", "re", 0, ann("use-regex", "true"), rule("h.com", "Impl /(unclosed x:80")),
			mkIng("a", "rel", 0, rule("h.com", "Exact relative x:80")),
			mkIng("a", "star", 0, ann("use-regex", "true"), rule("h.com", "Impl *0 x:80")),
			mkIng("a", "escape", 0, ann("use-regex", "true"), rule("h.com", "Impl /a)|(/b x:80")),
		},
	}))
	for _, p := range [][2]string{{"a/re", "not a valid regular expression"}, {"a/rel", "must start with /"}, {"a/star", "missing argument"}, {"a/escape", "unexpected )"}} {
		if !hasProblem(ps, p[0], p[1]) {
			t.Errorf("no problem %v in %v", p, ps)
		}
	}
	// Alternatives stay anchored at the start.
	tab, ps := Build(withServices(Input{
		IngressClasses: []*networkingv1.IngressClass{podnetClass(false)},
		Ingresses:      []*networkingv1.Ingress{mkIng("a", "alt", 0, ann("use-regex", "true"), rule("h.com", "Impl /a|/b x:80"))},
	}))
	if len(ps) != 0 || tab.Match("h.com", "/b/x").Route == nil || tab.Match("h.com", "/x/b").Route != nil {
		t.Errorf("alternatives: %v", ps)
	}
}

func TestRewrite(t *testing.T) {
	g := []string{"/svc/a/b", "/", "a/b"}
	cases := []struct {
		target string
		groups []string
		want   string
	}{
		{"/$2", g, "/a/b"},
		{"/$1abc", g, "//abc"},
		{"/$10", g, "//0"},
		{"$0", g, "/svc/a/b"},
		{"/$3/x", g, "//x"},
		{"/$9", nil, "/"},
		{"/$$", g, "/$$"},
		{"/$$2", g, "/$a/b"},
		{"$host$2", g, "$hosta/b"},
		{"/end$", g, "/end$"},
		{"/plain", g, "/plain"},
		{"", g, ""},
	}
	for _, c := range cases {
		if got := Rewrite(c.target, c.groups); got != c.want {
			t.Errorf("Rewrite(%q) = %q, want %q", c.target, got, c.want)
		}
	}
}

func TestNormalizeHost(t *testing.T) {
	for in, want := range map[string]string{
		"foo.com": "foo.com", "Foo.COM": "foo.com", "foo.com:80": "foo.com", "foo.com.": "foo.com",
		"FOO.com.:8443": "foo.com", "[::1]:80": "::1", "[::1]": "::1", "[FD00::1]": "fd00::1", "::1": "::1",
		"10.0.0.1:80": "10.0.0.1", "": "", ":80": "", "[": "[",
	} {
		if got := NormalizeHost(in); got != want {
			t.Errorf("NormalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMatchAllocs(t *testing.T) {
	tab, _ := Build(routingInput())
	for _, c := range [][2]string{{"foo.com", "/foo/bar/x"}, {"foo.com:80", "/v11/x"}, {"a.foo.com", "/"}, {"nothing.org", "/zzz"}, {"d.com", "/nope"}, {"re.com", "/x"}} {
		n := testing.AllocsPerRun(100, func() { _ = tab.Match(c[0], c[1]) })
		if n != 0 {
			t.Errorf("Match(%q, %q): %v allocations", c[0], c[1], n)
		}
	}
}

func TestConcurrentMatch(t *testing.T) {
	tab, _ := Build(routingInput())
	done := make(chan bool)
	for g := range 4 {
		go func() {
			defer func() { done <- true }()
			for i := range 200 {
				_ = tab.Match("foo.com", "/foo/bar")
				_ = tab.Match("re.com", "/api/v"+strings.Repeat("1", i%5+g))
				_ = tab.Certificate("a.foo.com")
			}
		}()
	}
	for range 4 {
		<-done
	}
}
