package clusteripam

import (
	"errors"
	"net/netip"
	"testing"
)

func TestPoolBlocks(t *testing.T) {
	p, err := NewPool("10.244.0.0/16", 24)
	if err != nil {
		t.Fatal(err)
	}
	if p.Size() != 256 {
		t.Fatalf("size %d", p.Size())
	}
	for i, want := range map[int]string{0: "10.244.0.0/24", 1: "10.244.1.0/24", 255: "10.244.255.0/24"} {
		if got := p.Block(i).String(); got != want {
			t.Errorf("block %d = %s, want %s", i, got, want)
		}
	}
	p6, err := NewPool("fd00:10::/56", 64)
	if err != nil {
		t.Fatal(err)
	}
	if got := p6.Block(3).String(); got != "fd00:10:0:3::/64" {
		t.Errorf("v6 block 3 = %s", got)
	}
	if !p.Contains(netip.MustParsePrefix("10.244.7.0/24")) || p.Contains(netip.MustParsePrefix("10.244.7.0/25")) || p.Contains(netip.MustParsePrefix("10.245.0.0/24")) {
		t.Error("Contains")
	}
}

func TestPoolFirstFree(t *testing.T) {
	p, _ := NewPool("10.0.0.0/30", 31)
	used := map[netip.Prefix]bool{}
	got, err := p.FirstFree(used, "a")
	if err != nil || got.String() != "10.0.0.0/31" {
		t.Fatalf("first: %v %v", got, err)
	}
	used[got] = true
	got, _ = p.FirstFree(used, "b")
	if got.String() != "10.0.0.2/31" {
		t.Fatalf("second: %v", got)
	}
	used[got] = true
	_, err = p.FirstFree(used, "n3")
	if !errors.Is(err, ErrExhausted) || err.Error() != "cluster CIDR 10.0.0.0/30 has no free /31 for node n3 (all 2 in use): cluster CIDR exhausted" {
		t.Fatalf("exhausted: %v", err)
	}
	// A freed block in the middle is the next one handed out.
	delete(used, netip.MustParsePrefix("10.0.0.0/31"))
	if got, _ := p.FirstFree(used, "c"); got.String() != "10.0.0.0/31" {
		t.Fatalf("reuse: %v", got)
	}
}

func TestNewPoolErrors(t *testing.T) {
	for _, c := range []struct {
		cidr string
		bits int
	}{{"10.244.0.1/16", 24}, {"nope", 24}, {"10.244.0.0/16", 16}, {"10.244.0.0/16", 33}} {
		if _, err := NewPool(c.cidr, c.bits); err == nil {
			t.Errorf("NewPool(%s, %d): no error", c.cidr, c.bits)
		}
	}
}
