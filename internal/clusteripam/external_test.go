package clusteripam

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
)

// TestExternalEtcd runs the allocator tests against a 3-member cluster of
// Debian's etcd, and allocates with one member down.
func TestExternalEtcd(t *testing.T) {
	testutil.UseExternalEtcd(t)
	t.Run("AllocateConcurrentDisjoint", TestAllocateConcurrentDisjoint)
	t.Run("AllocateExhaustReleaseReuse", TestAllocateExhaustReleaseReuse)
	t.Run("AllocatePreferAndClaim", TestAllocatePreferAndClaim)
	t.Run("MemberDown", func(t *testing.T) {
		c := testutil.StartEtcdCluster(t, 3)
		cli, err := store.Connect(store.ClientConfig{Endpoints: c.Endpoints()})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		pool, _ := NewPool("10.244.0.0/16", 24)
		a := New(cli, pool)
		ctx := context.Background()
		seen := map[netip.Prefix]bool{}
		for i := range 6 {
			if i == 3 {
				c.Kill(0)
			}
			got, err := a.Allocate(ctx, fmt.Sprintf("n%d", i), netip.Prefix{})
			if err != nil || seen[got] {
				t.Fatalf("n%d: %v %v", i, got, err)
			}
			seen[got] = true
		}
	})
}
