package testutil

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/store"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// EtcdConfig returns an embedded etcd configuration on free loopback ports
// with its data in a temporary directory.
func EtcdConfig(t testing.TB) store.EmbeddedConfig {
	return store.EmbeddedConfig{
		DataDir:   t.TempDir(),
		ClientURL: fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)),
		PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)),
	}
}

// Store starts an embedded etcd for the test and returns a connected Store
// with the system namespaces created. Both stop when the test ends.
func Store(t testing.TB) (*store.Store, store.EmbeddedConfig) {
	t.Helper()
	cfg := EtcdConfig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	e, err := store.StartEmbedded(ctx, cfg)
	if err != nil {
		t.Fatalf("embedded etcd: %v", err)
	}
	t.Cleanup(e.Close)
	cli, err := store.Connect(store.ClientConfig{Endpoints: e.Endpoints()})
	if err != nil {
		t.Fatalf("connect etcd: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	s := store.New(cli)
	if err := s.EnsureNamespaces(ctx, "default", "kube-system"); err != nil {
		t.Fatalf("namespaces: %v", err)
	}
	return s, cfg
}
