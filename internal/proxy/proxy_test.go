package proxy

import (
	"context"
	"strings"
	"testing"

	"github.com/podnet/podnet/internal/nft"
	"sigs.k8s.io/knftables"
)

func newFake(t *testing.T) (*knftables.Fake, *Proxier) {
	t.Helper()
	f := knftables.NewFake(knftables.InetFamily, nft.TableName)
	return f, New(Config{NodeName: "n1", ClusterCIDR: testClusterCIDR, ServiceCIDR: testServiceCIDR, NFT: f})
}

func mustSync(t *testing.T, p *Proxier) Stats {
	t.Helper()
	st, err := p.Sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// countingNFT counts the operations of each transaction it runs.
type countingNFT struct {
	*knftables.Fake
	last string
}

func (c *countingNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	c.last = tx.String()
	return c.Fake.Run(ctx, tx)
}

func grepLines(dump, substr string) []string {
	var out []string
	for _, l := range strings.Split(dump, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

func TestDispatchAndEndpointsInDump(t *testing.T) {
	f, p := newFake(t)
	a := svc("default", "web", "10.96.0.20", 80, nodePort(30080), externalIP("192.168.1.50"))
	p.SetService(a)
	p.SetSlice(slice(a, "web-1", 8080, eps(3, "10.244.1")...))
	st := mustSync(t, p)
	if st.Services != 1 || st.Endpoints != 3 {
		t.Fatalf("stats %+v", st)
	}
	d := nft.SortedDump(f)
	for _, want := range []string{
		`add element inet podnet service-ips { 10.96.0.20 . tcp . 80 comment "default/web" : goto svc-default/web/tcp/80-`,
		`add element inet podnet service-ips { 192.168.1.50 . tcp . 80 comment "default/web" : goto ext-default/web/tcp/80-`,
		`add element inet podnet service-nodeports { tcp . 30080 comment "default/web" : goto ext-default/web/tcp/80-`,
		`add element inet podnet service-eps { 0x80001000 comment "default/web/tcp/80/cluster" : 10.244.1.1 . 8080 }`,
		`add element inet podnet service-eps { 0x80001002 comment "default/web/tcp/80/cluster" : 10.244.1.3 . 8080 }`,
		`meta mark set numgen random mod 3 offset 0x80001000`,
		`add rule inet podnet prerouting jump services`,
		`add rule inet podnet postrouting jump services-masq`,
		`add element inet podnet service-hairpin { 10.244.1.2 . 10.244.1.2 }`,
	} {
		if !strings.Contains(d, want) {
			t.Errorf("dump lacks %q:\n%s", want, d)
		}
	}
	// Base chains: services before hostports, services-masq before pod-masq.
	if got := grepLines(f.Dump(), "add rule inet podnet prerouting"); len(got) != 2 || !strings.HasSuffix(got[0], "jump services") || !strings.HasSuffix(got[1], "jump hostports") {
		t.Errorf("prerouting dispatch %q", got)
	}
	// Every chain with dispatch has exactly one rule reading service-eps
	// per protocol: no per-Service rule references a map.
	if n := len(grepLines(d, "map @"+MapEndpoints)); n != 3 {
		t.Errorf("%d rules read %s, want 3 (services-dnat only)", n, MapEndpoints)
	}
}

func TestNoEndpointsRejects(t *testing.T) {
	f, p := newFake(t)
	a := svc("default", "db", "10.96.0.30", 5432, nodePort(30432))
	p.SetService(a)
	mustSync(t, p)
	d := nft.SortedDump(f)
	for _, want := range []string{
		`add element inet podnet service-noep { 10.96.0.30 . tcp . 5432 comment "default/db" : goto services-reject }`,
		`add element inet podnet service-noep-nodeports { tcp . 30432 comment "default/db" : goto services-reject }`,
	} {
		if !strings.Contains(d, want) {
			t.Errorf("dump lacks %q", want)
		}
	}
	if strings.Contains(d, "svc-default/db") {
		t.Errorf("a Service without endpoints has a chain:\n%s", d)
	}
	// Terminating-but-serving endpoints are the fallback.
	p.SetSlice(slice(a, "db-1", 5432, ep{ip: "10.244.1.7", node: "n1", serve: true, term: true}))
	mustSync(t, p)
	d = nft.SortedDump(f)
	if strings.Contains(d, "service-noep {") && strings.Contains(d, "10.96.0.30 . tcp") && len(grepLines(d, "service-noep { 10.96.0.30")) > 0 {
		t.Errorf("still rejecting with a serving terminating endpoint")
	}
	if !strings.Contains(d, ": 10.244.1.7 . 5432 }") {
		t.Errorf("terminating endpoint not used as fallback:\n%s", d)
	}
	// A ready endpoint wins over the terminating one.
	p.SetSlice(slice(a, "db-2", 5432, readyEP("10.244.1.8", "n1")))
	mustSync(t, p)
	d = nft.SortedDump(f)
	if strings.Contains(d, "10.244.1.7 . 5432") || !strings.Contains(d, "10.244.1.8 . 5432") {
		t.Errorf("terminating endpoint used although one is ready:\n%s", d)
	}
}

func TestOneChangeTouchesOnlyThatService(t *testing.T) {
	f := knftables.NewFake(knftables.InetFamily, nft.TableName)
	c := &countingNFT{Fake: f}
	p := New(Config{NodeName: "n1", ClusterCIDR: testClusterCIDR, ServiceCIDR: testServiceCIDR, NFT: c})
	var svcs = map[string]bool{}
	for i := 0; i < 50; i++ {
		name := "s" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		s := svc("default", name, "10.96.1."+itoa(i+1), 80)
		svcs[name] = true
		p.SetService(s)
		p.SetSlice(slice(s, name+"-1", 8080, eps(3, "10.244."+itoa(i+1))...))
	}
	mustSync(t, p)
	// Change one endpoint of one Service.
	target := svc("default", "saa", "10.96.1.1", 80)
	p.SetSlice(slice(target, "saa-1", 8080, readyEP("10.244.1.1", "n1"), readyEP("10.244.1.2", "n1"), readyEP("10.244.1.99", "n1")))
	mustSync(t, p)
	tx := c.last
	for _, l := range strings.Split(strings.TrimSpace(tx), "\n") {
		if strings.Contains(l, "10.244.1.3") || strings.Contains(l, "10.244.1.99") || strings.Contains(l, "default/saa") || strings.Contains(l, "0x80001") {
			continue
		}
		t.Errorf("change of default/saa touched %q", l)
	}
	if strings.Contains(tx, "flush") {
		t.Errorf("an endpoint change flushed something:\n%s", tx)
	}
	// Nothing changed: no transaction at all.
	c.last = ""
	p.SetService(target)
	mustSync(t, p)
	if c.last != "" {
		t.Errorf("an unchanged Service produced a transaction:\n%s", c.last)
	}
}

func itoa(i int) string {
	const d = "0123456789"
	if i < 10 {
		return d[i : i+1]
	}
	return itoa(i/10) + d[i%10:i%10+1]
}

// A new Proxier over the same table (an agent restart after kill -9)
// converges by diff: with the same inputs its first sync changes nothing
// but the static declaration; with a change it sends only that change.
func TestRestartConvergesByDiff(t *testing.T) {
	f := knftables.NewFake(knftables.InetFamily, nft.TableName)
	c := &countingNFT{Fake: f}
	mk := func() *Proxier {
		return New(Config{NodeName: "n1", ClusterCIDR: testClusterCIDR, ServiceCIDR: testServiceCIDR, NFT: c})
	}
	a := svc("default", "web", "10.96.0.20", 80, nodePort(30080))
	b := svc("default", "aff", "10.96.0.21", 81, affinity(30), etpLocal(), nodePort(30081))
	gone := svc("default", "gone", "10.96.0.22", 82)
	feed := func(p *Proxier, withGone bool) {
		p.SetService(a)
		p.SetSlice(slice(a, "web-1", 8080, eps(3, "10.244.1")...))
		p.SetService(b)
		p.SetSlice(slice(b, "aff-1", 8080, readyEP("10.244.1.9", "n1"), readyEP("10.244.2.9", "n2")))
		if withGone {
			p.SetService(gone)
			p.SetSlice(slice(gone, "gone-1", 8080, readyEP("10.244.3.1", "n2")))
		}
	}
	p1 := mk()
	feed(p1, true)
	mustSync(t, p1)
	before := nft.SortedDump(f)

	p2 := mk()
	feed(p2, true)
	mustSync(t, p2)
	if after := nft.SortedDump(f); after != before {
		t.Fatalf("restart changed the table:\n%s\n---\n%s", before, after)
	}
	for _, l := range strings.Split(c.last, "\n") {
		if strings.Contains(l, "svc-default") || strings.Contains(l, "ext-default") || strings.Contains(l, "element") {
			t.Errorf("restart with the same state rewrote %q", l)
		}
	}
	// A Service deleted while the agent was down goes away, alone.
	p3 := mk()
	feed(p3, false)
	mustSync(t, p3)
	d := nft.SortedDump(f)
	if strings.Contains(d, "default/gone") || strings.Contains(d, "10.244.3.1") {
		t.Errorf("deleted Service left:\n%s", d)
	}
	for _, l := range grepLines(c.last, "default/") {
		if !strings.Contains(l, "default/gone") && !strings.Contains(l, "10.244.3.1") {
			t.Errorf("removing default/gone touched %q", l)
		}
	}
}

func TestAllDeletedBackToBaseline(t *testing.T) {
	f, p := newFake(t)
	mustSync(t, p)
	base := nft.SortedDump(f)
	a := svc("default", "web", "10.96.0.20", 80, nodePort(30080), externalIP("192.168.1.50"))
	b := svc("default", "aff", "10.96.0.21", 81, affinity(30), etpLocal(), nodePort(30081))
	p.SetService(a)
	p.SetService(b)
	sa := slice(a, "web-1", 8080, eps(3, "10.244.1")...)
	sb := slice(b, "aff-1", 8080, readyEP("10.244.1.9", "n1"))
	p.SetSlice(sa)
	p.SetSlice(sb)
	mustSync(t, p)
	p.DeleteService("default", "web")
	p.DeleteService("default", "aff")
	p.DeleteSlice(sa)
	p.DeleteSlice(sb)
	mustSync(t, p)
	if got := nft.SortedDump(f); got != base {
		t.Errorf("table not back to baseline:\n%s\n--- want\n%s", got, base)
	}
}

// Two Services with one frontend (an externalIP and port, a nodePort):
// the first keeps it and the sync succeeds (on the kernel two elements
// with one key would fail every transaction); when it lets go, the other
// gets it at the next sync.
func TestFrontendConflict(t *testing.T) {
	f, p := newFake(t)
	a := svc("default", "a", "10.96.0.20", 80, externalIP("192.168.1.50"), nodePort(30080))
	b := svc("default", "b", "10.96.0.21", 80, externalIP("192.168.1.50"), nodePort(30080))
	p.SetService(a)
	p.SetService(b)
	p.SetSlice(slice(a, "a-1", 8080, readyEP("10.244.1.1", "n1")))
	p.SetSlice(slice(b, "b-1", 8080, readyEP("10.244.1.2", "n1")))
	mustSync(t, p)
	d := nft.SortedDump(f)
	for _, want := range []string{
		`service-ips { 192.168.1.50 . tcp . 80 comment "default/a"`,
		`service-nodeports { tcp . 30080 comment "default/a"`,
		`service-ips { 10.96.0.21 . tcp . 80 comment "default/b"`, // b keeps its own ClusterIP
	} {
		if !strings.Contains(d, want) {
			t.Errorf("dump lacks %q:\n%s", want, d)
		}
	}
	if strings.Contains(d, `192.168.1.50 . tcp . 80 comment "default/b"`) || strings.Contains(d, `30080 comment "default/b"`) {
		t.Errorf("b got a's frontend:\n%s", d)
	}
	p.DeleteService("default", "a")
	st := mustSync(t, p)
	if st.Pending != 1 {
		t.Errorf("after a let go, %d Services pending, want b", st.Pending)
	}
	mustSync(t, p)
	d = nft.SortedDump(f)
	for _, want := range []string{
		`service-ips { 192.168.1.50 . tcp . 80 comment "default/b"`,
		`service-nodeports { tcp . 30080 comment "default/b"`,
	} {
		if !strings.Contains(d, want) {
			t.Errorf("after a's deletion, dump lacks %q:\n%s", want, d)
		}
	}
}
