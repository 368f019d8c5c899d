// Command kube-proxy-driver drives the real kube-proxy proxiers (nftables
// and iptables, from the Go module k8s.io/kubernetes) with no API server,
// for podnet's service benchmark (bench/svcbench, issue 6). It is a
// bench-only module: the peer's code comes from the module proxy at build
// time and is never copied into podnet's repository.
//
// It reads Services and EndpointSlices from a JSON file (-objects, written
// by svcbench so both sides get the same objects), feeds them to the
// proxier as its informers would, times the full sync and then one
// EndpointSlice change at a time (a partial sync), and prints one JSON
// result on stdout. The rules stay in the namespace when it exits.
//
// It refuses to run in the root network namespace: run it only inside a
// throwaway one (`unshare -n`, or a namespace svcbench created), as root.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/component-base/metrics/legacyregistry"
	utilsysctl "k8s.io/component-helpers/node/util/sysctl"
	kubeproxyconfig "k8s.io/kubernetes/pkg/proxy/apis/config"
	"k8s.io/kubernetes/pkg/proxy/iptables"
	"k8s.io/kubernetes/pkg/proxy/metrics"
	"k8s.io/kubernetes/pkg/proxy/nftables"
	proxyutil "k8s.io/kubernetes/pkg/proxy/util"
	utiliptables "k8s.io/kubernetes/pkg/util/iptables"
)

// objects is the input file: what svcbench generated.
type objects struct {
	Services []*v1.Service              `json:"services"`
	Slices   []*discovery.EndpointSlice `json:"endpointSlices"`
	// Updates are changed versions of existing slices, applied one at a
	// time, each followed by a (partial) sync.
	Updates []*discovery.EndpointSlice `json:"updates"`
}

// result is the output, one JSON object (svcbench reads the same fields).
type result struct {
	Mode      string    `json:"mode"`
	Services  int       `json:"services"`
	Endpoints int       `json:"endpoints"`
	FullSync  float64   `json:"fullSyncSeconds"`
	Partial   []float64 `json:"partialSyncSeconds"`
	RSSKiB    int       `json:"rssKiB"`
	AnonKiB   int       `json:"anonKiB"`
}

// proxier is what both kube-proxy proxiers offer the informers.
type proxier interface {
	OnServiceCIDRsChanged(cidrs []string)
	OnServiceAdd(*v1.Service)
	OnServiceSynced()
	OnEndpointSliceAdd(*discovery.EndpointSlice)
	OnEndpointSliceUpdate(old, new *discovery.EndpointSlice)
	OnEndpointSlicesSynced()
}

func main() {
	mode := flag.String("mode", "nftables", "nftables | iptables (iptables-legacy) | iptables-nft")
	file := flag.String("objects", "", "JSON file of services, endpointSlices and updates")
	nodeName := flag.String("node-name", "pnb-node", "node name")
	nodeIP := flag.String("node-ip", "", "the node's IP")
	clusterCIDR := flag.String("cluster-cidr", "", "pod CIDR of the cluster (local traffic detection)")
	serviceCIDR := flag.String("service-cidr", "10.96.0.0/12", "service CIDR")
	flag.Parse()
	if err := run(*mode, *file, *nodeName, *nodeIP, *clusterCIDR, *serviceCIDR); err != nil {
		fmt.Fprintln(os.Stderr, "kube-proxy-driver:", err)
		os.Exit(1)
	}
}

func run(mode, file, nodeName, nodeIPStr, clusterCIDR, serviceCIDR string) error {
	if err := notRootNetns(); err != nil {
		return err
	}
	defer func() {
		for _, d := range cleanupDirs {
			_ = os.RemoveAll(d)
		}
	}()
	nodeIP := net.ParseIP(nodeIPStr)
	if nodeIP == nil || clusterCIDR == "" || file == "" {
		return fmt.Errorf("-objects, -node-ip and -cluster-cidr are required")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var objs objects
	if err := json.Unmarshal(data, &objs); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}

	bit := int32(14)
	lnp := false
	cfg := &kubeproxyconfig.KubeProxyConfiguration{
		SyncPeriod:        metav1.Duration{Duration: time.Hour}, // only the syncs we ask for
		MinSyncPeriod:     metav1.Duration{Duration: 0},
		NodePortAddresses: []string{nodeIP.String() + "/32"},
		IPTables:          kubeproxyconfig.KubeProxyIPTablesConfiguration{MasqueradeBit: &bit, LocalhostNodePorts: &lnp},
		NFTables:          kubeproxyconfig.KubeProxyNFTablesConfiguration{MasqueradeBit: &bit},
	}
	ctx := context.Background()
	detect := proxyutil.NewDetectLocalByCIDR(clusterCIDR)
	var p proxier
	switch mode {
	case "nftables":
		metrics.RegisterMetrics(kubeproxyconfig.ProxyModeNFTables)
		p, err = nftables.NewProxier(ctx, cfg, v1.IPv4Protocol, detect, nodeName, nodeIP, &events.FakeRecorder{}, nil, false)
	case "iptables", "iptables-nft":
		if err := iptablesPath(mode); err != nil {
			return err
		}
		metrics.RegisterMetrics(kubeproxyconfig.ProxyModeIPTables)
		p, err = iptables.NewProxier(ctx, cfg, v1.IPv4Protocol, utiliptables.New(utiliptables.ProtocolIPv4), utilsysctl.New(),
			detect, nodeName, nodeIP, &events.FakeRecorder{}, nil, false)
	default:
		return fmt.Errorf("unknown -mode %q", mode)
	}
	if err != nil {
		return fmt.Errorf("new %s proxier: %w", mode, err)
	}

	res := result{Mode: mode, Services: len(objs.Services)}
	for _, s := range objs.Slices {
		res.Endpoints += len(s.Endpoints)
	}
	failures := failureCount()
	start := time.Now()
	p.OnServiceCIDRsChanged([]string{serviceCIDR})
	for _, s := range objs.Services {
		p.OnServiceAdd(s)
	}
	for _, s := range objs.Slices {
		p.OnEndpointSliceAdd(s)
	}
	p.OnServiceSynced()        // not yet initialised: no sync
	p.OnEndpointSlicesSynced() // the full sync, synchronously
	res.FullSync = time.Since(start).Seconds()
	if f := failureCount(); f != failures {
		return fmt.Errorf("%s full sync failed (see the proxier's log above)", mode)
	}

	current := map[string]*discovery.EndpointSlice{}
	for _, s := range objs.Slices {
		current[s.Namespace+"/"+s.Name] = s
	}
	for _, u := range objs.Updates {
		old := current[u.Namespace+"/"+u.Name]
		t := time.Now()
		p.OnEndpointSliceUpdate(old, u) // queues a sync (the runner is not looping)
		p.OnServiceSynced()             // runs it: a partial sync, synchronously
		res.Partial = append(res.Partial, time.Since(t).Seconds())
		current[u.Namespace+"/"+u.Name] = u
		if f := failureCount(); f != failures {
			return fmt.Errorf("%s partial sync failed (see the proxier's log above)", mode)
		}
	}
	res.RSSKiB, res.AnonKiB = selfMem()
	return json.NewEncoder(os.Stdout).Encode(res)
}

// notRootNetns refuses the root network namespace (that of pid 1).
func notRootNetns() error {
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return err
	}
	root, err := os.Readlink("/proc/1/ns/net")
	if err != nil {
		// pid 1 not readable (a container): a throwaway namespace has no
		// default route, the machine's has one.
		routes, rerr := os.ReadFile("/proc/net/route")
		if rerr != nil {
			return rerr
		}
		for _, l := range strings.Split(string(routes), "\n")[1:] {
			if f := strings.Fields(l); len(f) > 2 && f[1] == "00000000" && f[7] == "00000000" {
				return fmt.Errorf("refusing to run in a network namespace with a default route (%s): run it in a throwaway one (unshare -n)", f[0])
			}
		}
		return nil
	}
	if self == root {
		return fmt.Errorf("refusing to run in the root network namespace: run it in a throwaway one (unshare -n)")
	}
	return nil
}

// iptablesPath puts iptables, iptables-save and iptables-restore of the
// wanted flavour (legacy or nft) first in PATH, through symlinks in a temp
// dir (the multi-call binaries dispatch on their name).
func iptablesPath(mode string) error {
	multi := "/usr/sbin/xtables-legacy-multi"
	if mode == "iptables-nft" {
		multi = "/usr/sbin/xtables-nft-multi"
	}
	if _, err := os.Stat(multi); err != nil {
		return fmt.Errorf("%s: %w (install iptables)", multi, err)
	}
	dir, err := os.MkdirTemp("", "pnb-kp-ipt-")
	if err != nil {
		return err
	}
	for _, n := range []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"} {
		if err := os.Symlink(multi, filepath.Join(dir, n)); err != nil {
			return err
		}
	}
	cleanupDirs = append(cleanupDirs, dir)
	return os.Setenv("PATH", dir+":"+os.Getenv("PATH"))
}

// cleanupDirs are removed when run returns.
var cleanupDirs []string

// failureCount is the proxiers' sync failure counters summed, from the
// metrics registry (syncProxyRules itself reports no error).
func failureCount() float64 {
	var n float64
	n += counterValue("kubeproxy_sync_proxy_rules_nftables_sync_failures_total")
	n += counterValue("kubeproxy_sync_proxy_rules_iptables_restore_failures_total")
	n += counterValue("kubeproxy_sync_proxy_rules_iptables_partial_restore_failures_total")
	return n
}

func selfMem() (rss, anon int) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		n, _ := strconv.Atoi(fs[0])
		switch k {
		case "VmRSS":
			rss = n
		case "RssAnon":
			anon = n
		}
	}
	return rss, anon
}

// counterValue sums every series of the named counter in the legacy
// registry kube-proxy registers its metrics in.
func counterValue(name string) float64 {
	mfs, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		return 0
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			n += m.GetCounter().GetValue()
		}
	}
	return n
}
