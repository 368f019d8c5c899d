package store

import (
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/netns"
)

func newTestNS(t *testing.T) (string, string) {
	t.Helper()
	name := fmt.Sprintf("pnst%d", os.Getpid())
	path, err := netns.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netns.Delete(name) })
	return name, path
}

// The dialer reaches a listener that exists only inside a namespace.
func TestNetNSDialer(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("integration test: needs root, not -short")
	}
	name, path := newTestNS(t)
	var ln net.Listener
	if err := netns.Do(path, func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := netnsDialer(name)(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := make([]byte, 2)
	if _, err := c.Read(b); err != nil || string(b) != "hi" {
		t.Fatalf("read %q %v", b, err)
	}
	if _, err := Connect(ClientConfig{Endpoints: []string{"http://" + ln.Addr().String()}, NetNS: "pn-does-not-exist"}); err == nil {
		t.Errorf("a missing namespace must be an error")
	}
}
