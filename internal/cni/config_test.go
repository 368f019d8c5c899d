package cni

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func conf(extra string) string {
	s := `{"cniVersion":"1.1.0","name":"net1","type":"podnet-cni"`
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

func TestParseConfigErrors(t *testing.T) {
	cases := []struct {
		in   string
		code uint
		msg  string
	}{
		{`{"name":`, 6, `podnet-cni: decode config: unexpected end of JSON input`},
		{conf(`"subnet":"10.0.0/33"`), 7, `podnet-cni: config field "subnet": invalid CIDR "10.0.0/33"`},
		{conf(`"subnet":"10.0.0.0/24","foo":1`), 7, `podnet-cni: config field "foo": unknown key`},
		{conf(`"subnet":"10.0.0.0/24","mtu":"x"`), 7, `podnet-cni: config field "mtu": want a number, got JSON string`},
		{conf(`"subnet":"10.0.0.0/24","mtu":20`), 7, `podnet-cni: config field "mtu": 20 out of range 68-65535`},
		{conf(``), 7, `podnet-cni: config field "subnet": missing: set subnet (IPv4 CIDR), ipv6Subnet or ranges`},
		{conf(`"subnet":"fd00::/64"`), 7, `podnet-cni: config field "subnet": "fd00::/64" is not an IPv4 CIDR (use ipv6Subnet or ranges for IPv6)`},
		{conf(`"subnet":"10.0.0.0/31"`), 7, `podnet-cni: config field "subnet": 10.0.0.0/31 is too small: the prefix length must be at most /30`},
		{conf(`"subnet":"10.0.0.0/24","gateway":"10.0.1.1"`), 7, `podnet-cni: config field "gateway": 10.0.1.1 is not a host address of subnet 10.0.0.0/24`},
		{conf(`"subnet":"10.0.0.0/24","gateway":"10.0.0.255"`), 7, `podnet-cni: config field "gateway": 10.0.0.255 is not a host address of subnet 10.0.0.0/24`},
		{conf(`"subnet":"10.0.0.0/24","rangeStart":"10.0.0.50","rangeEnd":"10.0.0.20"`), 7, `podnet-cni: config field "rangeStart": 10.0.0.50 is after rangeEnd 10.0.0.20`},
		{conf(`"subnet":"10.0.0.0/24","rangeEnd":"banana"`), 7, `podnet-cni: config field "rangeEnd": invalid IP address "banana"`},
		{conf(`"gateway":"10.0.0.1","ranges":[[{"subnet":"10.0.0.0/24"}]]`), 7, `podnet-cni: config field "gateway": only valid with subnet (in ranges, set it per range)`},
		{conf(`"subnet":"10.0.0.0/24","ranges":[[{"subnet":"10.0.0.0/24"}]]`), 7, `podnet-cni: config field "subnet": use either subnet/ipv6Subnet or ranges, not both`},
		{conf(`"ranges":[[{"subnet":"10.0.0.0/24"}],[{"subnet":"10.1.0.0/24"}]]`), 7, `podnet-cni: config field "ranges[1]": a second IPv4 range set (at most one per family)`},
		{conf(`"ranges":[[{"subnet":"10.0.0.0/24"},{"subnet":"fd00::/64"}]]`), 7, `podnet-cni: config field "ranges[0][1].subnet": fd00::/64 mixes address families in one range set`},
		{conf(`"ranges":[[{"rangeStart":"10.0.0.5"}]]`), 7, `podnet-cni: config field "ranges[0][0].subnet": missing`},
		{conf(`"ranges":[[]]`), 7, `podnet-cni: config field "ranges[0]": empty range set`},
		{conf(`"ranges":[[{"subnet":"10.0.0.0/24","gateway":"x"}]]`), 7, `podnet-cni: config field "ranges[0][0].gateway": invalid IP address "x"`},
		{conf(`"ipv6Subnet":"10.0.0.0/24"`), 7, `podnet-cni: config field "ipv6Subnet": "10.0.0.0/24" is not an IPv6 CIDR`},
		{conf(`"subnet":"10.0.0.0/24","routes":[{"dst":"fd00::/8"}]`), 7, `podnet-cni: config field "routes[0].dst": fd00::/8: the network has no address of that family`},
		{conf(`"subnet":"10.0.0.0/24","routes":[{"dst":"0.0.0.0/0","gw":"fd00::1"}]`), 7, `podnet-cni: config field "routes[0].gw": fd00::1 is not in the family of dst 0.0.0.0/0`},
		{conf(`"subnet":"10.0.0.0/24","bridge":"this-name-is-too-long"`), 7, `podnet-cni: config field "bridge": invalid interface name "this-name-is-too-long"`},
		{conf(`"subnet":"10.0.0.0/24","dataDir":"rel"`), 7, `podnet-cni: config field "dataDir": must be an absolute path, got "rel"`},
		{conf(`"subnet":"10.0.0.0/24","isGateway":false`), 7, `podnet-cni: config field "isGateway": must be true`},
		{conf(`"subnet":"10.0.0.0/24","dns":{"nameservers":"1.1.1.1"}`), 7, `podnet-cni: config field "dns.nameservers": want a list, got JSON string`},
		{conf(`"subnet":"10.0.0.0/24","runtimeConfig":{"portMappings":[{"hostPort":70000,"containerPort":80}]}`), 7, `podnet-cni: config field "runtimeConfig.portMappings[0].hostPort": 70000 out of range 1-65535`},
		{conf(`"subnet":"10.0.0.0/24","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"protocol":"icmp"}]}`), 7, `podnet-cni: config field "runtimeConfig.portMappings[0].protocol": "icmp" is not tcp or udp`},
		{conf(`"subnet":"10.0.0.0/24","runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":80,"hostIP":"fd00::1"}]}`), 7, `podnet-cni: config field "runtimeConfig.portMappings[0].hostIP": fd00::1: the network has no address of that family`},
		{conf(`"subnet":"10.0.0.0/24","runtimeConfig":{"ips":["10.9.0.1"]}`), 7, `podnet-cni: config field "runtimeConfig.ips[0]": 10.9.0.1 is not an assignable address of the network's ranges`},
		{conf(`"subnet":"10.0.0.0/24","runtimeConfig":{"ips":["10.0.0.5","10.0.0.6"]}`), 7, `podnet-cni: config field "runtimeConfig.ips[1]": more than one address requested for one family`},
		{conf(`"subnet":"10.0.0.0/24","runtimeConfig":{"mac":"01:00:00:00:00:01"}`), 7, `podnet-cni: config field "runtimeConfig.mac": 01:00:00:00:00:01 is a multicast address`},
		{conf(`"subnet":"10.0.0.0/24","runtimeConfig":{"mac":"zz"}`), 7, `podnet-cni: config field "runtimeConfig.mac": invalid MAC address "zz"`},
		{conf(`"subnet":"10.0.0.0/24","runtimeConfig":{"portMappings":{}}`), 7, `podnet-cni: config field "runtimeConfig.portMappings": want a list, got JSON object`},
		{conf(`"subnet":"10.0.0.0/24","nonMasqueradeCIDRs":"10.244.0.0/16"`), 7, `podnet-cni: config field "nonMasqueradeCIDRs": want a list, got JSON string`},
		{conf(`"subnet":"10.0.0.0/24","nonMasqueradeCIDRs":["10.244.0.0"]`), 7, `podnet-cni: config field "nonMasqueradeCIDRs[0]": invalid CIDR "10.244.0.0"`},
		{conf(`"subnet":"10.0.0.0/24","nonMasqueradeCIDRs":["10.244.1.0/16"]`), 7, `podnet-cni: config field "nonMasqueradeCIDRs[0]": 10.244.1.0/16 has host bits set (did you mean 10.244.0.0/16?)`},
		{conf(`"subnet":"10.0.0.0/24","nonMasqueradeCIDRs":["0.0.0.0/0"]`), 7, `podnet-cni: config field "nonMasqueradeCIDRs[0]": 0.0.0.0/0 would exempt all traffic from masquerade; set ipMasq to false instead`},
		{conf(`"subnet":"10.0.0.0/24","nonMasqueradeCIDRs":["fd00::/48"]`), 7, `podnet-cni: config field "nonMasqueradeCIDRs[0]": fd00::/48: the network has no address of that family`},
		{conf(`"subnet":"10.0.0.0/24","nonMasqueradeCIDRs":["10.244.0.0/16","10.244.0.0/16"]`), 7, `podnet-cni: config field "nonMasqueradeCIDRs[1]": 10.244.0.0/16 repeats nonMasqueradeCIDRs[0]`},
	}
	for i, c := range cases {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			_, err := ParseConfig([]byte(c.in))
			var e *types.Error
			if !errors.As(err, &e) {
				t.Fatalf("%s: want *types.Error, got %v", c.in, err)
			}
			if e.Code != c.code || !strings.HasPrefix(e.Msg, c.msg) {
				t.Fatalf("%s:\n got %d %q\nwant %d %q", c.in, e.Code, e.Msg, c.code, c.msg)
			}
		})
	}
}

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(conf(`"subnet":"10.22.0.0/24","dns":{"nameservers":["10.96.0.10"]},"capabilities":{"portMappings":true},"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"TCP"}],"ips":["10.22.0.9/24"],"other":1},"args":{"cni":{}}`)))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("bridge=%s mtu=%d dataDir=%s ranges=%v routes=%v ports=%v req=%v dns=%v",
		c.Bridge, c.MTU, c.DataDir, c.Families, c.Routes, c.Ports, c.Requested[true], c.DNS.Nameservers)
	want := "bridge=podnet0 mtu=0 dataDir=/var/lib/cni/podnet/net1 ranges=[{[{10.22.0.0/24 10.22.0.1 10.22.0.254 10.22.0.1}]}] routes=[{0.0.0.0/0 10.22.0.1}] ports=[{invalid IP tcp 8080 80}] req=10.22.0.9 dns=[10.96.0.10]"
	if got != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
}

func TestParseConfigDualStack(t *testing.T) {
	c, err := ParseConfig([]byte(conf(`"ranges":[[{"subnet":"fd00:1::/64","gateway":"fd00:1::fe"}],[{"subnet":"10.22.0.0/24","rangeStart":"10.22.0.100","rangeEnd":"10.22.0.199"}]],"routes":[{"dst":"10.0.0.0/8"},{"dst":"::/0"}]`)))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%v %v", c.Families, c.Routes)
	want := "[{[{10.22.0.0/24 10.22.0.100 10.22.0.199 10.22.0.1}]} {[{fd00:1::/64 fd00:1::1 fd00:1::ffff:ffff:ffff:ffff fd00:1::fe}]}] [{10.0.0.0/8 10.22.0.1} {::/0 fd00:1::fe}]"
	if got != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
}

func TestParseConfigNonMasquerade(t *testing.T) {
	c, err := ParseConfig([]byte(conf(`"subnet":"10.244.1.0/24","nonMasqueradeCIDRs":["10.244.0.0/16","192.168.0.0/16"]`)))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(c.NonMasq); got != "[10.244.0.0/16 192.168.0.0/16]" {
		t.Fatalf("NonMasq %s", got)
	}
}

func TestParseTeardownConfig(t *testing.T) {
	c, err := ParseTeardownConfig([]byte(conf(`"subnet":"10.0.0/33","mtu":"x","foo":1,"dataDir":"/run/x","cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}]`)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "net1" || c.DataDir != "/run/x/net1" || len(c.Raw.ValidAttachments) != 1 || c.Raw.ValidAttachments[0].ContainerID != "a" {
		t.Fatalf("got %+v", c)
	}
	if c, err := ParseTeardownConfig([]byte(conf(``))); err != nil || c.DataDir != DefaultDataDir+"/net1" {
		t.Fatalf("default dataDir: %+v %v", c, err)
	}
	for _, tc := range []struct{ in, msg string }{
		{`{"cniVersion":"1.1.0","type":"podnet-cni"}`, `config field "name": missing`},
		{`{"name":"../x"}`, `config field "name": invalid network name`},
		{conf(`"dataDir":"rel"`), `config field "dataDir": must be an absolute path`},
		{conf(`"dataDir":7`), `config field "dataDir": want a string`},
		{conf(`"cni.dev/valid-attachments":"all"`), `config field "cni.dev/valid-attachments": want a list`},
	} {
		_, err := ParseTeardownConfig([]byte(tc.in))
		var e *types.Error
		if !errors.As(err, &e) || e.Code != 7 || !strings.Contains(e.Msg, tc.msg) {
			t.Errorf("%s: got %v, want code 7 containing %q", tc.in, err, tc.msg)
		}
	}
}
