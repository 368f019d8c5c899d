package testutil

import (
	"context"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/store"
)

// TestEtcdCluster: three etcd processes form a cluster that keeps serving
// with one member down and takes the member back.
func TestEtcdCluster(t *testing.T) {
	c := StartEtcdCluster(t, 3)
	cli, err := store.Connect(store.ClientConfig{Endpoints: c.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cli.MemberList(ctx)
	if err != nil || len(resp.Members) != 3 {
		t.Fatalf("members: %v %v", resp, err)
	}
	c.Stop(0)
	if _, err := cli.Put(ctx, "/pn/test", "x"); err != nil {
		t.Fatalf("put with a member down: %v", err)
	}
	c.Start(0)
	c.WaitHealthy(30 * time.Second)
	g, err := cli.Get(ctx, "/pn/test")
	if err != nil || len(g.Kvs) != 1 {
		t.Fatalf("get: %v %v", g, err)
	}
}
