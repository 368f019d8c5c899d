package link

import (
	"net/netip"
	"testing"

	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/testutil"
)

func TestHostVethName(t *testing.T) {
	a := HostVethName("abc", "eth0")
	if len(a) != 13 || a[:2] != "pn" || a != HostVethName("abc", "eth0") || a == HostVethName("abc", "eth1") {
		t.Fatalf("bad name %q", a)
	}
}

func TestBridgeAndVeth(t *testing.T) {
	testutil.RequireRoot(t)
	_, nodePath := testutil.NewNS(t)
	_, podPath := testutil.NewNS(t)
	br := testutil.UniqueName("pnb", 0)
	gw := []netip.Prefix{netip.MustParsePrefix("10.50.0.1/24"), netip.MustParsePrefix("fd00:50::1/64")}
	err := netns.Do(nodePath, func() error {
		b, err := EnsureBridge(br, 1400, gw)
		if err != nil {
			return err
		}
		if _, err := EnsureBridge(br, 1400, gw); err != nil {
			t.Errorf("second EnsureBridge: %v", err)
		}
		v := Veth{HostName: HostVethName("c1", "eth0"), ContName: "eth0", NetnsPath: podPath, Bridge: b, MTU: 1400, Hairpin: true,
			Addrs:  []netip.Prefix{netip.MustParsePrefix("10.50.0.2/24")},
			Routes: []Route{{Dst: netip.MustParsePrefix("0.0.0.0/0"), GW: netip.MustParseAddr("10.50.0.1")}}}
		if _, err := SetupVeth(v); err != nil {
			return err
		}
		if err := CheckVeth(v.HostName, br, podPath, "eth0", v.Addrs); err != nil {
			t.Errorf("CheckVeth: %v", err)
		}
		if _, err := SetupVeth(v); err == nil {
			t.Error("second SetupVeth succeeded")
		}
		if err := DeleteLink(v.HostName); err != nil {
			return err
		}
		if err := DeleteLink(v.HostName); err != nil {
			t.Errorf("repeated DeleteLink: %v", err)
		}
		if err := CheckVeth(v.HostName, br, podPath, "eth0", v.Addrs); err == nil {
			t.Error("CheckVeth passes after delete")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
