package claim

import (
	"context"
	"testing"

	"github.com/podnet/podnet/internal/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func get(t *testing.T, c *clientv3.Client, key string) string {
	t.Helper()
	resp, err := c.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

func TestCreateRelease(t *testing.T) {
	s, _ := testutil.Store(t)
	c, ctx := s.Client(), context.Background()
	pre := "/podnet/test/claim/" + t.Name() + "/"
	mk := func(value, owner string) Pair {
		return Pair{ValueKey: pre + "v/" + value, Owner: owner, OwnerKey: pre + "o/" + owner, Value: value}
	}
	a := mk("x", "alice")
	if r, err := Create(ctx, c, a); err != nil || !r.Created {
		t.Fatalf("first claim: %+v %v", r, err)
	}
	if get(t, c, a.ValueKey) != "alice" || get(t, c, a.OwnerKey) != "x" {
		t.Fatal("keys not written")
	}
	// The same claim again, another owner of x, another value for alice:
	// nothing written, the holders reported.
	for _, tc := range []struct {
		p            Pair
		holder, held string
	}{
		{a, "alice", "x"},
		{mk("x", "bob"), "alice", ""},
		{mk("y", "alice"), "", "x"},
	} {
		r, err := Create(ctx, c, tc.p)
		if err != nil || r.Created || r.Holder != tc.holder || r.Held != tc.held {
			t.Fatalf("claim %+v: %+v %v, want holder %q held %q", tc.p, r, err, tc.holder, tc.held)
		}
	}
	if get(t, c, pre+"o/bob") != "" || get(t, c, pre+"v/y") != "" {
		t.Fatal("a failed claim wrote")
	}
	// Only the owner releases; a failing guard stops the release.
	if ok, err := Release(ctx, c, mk("x", "bob")); err != nil || ok {
		t.Fatalf("release by another owner: %v %v", ok, err)
	}
	guard := clientv3.Compare(clientv3.CreateRevision(pre+"guard"), "!=", 0)
	if ok, err := Release(ctx, c, a, guard); err != nil || ok {
		t.Fatalf("release with a failing guard: %v %v", ok, err)
	}
	if get(t, c, a.ValueKey) != "alice" {
		t.Fatal("released anyway")
	}
	if ok, err := Release(ctx, c, a); err != nil || !ok {
		t.Fatalf("release: %v %v", ok, err)
	}
	if get(t, c, a.ValueKey) != "" || get(t, c, a.OwnerKey) != "" {
		t.Fatal("keys left after release")
	}
	// An owner key that names another value is left alone.
	if _, err := c.Put(ctx, a.ValueKey, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, a.OwnerKey, "z"); err != nil {
		t.Fatal(err)
	}
	if ok, err := Release(ctx, c, a); err != nil || !ok || get(t, c, a.ValueKey) != "" || get(t, c, a.OwnerKey) != "z" {
		t.Fatalf("release with a foreign owner key: %v %v, owner key %q", ok, err, get(t, c, a.OwnerKey))
	}
}
