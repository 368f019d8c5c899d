package overlay

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/podnet/podnet/internal/api"
)

var ctx = context.Background()

var self = Node{Name: "n1", IP: netip.MustParseAddr("192.168.250.11"), PodCIDR: netip.MustParsePrefix("10.244.1.0/24")}

func peer(name, ip, cidr, mac string) Node {
	return Node{Name: name, IP: netip.MustParseAddr(ip), PodCIDR: netip.MustParsePrefix(cidr), Data: NodeData{VTEPMAC: mac}}
}

var (
	n2 = peer("n2", "192.168.250.12", "10.244.2.0/24", "0a:00:00:00:00:02")
	n3 = peer("n3", "192.168.250.13", "10.244.3.0/24", "0a:00:00:00:00:03")
)

func newFakeKernel() *Fake {
	return NewFake("eth0", netip.MustParsePrefix("192.168.250.11/24"), 1500)
}

func newBackend(t *testing.T, name string, k Kernel, stateDir string) Backend {
	t.Helper()
	b, err := New(name, Config{Self: self, StateDir: stateDir, Kernel: k})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func wantOps(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ops:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestVXLANSetupCreatesDeviceAndPersistsMAC(t *testing.T) {
	k := newFakeKernel()
	dir := t.TempDir()
	b := newBackend(t, api.BackendVXLAN, k, dir)
	data, mtu, err := b.Setup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if mtu != 1450 {
		t.Fatalf("pod MTU %d, want 1450 (underlay 1500 - 50)", mtu)
	}
	b2, _ := os.ReadFile(filepath.Join(dir, MACFile))
	if strings.TrimSpace(string(b2)) != data.VTEPMAC || data.VTEPMAC == "" {
		t.Fatalf("vtep-mac file %q, published %q", b2, data.VTEPMAC)
	}
	wantOps(t, k.TakeOps(),
		"link add podnet.vxlan vxlan id 1 local 192.168.250.11 dstport 4789 mac "+data.VTEPMAC+" mtu 1450 learning false",
		"link set podnet.vxlan mtu 1450 up",
		"addr add 10.244.1.0/32 dev podnet.vxlan",
	)
	// Setup again (agent restart, same kernel): nothing changes.
	b = newBackend(t, api.BackendVXLAN, k, dir)
	data2, _, err := b.Setup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantOps(t, k.TakeOps())
	if data2 != data {
		t.Fatalf("restart published %v, want %v", data2, data)
	}
	// The device was deleted (node reboot): re-created with the same MAC.
	if err := k.DelLink(DefaultVXLANDevice); err != nil {
		t.Fatal(err)
	}
	k.TakeOps()
	b = newBackend(t, api.BackendVXLAN, k, dir)
	data3, _, err := b.Setup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if data3 != data {
		t.Fatalf("after reboot published %v, want %v", data3, data)
	}
	l, _ := k.LinkByName(DefaultVXLANDevice)
	if l.MAC.String() != data.VTEPMAC {
		t.Fatalf("device MAC %s, want %s", l.MAC, data.VTEPMAC)
	}
}

func TestVXLANKeepsExistingDeviceMACWithoutFile(t *testing.T) {
	k := newFakeKernel()
	data, _, err := newBackend(t, api.BackendVXLAN, k, "").Setup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	k.TakeOps()
	dir := t.TempDir() // a state dir lost, or first run with one
	data2, _, err := newBackend(t, api.BackendVXLAN, k, dir).Setup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if data2 != data {
		t.Fatalf("published %v, want the device's %v", data2, data)
	}
	wantOps(t, k.TakeOps())
	b, _ := os.ReadFile(filepath.Join(dir, MACFile))
	if strings.TrimSpace(string(b)) != data.VTEPMAC {
		t.Fatalf("vtep-mac file %q, want %s", b, data.VTEPMAC)
	}
}

func TestVXLANRecreatesIncompatibleDevice(t *testing.T) {
	for _, c := range []struct {
		name string
		link Link
	}{
		{"not vxlan", Link{Name: DefaultVXLANDevice, MTU: 1500}},
		{"wrong vni", Link{Name: DefaultVXLANDevice, MTU: 1450, VXLAN: &VXLANAttrs{VNI: 7, Port: 4789, Local: self.IP, UnderlayIndex: 1}}},
		{"wrong port", Link{Name: DefaultVXLANDevice, MTU: 1450, VXLAN: &VXLANAttrs{VNI: 1, Port: 8472, Local: self.IP, UnderlayIndex: 1}}},
		{"wrong local", Link{Name: DefaultVXLANDevice, MTU: 1450, VXLAN: &VXLANAttrs{VNI: 1, Port: 4789, Local: netip.MustParseAddr("192.168.250.99"), UnderlayIndex: 1}}},
		{"learning", Link{Name: DefaultVXLANDevice, MTU: 1450, VXLAN: &VXLANAttrs{VNI: 1, Port: 4789, Local: self.IP, UnderlayIndex: 1, Learning: true}}},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			k := newFakeKernel()
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, MACFile), []byte("0a:11:22:33:44:55\n"), 0o644)
			c.link.MAC = []byte{0x0a, 0x11, 0x22, 0x33, 0x44, 0x55}
			k.AddRawLink(c.link)
			if _, _, err := newBackend(t, api.BackendVXLAN, k, dir).Setup(ctx); err != nil {
				t.Fatal(err)
			}
			wantOps(t, k.TakeOps(),
				"link del podnet.vxlan",
				"link add podnet.vxlan vxlan id 1 local 192.168.250.11 dstport 4789 mac 0a:11:22:33:44:55 mtu 1450 learning false",
				"link set podnet.vxlan mtu 1450 up",
				"addr add 10.244.1.0/32 dev podnet.vxlan",
			)
		})
	}
	t.Run("compatible, wrong mtu and address", func(t *testing.T) {
		k := newFakeKernel()
		k.AddRawLink(Link{Name: DefaultVXLANDevice, MTU: 1500, MAC: []byte{0x0a, 0, 0, 0, 0, 9}, VXLAN: &VXLANAttrs{VNI: 1, Port: 4789, Local: self.IP, UnderlayIndex: 1}})
		k.AddAddr(DefaultVXLANDevice, netip.MustParsePrefix("10.244.7.0/32"))
		k.TakeOps()
		data, _, err := newBackend(t, api.BackendVXLAN, k, "").Setup(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if data.VTEPMAC != "0a:00:00:00:00:09" {
			t.Fatalf("published %s, want the device's MAC", data.VTEPMAC)
		}
		wantOps(t, k.TakeOps(),
			"link set podnet.vxlan mtu 1450 up",
			"addr del 10.244.7.0/32 dev podnet.vxlan",
			"addr add 10.244.1.0/32 dev podnet.vxlan",
		)
	})
}

func TestVXLANSyncOrderIdempotencyRemoval(t *testing.T) {
	k := newFakeKernel()
	b := newBackend(t, api.BackendVXLAN, k, "")
	if _, _, err := b.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	k.TakeOps()
	if err := b.Sync(ctx, []Node{n3, self, n2}); err != nil {
		t.Fatal(err)
	}
	wantOps(t, k.TakeOps(),
		"neigh set podnet.vxlan 10.244.2.0 0a:00:00:00:00:02",
		"fdb set podnet.vxlan 0a:00:00:00:00:02 dst 192.168.250.12",
		"route replace 10.244.2.0/24 via 10.244.2.0 dev podnet.vxlan onlink",
		"neigh set podnet.vxlan 10.244.3.0 0a:00:00:00:00:03",
		"fdb set podnet.vxlan 0a:00:00:00:00:03 dst 192.168.250.13",
		"route replace 10.244.3.0/24 via 10.244.3.0 dev podnet.vxlan onlink",
	)
	if err := b.Sync(ctx, []Node{n2, n3}); err != nil {
		t.Fatal(err)
	}
	wantOps(t, k.TakeOps()) // Sync twice: no changes

	// n2 leaves: route, FDB, neighbour, in that order.
	if err := b.Sync(ctx, []Node{n3}); err != nil {
		t.Fatal(err)
	}
	wantOps(t, k.TakeOps(),
		"route del 10.244.2.0/24 via 10.244.2.0 dev podnet.vxlan onlink",
		"fdb del podnet.vxlan 0a:00:00:00:00:02",
		"neigh del podnet.vxlan 10.244.2.0",
	)

	// n3 comes back with a new VTEP (re-created node): entries follow.
	n3b := n3
	n3b.IP = netip.MustParseAddr("192.168.250.23")
	n3b.Data.VTEPMAC = "0a:00:00:00:00:33"
	if err := b.Sync(ctx, []Node{n3b}); err != nil {
		t.Fatal(err)
	}
	wantOps(t, k.TakeOps(),
		"fdb del podnet.vxlan 0a:00:00:00:00:03",
		"neigh set podnet.vxlan 10.244.3.0 0a:00:00:00:00:33",
		"fdb set podnet.vxlan 0a:00:00:00:00:33 dst 192.168.250.23",
	)

	// No peers: everything goes.
	if err := b.Sync(ctx, nil); err != nil {
		t.Fatal(err)
	}
	wantOps(t, k.TakeOps(),
		"route del 10.244.3.0/24 via 10.244.3.0 dev podnet.vxlan onlink",
		"fdb del podnet.vxlan 0a:00:00:00:00:33",
		"neigh del podnet.vxlan 10.244.3.0",
	)
}

func TestVXLANSyncRollsBackHalfAddedPeer(t *testing.T) {
	k := newFakeKernel()
	b := newBackend(t, api.BackendVXLAN, k, "")
	if _, _, err := b.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	k.TakeOps()
	k.Fail = func(op string) error {
		if strings.HasPrefix(op, "route replace 10.244.2.0/24") {
			return errors.New("injected")
		}
		return nil
	}
	err := b.Sync(ctx, []Node{n2, n3})
	if err == nil || !strings.Contains(err.Error(), "node n2 (192.168.250.12)") || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("Sync error %v, want one naming n2", err)
	}
	wantOps(t, k.TakeOps(),
		"neigh set podnet.vxlan 10.244.2.0 0a:00:00:00:00:02",
		"fdb set podnet.vxlan 0a:00:00:00:00:02 dst 192.168.250.12",
		"fdb del podnet.vxlan 0a:00:00:00:00:02",
		"neigh del podnet.vxlan 10.244.2.0",
		"neigh set podnet.vxlan 10.244.3.0 0a:00:00:00:00:03",
		"fdb set podnet.vxlan 0a:00:00:00:00:03 dst 192.168.250.13",
		"route replace 10.244.3.0/24 via 10.244.3.0 dev podnet.vxlan onlink",
	)
	k.Fail = nil
	if err := b.Sync(ctx, []Node{n2, n3}); err != nil {
		t.Fatal(err)
	}
	wantOps(t, k.TakeOps(),
		"neigh set podnet.vxlan 10.244.2.0 0a:00:00:00:00:02",
		"fdb set podnet.vxlan 0a:00:00:00:00:02 dst 192.168.250.12",
		"route replace 10.244.2.0/24 via 10.244.2.0 dev podnet.vxlan onlink",
	)
}

func TestVXLANSyncSkipsUnusablePeers(t *testing.T) {
	k := newFakeKernel()
	b := newBackend(t, api.BackendVXLAN, k, "")
	if _, _, err := b.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	k.TakeOps()
	noMAC := peer("n4", "192.168.250.14", "10.244.4.0/24", "")
	badMAC := peer("n5", "192.168.250.15", "10.244.5.0/24", "banana")
	overlap := peer("n6", "192.168.250.16", "10.244.1.0/25", "0a:00:00:00:00:06")
	err := b.Sync(ctx, []Node{noMAC, badMAC, overlap})
	if err == nil || !strings.Contains(err.Error(), `node n5: backend data vtepMAC "banana"`) || !strings.Contains(err.Error(), "node n6: podCIDR 10.244.1.0/25 overlaps node n1's 10.244.1.0/24") {
		t.Fatalf("Sync error %v", err)
	}
	wantOps(t, k.TakeOps())
}

func TestVXLANSyncHealsDeletedDevice(t *testing.T) {
	k := newFakeKernel()
	b := newBackend(t, api.BackendVXLAN, k, t.TempDir())
	data, _, err := b.Setup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(ctx, []Node{n2}); err != nil {
		t.Fatal(err)
	}
	k.DelLink(DefaultVXLANDevice)
	k.TakeOps()
	if err := b.Sync(ctx, []Node{n2}); err != nil {
		t.Fatal(err)
	}
	wantOps(t, k.TakeOps(),
		"link add podnet.vxlan vxlan id 1 local 192.168.250.11 dstport 4789 mac "+data.VTEPMAC+" mtu 1450 learning false",
		"link set podnet.vxlan mtu 1450 up",
		"addr add 10.244.1.0/32 dev podnet.vxlan",
		"neigh set podnet.vxlan 10.244.2.0 0a:00:00:00:00:02",
		"fdb set podnet.vxlan 0a:00:00:00:00:02 dst 192.168.250.12",
		"route replace 10.244.2.0/24 via 10.244.2.0 dev podnet.vxlan onlink",
	)
}

func TestHostGW(t *testing.T) {
	k := newFakeKernel()
	b := newBackend(t, api.BackendHostGW, k, "")
	data, mtu, err := b.Setup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if data != (NodeData{}) || mtu != 1500 {
		t.Fatalf("Setup = %v, %d; want no data and the underlay MTU 1500", data, mtu)
	}
	if err := b.Sync(ctx, []Node{n3, n2}); err != nil {
		t.Fatal(err)
	}
	wantOps(t, k.TakeOps(),
		"route replace 10.244.2.0/24 via 192.168.250.12 dev eth0",
		"route replace 10.244.3.0/24 via 192.168.250.13 dev eth0",
	)
	if err := b.Sync(ctx, []Node{n3, n2}); err != nil {
		t.Fatal(err)
	}
	wantOps(t, k.TakeOps())

	// n3 moves behind a router: refused, its route removed, n2 kept.
	k.Paths[n3.IP] = Path{Dev: "eth0", Gateway: netip.MustParseAddr("192.168.250.254")}
	err = b.Sync(ctx, []Node{n3, n2})
	want := "host-gw: node n3 (192.168.250.13) is not on this node's L2 segment (reached via 192.168.250.254); use the vxlan backend"
	if err == nil || err.Error() != want {
		t.Fatalf("Sync error %v, want %q", err, want)
	}
	var se *SegmentError
	if !errors.As(err, &se) || se.Peer.Name != "n3" || !IsSegmentError(err) {
		t.Fatalf("error %#v is not a SegmentError for n3", err)
	}
	wantOps(t, k.TakeOps(), "route del 10.244.3.0/24 via 192.168.250.13 dev eth0")

	if err := b.Sync(ctx, nil); err != nil {
		t.Fatal(err)
	}
	wantOps(t, k.TakeOps(), "route del 10.244.2.0/24 via 192.168.250.12 dev eth0")
}

func TestNewRejects(t *testing.T) {
	k := newFakeKernel()
	if _, err := New("weave", Config{Self: self, Kernel: k}); err == nil || err.Error() != `overlay: backend "weave": want vxlan or host-gw` {
		t.Fatalf("err %v", err)
	}
	if _, err := New("vxlan", Config{Self: self, Kernel: k, Device: "podnet.vxlan.too.long"}); err == nil {
		t.Fatal("long device name accepted")
	}
	bad := self
	bad.IP = netip.Addr{}
	if _, err := New("vxlan", Config{Self: bad, Kernel: k}); err == nil {
		t.Fatal("node without IP accepted")
	}
	other := self
	other.IP = netip.MustParseAddr("192.168.9.9")
	b, err := New("vxlan", Config{Self: other, Kernel: k})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Setup(ctx); err == nil || err.Error() != "vxlan: node IP 192.168.9.9 is on no interface of this node" {
		t.Fatalf("Setup error %v", err)
	}
}
