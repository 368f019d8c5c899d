package cni_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/podnet/podnet/internal/netns"
	"github.com/podnet/podnet/internal/testutil"
)

var (
	pluginOnce sync.Once
	pluginDir  string
	pluginErr  error
)

// pluginBinDir returns a directory holding podnet-cni ($PODNET_BIN when
// set, else the binaries testutil builds once per test binary).
func pluginBinDir(t testing.TB) string { return testutil.Binaries(t) }

// node is a throwaway "node" namespace with an uplink to an "external
// host" namespace (node 192.168.200.1/24, ext 192.168.200.2/24; the
// external host has no route to the pods).
type node struct {
	t               testing.TB
	ns, path        string
	ext, extPath    string
	uplink          string
	dataDir         string
	cni             *libcni.CNIConfig
	bridge, network string
	lastVersion     string // cniVersion of the last ADD's raw result
}

func newNode(t testing.TB) *node {
	t.Helper()
	testutil.RequireRoot(t)
	n := &node{t: t}
	n.ns, n.path = testutil.NewNS(t)
	n.ext, n.extPath = testutil.NewNS(t)
	n.uplink = testutil.UniqueName("pnu", 0)
	peer := testutil.UniqueName("pne", 0)
	testutil.Run(t, "ip", "-n", n.ns, "link", "add", n.uplink, "type", "veth", "peer", "name", peer, "netns", n.ext)
	testutil.Run(t, "ip", "-n", n.ns, "addr", "add", "192.168.200.1/24", "dev", n.uplink)
	testutil.Run(t, "ip", "-n", n.ns, "link", "set", n.uplink, "up")
	testutil.Run(t, "ip", "-n", n.ext, "addr", "add", "192.168.200.2/24", "dev", peer)
	testutil.Run(t, "ip", "-n", n.ext, "link", "set", peer, "up")
	n.dataDir = shmTempDir(t)
	n.cni = libcni.NewCNIConfigWithCacheDir([]string{pluginBinDir(t)}, t.TempDir(), nil)
	n.bridge = testutil.UniqueName("pnb", 0)
	n.network = "podnet-test"
	return n
}

// conflist renders a conflist for this node; extra keys override defaults.
func (n *node) conflist(version string, extra map[string]any) *libcni.NetworkConfigList {
	n.t.Helper()
	b := n.conflistBytes(version, extra)
	l, err := libcni.ConfListFromBytes(b)
	if err != nil {
		n.t.Fatalf("conflist: %v\n%s", err, b)
	}
	return l
}

func (n *node) conflistBytes(version string, extra map[string]any) []byte {
	plugin := map[string]any{
		"type":         "podnet-cni",
		"bridge":       n.bridge,
		"subnet":       "10.22.0.0/24",
		"ipMasq":       true,
		"hairpinMode":  true,
		"dataDir":      n.dataDir,
		"capabilities": map[string]bool{"portMappings": true, "ips": true, "mac": true},
	}
	for k, v := range extra {
		if v == nil {
			delete(plugin, k)
		} else {
			plugin[k] = v
		}
	}
	b, _ := json.Marshal(map[string]any{"cniVersion": version, "name": n.network, "plugins": []any{plugin}})
	return b
}

// pod is a pod namespace.
type pod struct {
	id, ns, path, ifname string
}

func (n *node) newPod() *pod {
	n.t.Helper()
	name, path := testutil.NewNS(n.t)
	return &pod{id: "c" + testutil.UniqueName("", 20), ns: name, path: path, ifname: "eth0"}
}

func (p *pod) rt(caps map[string]any) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: p.id, NetNS: p.path, IfName: p.ifname, CapabilityArgs: caps}
}

// inNode runs fn with the thread in the node namespace, so plugins exec'd
// by libcni run there.
func (n *node) inNode(fn func() error) error {
	return netns.Do(n.path, fn)
}

func (n *node) add(l *libcni.NetworkConfigList, p *pod, caps map[string]any) (*current.Result, error) {
	var res types.Result
	err := n.inNode(func() (err error) {
		res, err = n.cni.AddNetworkList(context.Background(), l, p.rt(caps))
		return err
	})
	if err != nil {
		return nil, err
	}
	n.lastVersion = res.Version()
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (n *node) mustAdd(l *libcni.NetworkConfigList, p *pod, caps map[string]any) *current.Result {
	n.t.Helper()
	r, err := n.add(l, p, caps)
	if err != nil {
		n.t.Fatalf("ADD %s: %v", p.id, err)
	}
	return r
}

func (n *node) del(l *libcni.NetworkConfigList, p *pod) error {
	return n.inNode(func() error { return n.cni.DelNetworkList(context.Background(), l, p.rt(nil)) })
}

func (n *node) check(l *libcni.NetworkConfigList, p *pod) error {
	return n.inNode(func() error { return n.cni.CheckNetworkList(context.Background(), l, p.rt(nil)) })
}

func (n *node) gc(l *libcni.NetworkConfigList, valid ...*pod) error {
	args := &libcni.GCArgs{}
	for _, p := range valid {
		args.ValidAttachments = append(args.ValidAttachments, types.GCAttachment{ContainerID: p.id, IfName: p.ifname})
	}
	return n.inNode(func() error { return n.cni.GCNetworkList(context.Background(), l, args) })
}

func (n *node) status(l *libcni.NetworkConfigList) error {
	return n.inNode(func() error { return n.cni.GetStatusNetworkList(context.Background(), l) })
}

func podIP(t testing.TB, r *current.Result) string {
	t.Helper()
	for _, ip := range r.IPs {
		if ip.Address.IP.To4() != nil {
			return ip.Address.IP.String()
		}
	}
	t.Fatalf("no IPv4 address in result %v", r)
	return ""
}

// inNS runs a command in a namespace and returns its combined output.
func inNS(ns string, name string, args ...string) (string, error) {
	out, err := testutil.InNS(ns, name, args...).CombinedOutput()
	return string(out), err
}

func mustInNS(t testing.TB, ns string, name string, args ...string) string {
	t.Helper()
	out, err := inNS(ns, name, args...)
	if err != nil {
		t.Fatalf("in %s: %s %s: %v\n%s", ns, name, strings.Join(args, " "), err, out)
	}
	return out
}

// listen starts a socat server in ns that answers each connection with
// "hello <peer address>" and stops when the test ends.
func listen(t *testing.T, ns, proto string, port int) {
	t.Helper()
	addr := fmt.Sprintf("%s-LISTEN:%d,fork,reuseaddr", strings.ToUpper(proto), port)
	cmd := testutil.InNS(ns, "socat", addr, `SYSTEM:echo hello $SOCAT_PEERADDR`)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	// Wait for the listener.
	deadline := time.Now().Add(3 * time.Second)
	flag := "-ltnH"
	if proto == "udp" {
		flag = "-lunH"
	}
	for time.Now().Before(deadline) {
		out, _ := inNS(ns, "ss", flag, fmt.Sprintf("sport = :%d", port))
		if strings.TrimSpace(out) != "" {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("listener %s/%d in %s did not start", proto, port, ns)
}

// dial connects from ns to addr:port and returns what the server said.
// UDP is retried a few times, as a real UDP client would: socat's forking
// UDP listener drops datagrams that arrive while it hands the previous
// peer to a child.
func dial(ns, proto, addr string, port int) (string, error) {
	if proto == "udp" {
		var out []byte
		var err error
		for i := 0; i < 5; i++ {
			cmd := testutil.InNS(ns, "socat", "-T1", "-", fmt.Sprintf("UDP:%s:%d", addr, port))
			cmd.Stdin = strings.NewReader("ping\n")
			out, err = cmd.CombinedOutput()
			if err == nil && len(bytes.TrimSpace(out)) > 0 {
				break
			}
		}
		return strings.TrimSpace(string(out)), err
	}
	target := fmt.Sprintf("TCP:%s:%d,connect-timeout=2", addr, port)
	out, err := testutil.InNS(ns, "socat", "-T2", "-", target).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// shmTempDir is a temporary directory on tmpfs when /dev/shm exists: the
// plugin fsyncs its records, and a loaded machine's disk would make the
// concurrency tests measure the disk.
func shmTempDir(t testing.TB) string {
	d, err := os.MkdirTemp("/dev/shm", "podnet-cni-test-")
	if err != nil {
		return t.TempDir()
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
