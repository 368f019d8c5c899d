package clusteripam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/podnet/podnet/internal/testutil"
)

func newAlloc(t *testing.T, cidr string, bits int) *Allocator {
	s, _ := testutil.Store(t)
	p, err := NewPool(cidr, bits)
	if err != nil {
		t.Fatal(err)
	}
	return New(s.Client(), p)
}

func TestAllocateConcurrentDisjoint(t *testing.T) {
	a := newAlloc(t, "10.244.0.0/16", 24)
	ctx := context.Background()
	const n = 20
	got := make([]netip.Prefix, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = a.Allocate(ctx, fmt.Sprintf("n%d", i), netip.Prefix{})
		}()
	}
	wg.Wait()
	seen := map[netip.Prefix]int{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("n%d: %v", i, errs[i])
		}
		if j, dup := seen[got[i]]; dup {
			t.Fatalf("n%d and n%d both got %s", i, j, got[i])
		}
		seen[got[i]] = i
	}
	// Idempotent: a node asking again gets what it holds.
	again, err := a.Allocate(ctx, "n3", netip.Prefix{})
	if err != nil || again != got[3] {
		t.Fatalf("re-allocate n3: %v %v, want %v", again, err, got[3])
	}
	claims, _, err := a.Claims(ctx)
	if err != nil || len(claims) != n {
		t.Fatalf("claims: %v %v", claims, err)
	}
}

func TestAllocateExhaustReleaseReuse(t *testing.T) {
	a := newAlloc(t, "10.9.0.0/23", 24)
	ctx := context.Background()
	c1, _ := a.Allocate(ctx, "a", netip.Prefix{})
	c2, _ := a.Allocate(ctx, "b", netip.Prefix{})
	if c1.String() != "10.9.0.0/24" || c2.String() != "10.9.1.0/24" {
		t.Fatalf("got %s %s", c1, c2)
	}
	_, err := a.Allocate(ctx, "c", netip.Prefix{})
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("want exhausted, got %v", err)
	}
	if ok, err := a.Release(ctx, c1, "b"); ok || err != nil {
		t.Fatalf("release by non-owner: %v %v", ok, err)
	}
	if ok, err := a.Release(ctx, c1, "a"); !ok || err != nil {
		t.Fatalf("release: %v %v", ok, err)
	}
	if _, held, _ := a.Lookup(ctx, "a"); held {
		t.Fatal("a still holds a block")
	}
	c3, err := a.Allocate(ctx, "c", netip.Prefix{})
	if err != nil || c3 != c1 {
		t.Fatalf("reuse: %v %v", c3, err)
	}
}

func TestAllocatePreferAndClaim(t *testing.T) {
	a := newAlloc(t, "10.244.0.0/16", 24)
	ctx := context.Background()
	want := netip.MustParsePrefix("10.244.9.0/24")
	got, err := a.Allocate(ctx, "a", want)
	if err != nil || got != want {
		t.Fatalf("prefer: %v %v", got, err)
	}
	got, err = a.Allocate(ctx, "b", want) // taken: falls back to the lowest free
	if err != nil || got.String() != "10.244.0.0/24" {
		t.Fatalf("prefer taken: %v %v", got, err)
	}
	if err := a.Claim(ctx, want, "c"); !errors.Is(err, ErrTaken) {
		t.Fatalf("claim taken: %v", err)
	}
	if err := a.Claim(ctx, want, "a"); err != nil {
		t.Fatalf("claim own: %v", err)
	}
	if err := a.Claim(ctx, netip.MustParsePrefix("10.244.1.0/24"), "d"); err != nil {
		t.Fatalf("claim free: %v", err)
	}
}
