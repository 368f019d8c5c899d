package route

import (
	"fmt"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
)

// bigInput is n Ingresses in 10 namespaces, each with its own host, four
// paths and a Service with three endpoints; every tenth Ingress also has a
// wildcard host, every twentieth uses regex paths.
func bigInput(n int) Input {
	in := Input{IngressClasses: []*networkingv1.IngressClass{podnetClass(true)}}
	for i := range n {
		ns := fmt.Sprintf("ns%d", i%10)
		svc := fmt.Sprintf("svc%d", i)
		host := fmt.Sprintf("app%d.example.com", i)
		opts := []ingOpt{rule(host,
			"Prefix / "+svc+":80",
			"Prefix /api "+svc+":80",
			"Prefix /api/v1/users "+svc+":80",
			"Exact /healthz "+svc+":80",
		)}
		if i%10 == 0 {
			opts = append(opts, rule("*."+host, "Prefix / "+svc+":80"))
		}
		if i%20 == 0 {
			opts = append(opts, ann("use-regex", "true"), rule("re"+host, "Impl /api/v[0-9]+/(.*) "+svc+":80", "Impl /static/.*\\.(css|js) "+svc+":80"))
		}
		in.Ingresses = append(in.Ingresses, mkIng(ns, fmt.Sprintf("ing%d", i), i, opts...))
		in.Services = append(in.Services, mkSvc(ns, svc, "http:80"))
		in.EndpointSlices = append(in.EndpointSlices, mkSlice(ns, svc, svc+"-1", "http", 8080,
			epOpt{addr: fmt.Sprintf("10.1.%d.%d", i/250, i%250)}, epOpt{addr: fmt.Sprintf("10.2.%d.%d", i/250, i%250)}, epOpt{addr: fmt.Sprintf("10.3.%d.%d", i/250, i%250)}))
	}
	return in
}

var sink Match

func BenchmarkMatch(b *testing.B) {
	tab, ps := Build(bigInput(1000))
	if len(ps) != 0 {
		b.Fatal(ps)
	}
	for _, c := range []struct{ name, host, path string }{
		{"exact-host/prefix", "app517.example.com", "/api/v1/users/42"},
		{"exact-host/root", "app517.example.com:8080", "/index.html"},
		{"exact-host/exact-path", "app517.example.com", "/healthz"},
		{"upper-case-host", "App517.Example.com", "/api"},
		{"wildcard-host", "tenant.app510.example.com", "/x"},
		{"regex", "reapp500.example.com", "/api/v2/things"},
		{"regex-miss", "reapp500.example.com", "/nothing"},
		{"unknown-host", "nothing.example.org", "/"},
	} {
		b.Run(c.name, func(b *testing.B) {
			if m := tab.Match(c.host, c.path); m.Route == nil && c.name != "unknown-host" && c.name != "regex-miss" {
				b.Fatalf("no route for %s %s", c.host, c.path)
			}
			b.ReportAllocs()
			for b.Loop() {
				sink = tab.Match(c.host, c.path)
			}
		})
	}
}

func BenchmarkBuild(b *testing.B) {
	in := bigInput(1000)
	b.ReportAllocs()
	for b.Loop() {
		Build(in)
	}
}

func TestBigTable(t *testing.T) {
	tab, ps := Build(bigInput(1000))
	if len(ps) != 0 {
		t.Fatal(ps)
	}
	if n := len(tab.Routes()); n != 4000+100+100 {
		t.Errorf("%d routes", n)
	}
	m := tab.Match("app999.example.com", "/api/v1/users/x")
	if m.Route == nil || m.Route.Path != "/api/v1/users" || m.Route.Backend.Service != "svc999" || len(m.Route.Backend.Endpoints) != 3 {
		t.Errorf("%+v", m.Route)
	}
	if n := testing.AllocsPerRun(100, func() { sink = tab.Match("tenant.app510.example.com", "/x") }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
