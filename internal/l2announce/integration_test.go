package l2announce_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/podnet/podnet/internal/l2announce"
	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/testutil"
)

// The topology: an "outside" namespace whose bridge (.3) has a port per
// "node" namespace (.11, .12). Each node serves TCP on the load-balancer
// address, which sits on its loopback with arp_ignore=1, so the kernel
// never answers ARP for it: only a Responder does, as on a podnet node
// (where the proxy's DNAT, not an address, takes the traffic). outside's
// own kernel resolves the address and connects, so what is checked is what
// a real client sees.

const (
	lbAddr  = "192.168.78.200"
	outAddr = "192.168.78.3"
)

type tnode struct {
	name, ns, path string
	mac            net.HardwareAddr
	resp           *l2announce.Responder
	stop           context.CancelFunc
	done           chan error
}

func run(t *testing.T, args ...string) { t.Helper(); testutil.Run(t, "ip", args...) }

func newNode(t *testing.T, outside, name string, last int) *tnode {
	t.Helper()
	n := &tnode{name: name}
	n.ns, n.path = testutil.NewNS(t)
	port := testutil.UniqueName("pnp", 0)
	run(t, "-n", n.ns, "link", "add", "eth0", "type", "veth", "peer", "name", port, "netns", outside)
	run(t, "-n", outside, "link", "set", port, "master", "br0", "up")
	run(t, "-n", n.ns, "addr", "add", fmt.Sprintf("192.168.78.%d/24", last), "dev", "eth0")
	run(t, "-n", n.ns, "link", "set", "eth0", "up")
	run(t, "-n", n.ns, "addr", "add", lbAddr+"/32", "dev", "lo")
	if err := netns.Do(n.path, func() error {
		for _, k := range []string{"all", "eth0"} {
			if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+k+"/arp_ignore", []byte("1"), 0o644); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A TCP server on the load-balancer address that names its node.
	var ln net.Listener
	if err := netns.Do(n.path, func() (err error) { ln, err = net.Listen("tcp", lbAddr+":8080"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, name)
			c.Close()
		}
	}()
	var conn l2announce.Conn
	if err := netns.Do(n.path, func() error {
		ifc, seg, err := l2announce.InterfaceOf(netip.MustParseAddr(fmt.Sprintf("192.168.78.%d", last)))
		if err != nil {
			return err
		}
		if ifc.Name != "eth0" || seg.String() != "192.168.78.0/24" {
			return fmt.Errorf("InterfaceOf found %s on %s, want eth0 on 192.168.78.0/24", ifc.Name, seg)
		}
		n.mac = ifc.HardwareAddr
		conn, err = l2announce.ListenARP(ifc.Index)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	n.resp = l2announce.NewResponder(conn, n.mac, testutil.Logger(t))
	ctx, cancel := context.WithCancel(context.Background())
	n.stop, n.done = cancel, make(chan error, 1)
	go func() { n.done <- n.resp.Run(ctx) }()
	t.Cleanup(n.halt)
	return n
}

// halt stops the responder, as a killed agent does: nothing answers from
// the node any more, and nothing is left to clean up in the kernel.
func (n *tnode) halt() {
	if n.stop == nil {
		return
	}
	n.stop()
	<-n.done
	n.stop = nil
}

// fetch connects from outside to the load-balancer address and returns
// who answered.
func fetch(outsidePath string) (string, error) {
	var out string
	err := netns.Do(outsidePath, func() error {
		c, err := net.DialTimeout("tcp", lbAddr+":8080", 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		b, err := io.ReadAll(c)
		out = string(b)
		return err
	})
	return out, err
}

func neighbour(t *testing.T, ns string) string {
	out, _ := exec.Command("ip", "-n", ns, "neigh", "show", lbAddr, "dev", "br0").CombinedOutput()
	return strings.TrimSpace(string(out))
}

func TestResponderOnTheWire(t *testing.T) {
	testutil.RequireRoot(t)
	outside, outsidePath := testutil.NewNS(t)
	run(t, "-n", outside, "link", "add", "br0", "type", "bridge")
	run(t, "-n", outside, "addr", "add", outAddr+"/24", "dev", "br0")
	run(t, "-n", outside, "link", "set", "br0", "up")
	n1 := newNode(t, outside, "node1", 11)
	n2 := newNode(t, outside, "node2", 12)
	lb := netip.MustParseAddr(lbAddr)

	n1.resp.Set([]netip.Addr{lb})
	var who string
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if who, err = fetch(outsidePath); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outside cannot reach %s announced by node1: %v (neighbour %q)", lbAddr, err, neighbour(t, outside))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if who != "node1" {
		t.Fatalf("outside reached %q, want node1", who)
	}
	if nb := neighbour(t, outside); !strings.Contains(nb, n1.mac.String()) {
		t.Fatalf("outside's neighbour entry %q, want node1's %s", nb, n1.mac)
	}

	// node1 dies; node2 takes over. outside's entry moves by gratuitous
	// ARP alone: nothing flushes it.
	start := time.Now()
	n1.halt()
	n2.resp.Set([]netip.Addr{lb})
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(neighbour(t, outside), n2.mac.String()); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("outside's neighbour entry %q did not move to node2's %s", neighbour(t, outside), n2.mac)
		}
	}
	moved := time.Since(start)
	who, err := fetch(outsidePath)
	if err != nil || who != "node2" {
		t.Fatalf("after the takeover outside reached %q (%v), want node2", who, err)
	}
	t.Logf("outside's neighbour entry moved to node2 %s after the takeover", moved.Round(time.Millisecond))

	// node2 gives the address up: after outside forgets the entry, nobody
	// answers.
	n2.resp.Set(nil)
	run(t, "-n", outside, "neigh", "flush", "dev", "br0")
	if who, err := fetch(outsidePath); err == nil {
		t.Fatalf("outside reached %q with nobody announcing %s", who, lbAddr)
	}
}
