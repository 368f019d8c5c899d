package nft

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"sigs.k8s.io/knftables"
)

var testAtt = Attachment{
	Key:        "net1/pn0123456789a",
	IPs:        []netip.Prefix{netip.MustParsePrefix("10.22.0.5/24"), netip.MustParsePrefix("fd00::5/64")},
	Masquerade: true,
	Ports: []PortMapping{
		{Proto: "tcp", HostPort: 8080, ContainerPort: 80},
		{Proto: "udp", HostPort: 53, ContainerPort: 5353, HostIP: netip.MustParseAddr("127.0.0.1")},
	},
}

func TestAddRemoveReturnsToBaseline(t *testing.T) {
	ctx := context.Background()
	fake := knftables.NewFake(knftables.InetFamily, TableName)
	d := New(fake)
	// Baseline: the table with no attachment.
	if err := d.Remove(ctx, Attachment{Key: "none"}); err != nil {
		t.Fatal(err)
	}
	base := SortedDump(fake)
	if err := d.Add(ctx, testAtt); err != nil {
		t.Fatal(err)
	}
	if err := d.Add(ctx, testAtt); err != nil {
		t.Fatalf("repeated Add: %v", err)
	}
	got := SortedDump(fake)
	for _, want := range []string{
		`add element inet podnet masq-src4 { 10.22.0.5 comment "net1/pn0123456789a" }`,
		`add element inet podnet masq-src6 { fd00::5 comment "net1/pn0123456789a" }`,
		`add element inet podnet pod-nets4 { 10.22.0.5 . 10.22.0.0/24 comment "net1/pn0123456789a" }`,
		`add element inet podnet hostports4 { 0.0.0.0/0 . tcp . 8080 comment "net1/pn0123456789a" : 10.22.0.5 . 80 }`,
		`add element inet podnet hostports4 { 127.0.0.1 . udp . 53 comment "net1/pn0123456789a" : 10.22.0.5 . 5353 }`,
		`add element inet podnet hostports6 { ::/0 . tcp . 8080 comment "net1/pn0123456789a" : fd00::5 . 80 }`,
		`add rule inet podnet postrouting jump pod-masq`,
		`add chain inet podnet prerouting { type nat hook prerouting priority -100 ; }`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("dump lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "hostports6 { ::/0 . udp . 53") {
		t.Error("an IPv4 hostIP mapping leaked into hostports6")
	}
	if err := d.Check(ctx, testAtt); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := d.Remove(ctx, testAtt); err != nil {
		t.Fatal(err)
	}
	if err := d.Remove(ctx, testAtt); err != nil {
		t.Fatalf("repeated Remove: %v", err)
	}
	if after := SortedDump(fake); after != base {
		t.Fatalf("not back to baseline:\n%s\nwant\n%s", after, base)
	}
	if err := d.Check(ctx, testAtt); err == nil || !strings.Contains(err.Error(), "has no element") {
		t.Fatalf("Check after Remove: %v", err)
	}
}

func TestNoMasqueradeNoMasqElements(t *testing.T) {
	fake := knftables.NewFake(knftables.InetFamily, TableName)
	a := testAtt
	a.Masquerade = false
	if err := New(fake).Add(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(fake.Dump(), "add element inet podnet masq-src4") {
		t.Fatal("masq element for a pod without ipMasq")
	}
}

func TestSweepKeepsLiveAndOtherNetworks(t *testing.T) {
	ctx := context.Background()
	fake := knftables.NewFake(knftables.InetFamily, TableName)
	d := New(fake)
	live := testAtt
	dead := Attachment{Key: "net1/pndead", IPs: []netip.Prefix{netip.MustParsePrefix("10.22.0.6/24")}, Masquerade: true}
	other := Attachment{Key: "net2/pnother", IPs: []netip.Prefix{netip.MustParsePrefix("10.23.0.6/24")}, Masquerade: true}
	for _, a := range []Attachment{live, dead, other} {
		if err := d.Add(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Sweep(ctx, "net1/", func(k string) bool { return k == "pn0123456789a" }); err != nil {
		t.Fatal(err)
	}
	for _, a := range []Attachment{live, other} {
		if err := d.Check(ctx, a); err != nil {
			t.Errorf("swept %s: %v", a.Key, err)
		}
	}
	if strings.Contains(fake.Dump(), "pndead") {
		t.Error("dead attachment survived the sweep")
	}
}

// A damaged table (a rule deleted by hand) is healed by Ensure, and a
// deleted table by the next Add.
func TestEnsureAndAddHeal(t *testing.T) {
	ctx := context.Background()
	fake := knftables.NewFake(knftables.InetFamily, TableName)
	d := New(fake)
	if err := d.Add(ctx, testAtt); err != nil {
		t.Fatal(err)
	}
	want := SortedDump(fake)
	tx := fake.NewTransaction()
	tx.Flush(&knftables.Chain{Name: ChainMasquerade})
	if err := fake.Run(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if err := d.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if got := SortedDump(fake); got != want {
		t.Fatalf("not healed by Ensure:\n%s", got)
	}
	tx = fake.NewTransaction()
	tx.Delete(&knftables.Table{})
	if err := fake.Run(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if err := d.Add(ctx, testAtt); err != nil {
		t.Fatal(err)
	}
	if got := SortedDump(fake); got != want {
		t.Fatalf("deleted table not re-created by Add:\n%s", got)
	}
}

// recorder counts the transactions that re-declare chains.
type recorder struct {
	*knftables.Fake
	txs []string
}

func (r *recorder) Run(ctx context.Context, tx *knftables.Transaction) error {
	r.txs = append(r.txs, tx.String())
	return r.Fake.Run(ctx, tx)
}

// Once the table has this layout, Add and Remove touch only elements; a
// table of another layout is re-declared and its old marker dropped.
func TestFastPathAndLayoutUpgrade(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{Fake: knftables.NewFake(knftables.InetFamily, TableName)}
	d := New(rec)
	if err := d.Add(ctx, testAtt); err != nil {
		t.Fatal(err)
	}
	first := len(rec.txs)
	if err := d.Remove(ctx, testAtt); err != nil {
		t.Fatal(err)
	}
	if err := d.Add(ctx, testAtt); err != nil {
		t.Fatal(err)
	}
	if len(rec.txs) != first+2 {
		t.Fatalf("fast path fell back: %d transactions", len(rec.txs)-first)
	}
	for _, tx := range rec.txs[first:] {
		if strings.Contains(tx, "chain") {
			t.Fatalf("fast path re-declared chains:\n%s", tx)
		}
	}
	// Pretend an older podnet made the table.
	tx := rec.Fake.NewTransaction()
	tx.Delete(&knftables.Set{Name: layoutSet})
	tx.Add(&knftables.Set{Name: "layout-old", Type: "inet_service"})
	if err := rec.Fake.Run(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if err := d.Add(ctx, testAtt); err != nil {
		t.Fatal(err)
	}
	dump := rec.Fake.Dump()
	if strings.Contains(dump, "layout-old") || !strings.Contains(dump, layoutSet) {
		t.Fatalf("layout not upgraded:\n%s", dump)
	}
}

func TestNonMasqueradeCIDRs(t *testing.T) {
	ctx := context.Background()
	fake := knftables.NewFake(knftables.InetFamily, TableName)
	d := New(fake)
	if err := d.Remove(ctx, Attachment{Key: "none"}); err != nil {
		t.Fatal(err)
	}
	base := SortedDump(fake)
	a := testAtt
	a.NonMasquerade = []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),    // holds the pod's own 10.22.0.0/24: replaces it
		netip.MustParsePrefix("10.1.0.0/16"),   // inside 10.0.0.0/8: dropped
		netip.MustParsePrefix("172.16.0.0/12"), // disjoint: added
		netip.MustParsePrefix("fd01::/48"),     // the IPv6 address's family: added beside fd00::/64
	}
	if err := d.Add(ctx, a); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(SortedDump(fake), "\n") {
		if strings.Contains(l, "pod-nets") && strings.Contains(l, "add element") {
			got = append(got, l)
		}
	}
	want := []string{
		`add element inet podnet pod-nets4 { 10.22.0.5 . 10.0.0.0/8 comment "net1/pn0123456789a" }`,
		`add element inet podnet pod-nets4 { 10.22.0.5 . 172.16.0.0/12 comment "net1/pn0123456789a" }`,
		`add element inet podnet pod-nets6 { fd00::5 . fd00::/64 comment "net1/pn0123456789a" }`,
		`add element inet podnet pod-nets6 { fd00::5 . fd01::/48 comment "net1/pn0123456789a" }`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("pod-nets elements:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := d.Check(ctx, a); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := d.Remove(ctx, a); err != nil {
		t.Fatal(err)
	}
	if after := SortedDump(fake); after != base {
		t.Fatalf("not back to baseline:\n%s\nwant\n%s", after, base)
	}
}
