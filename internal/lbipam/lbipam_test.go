package lbipam

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/podnet/podnet/internal/testutil"
)

func TestParsePool(t *testing.T) {
	for _, c := range []struct {
		in, want string
		size     int
		err      string
	}{
		{in: "192.168.250.200-192.168.250.250", want: "192.168.250.200-192.168.250.250", size: 51},
		{in: " 10.0.0.5 - 10.0.0.5 ", want: "10.0.0.5-10.0.0.5", size: 1},
		{in: "192.168.250.192/27", want: "192.168.250.193-192.168.250.222", size: 30},
		{in: "10.1.2.3/32", want: "10.1.2.3-10.1.2.3", size: 1},
		{in: "10.1.2.2/31", want: "10.1.2.2-10.1.2.3", size: 2},
		{in: "10.0.0.9-10.0.0.1", err: "last address before the first"},
		{in: "10.0.0.1/24", err: "host bits set (did you mean 10.0.0.0/24?)"},
		{in: "fd00::1-fd00::9", err: "want IPv4"},
		{in: "nope", err: `load-balancer range "nope": want first-last`},
		{in: "10.0.0.1-x", err: "last address"},
	} {
		p, err := ParsePool(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: error %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || p.String() != c.want || p.Size() != c.size {
			t.Errorf("%q: %v (%d) %v, want %s (%d)", c.in, p, p.Size(), err, c.want, c.size)
		}
	}
	p, _ := ParsePool("192.168.250.200-192.168.250.250")
	for ip, want := range map[string]bool{"192.168.250.199": false, "192.168.250.200": true, "192.168.250.250": true, "192.168.250.251": false} {
		if p.Contains(netip.MustParseAddr(ip)) != want {
			t.Errorf("Contains(%s) = %v", ip, !want)
		}
	}
	for pre, want := range map[string]bool{"192.168.250.0/24": true, "192.168.250.224/28": true, "192.168.250.0/25": false, "10.96.0.0/12": false} {
		if p.Overlaps(netip.MustParsePrefix(pre)) != want {
			t.Errorf("Overlaps(%s) = %v", pre, !want)
		}
	}
}

func TestClaimAllocateRelease(t *testing.T) {
	s, _ := testutil.Store(t)
	a := New(s.Client())
	ctx := context.Background()
	pool, _ := ParsePool("10.5.0.1-10.5.0.10")
	const n = 10
	got := make([]netip.Addr, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ok bool
			got[i], ok, errs[i] = a.Allocate(ctx, pool, fmt.Sprintf("default/s%d", i))
			if errs[i] == nil && !ok {
				errs[i] = errors.New("pool exhausted")
			}
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("s%d: %v", i, errs[i])
		}
		if j, dup := seen[got[i]]; dup {
			t.Fatalf("s%d and s%d both got %s", i, j, got[i])
		}
		seen[got[i]] = i
	}
	if _, ok, err := a.Allocate(ctx, pool, "default/extra"); err != nil || ok {
		t.Fatalf("allocate from a full pool: ok=%v err=%v", ok, err)
	}
	// Idempotent.
	if ip, ok, err := a.Allocate(ctx, pool, "default/s3"); err != nil || !ok || ip != got[3] {
		t.Fatalf("re-allocate: %v %v %v, want %v", ip, ok, err, got[3])
	}
	// Another Service's address is refused, naming the holder.
	err := a.Claim(ctx, got[3], "default/extra")
	if !errors.Is(err, ErrTaken) || !strings.Contains(err.Error(), "default/s3") {
		t.Fatalf("claim of a held address: %v", err)
	}
	// A Service holds one address only.
	if err := a.Claim(ctx, netip.MustParseAddr("10.5.0.99"), "default/s3"); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Fatalf("second claim: %v", err)
	}
	// Release compares the owner.
	if ok, err := a.Release(ctx, got[3], "default/s4"); err != nil || ok {
		t.Fatalf("release by a non-owner: %v %v", ok, err)
	}
	if ok, err := a.Release(ctx, got[3], "default/s3"); err != nil || !ok {
		t.Fatalf("release: %v %v", ok, err)
	}
	if _, ok, _ := a.Held(ctx, "default/s3"); ok {
		t.Fatal("service key left after release")
	}
	if err := a.Claim(ctx, got[3], "default/extra"); err != nil {
		t.Fatalf("claim of a released address: %v", err)
	}
	claims, err := a.Claims(ctx)
	if err != nil || len(claims) != n || claims[got[3]] != "default/extra" {
		t.Fatalf("claims: %v %v", claims, err)
	}
}
