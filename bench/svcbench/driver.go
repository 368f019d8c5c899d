package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/podnet/podnet/internal/nft"
	"github.com/podnet/podnet/internal/proxy"
	"sigs.k8s.io/knftables"
)

// syncResult is one driver's output, one JSON line on stdout; the
// kube-proxy driver prints the same fields.
type syncResult struct {
	Mode      string    `json:"mode"`
	Services  int       `json:"services"`
	Endpoints int       `json:"endpoints"`
	FullSync  float64   `json:"fullSyncSeconds"`
	Partial   []float64 `json:"partialSyncSeconds"`
	RSSKiB    int       `json:"rssKiB"`
	AnonKiB   int       `json:"anonKiB"`
	// podnet only: the full sync's nft transaction (Run) alone, and (with
	// -dump) its size.
	NFTSeconds float64 `json:"nftSeconds,omitempty"`
	NFTBytes   int     `json:"nftBytes,omitempty"`
}

// podnetDriver is `svcbench podnet-driver`: podnet's side of the sync
// comparison. In the current network namespace (never the root one) it
// feeds the objects file to internal/proxy as the agent's informers do
// (SetService / SetSlice for each), times the first Sync (the full one),
// then each update as SetSlice + Sync, and prints a syncResult. The rules
// stay in the namespace when it exits.
func podnetDriver(args []string) int {
	fs := flag.NewFlagSet("podnet-driver", flag.ExitOnError)
	file := fs.String("objects", "", "JSON file of services, endpointSlices and updates")
	nodeName := fs.String("node-name", "pnb-node", "node name")
	cluster := fs.String("cluster-cidr", "", "pod CIDR of the cluster")
	svcCIDR := fs.String("service-cidr", serviceCIDR.String(), "service CIDR")
	nodeIP := fs.String("node-ip", "", "the node's IP (the proxier routes the service CIDR to lo with it as source)")
	viaKnftables := fs.Bool("knftables", false, "program through knftables (exec nft) instead of the agent's default kernel path (netlink)")
	dump := fs.String("dump", "", "with -knftables: write the full sync's nft transaction to this file (to time `nft -f` alone)")
	_ = fs.Parse(args)
	res, err := runPodnetDriver(*file, *nodeName, *nodeIP, *cluster, *svcCIDR, *dump, *viaKnftables)
	if err != nil {
		fmt.Fprintln(os.Stderr, "podnet-driver:", err)
		return 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, "podnet-driver:", err)
		return 1
	}
	return 0
}

func runPodnetDriver(file, nodeName, nodeIPStr, cluster, svcCIDR, dump string, viaKnftables bool) (*syncResult, error) {
	if err := notRootNetns(); err != nil {
		return nil, err
	}
	cc, err := netip.ParsePrefix(cluster)
	if err != nil {
		return nil, fmt.Errorf("-cluster-cidr: %w", err)
	}
	sc, err := netip.ParsePrefix(svcCIDR)
	if err != nil {
		return nil, fmt.Errorf("-service-cidr: %w", err)
	}
	var nodeIP netip.Addr
	if nodeIPStr != "" {
		if nodeIP, err = netip.ParseAddr(nodeIPStr); err != nil {
			return nil, fmt.Errorf("-node-ip: %w", err)
		}
	}
	objs, err := readObjects(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	// As the agent does (internal/agent/services.go): NFT nil is the real
	// kernel, over netlink, in this namespace.
	cfg := proxy.Config{NodeName: nodeName, NodeIP: nodeIP, ClusterCIDR: cc, ServiceCIDR: sc}
	var rec *recorder
	if viaKnftables {
		nftIf, err := knftables.New(knftables.InetFamily, nft.TableName)
		if err != nil {
			return nil, fmt.Errorf("knftables: %w", err)
		}
		rec = &recorder{Interface: nftIf, keep: dump != ""}
		cfg.NFT = rec
	}
	p := proxy.New(cfg)
	res := &syncResult{Mode: "podnet", Services: len(objs.Services)}
	if viaKnftables {
		res.Mode = "podnet-knftables"
	}
	for _, s := range objs.Slices {
		res.Endpoints += len(s.Endpoints)
	}
	ctx := context.Background()
	start := time.Now()
	for _, s := range objs.Services {
		p.SetService(s)
	}
	for _, s := range objs.Slices {
		p.SetSlice(s)
	}
	st, err := p.Sync(ctx)
	res.FullSync = time.Since(start).Seconds()
	if err != nil {
		return nil, fmt.Errorf("full sync: %w", err)
	}
	if rec != nil {
		res.NFTSeconds, res.NFTBytes = rec.took.Seconds(), len(rec.last)
	}
	if dump != "" && rec != nil {
		if err := os.WriteFile(dump, []byte(rec.last), 0o644); err != nil {
			return nil, err
		}
	}
	if st.Services != len(objs.Services) {
		return nil, fmt.Errorf("full sync programmed %d services, want %d", st.Services, len(objs.Services))
	}
	for i, u := range objs.Updates {
		t := time.Now()
		p.SetSlice(u)
		st, err := p.Sync(ctx)
		res.Partial = append(res.Partial, time.Since(t).Seconds())
		if err != nil {
			return nil, fmt.Errorf("update %d (%s): %w", i, u.Name, err)
		}
		if st.Changed != 1 {
			return nil, fmt.Errorf("update %d (%s) changed %d services, want 1", i, u.Name, st.Changed)
		}
	}
	rss, anon, _, _ := procMem(os.Getpid())
	res.RSSKiB, res.AnonKiB = rss, anon
	return res, nil
}

// recorder times the transactions (Run: the exec of `nft -f`, its parse
// and the kernel's commit) and keeps the last one's text.
type recorder struct {
	knftables.Interface
	keep bool // keep the text (costs a String() outside the timing)
	took time.Duration
	last string
}

func (r *recorder) Run(ctx context.Context, tx *knftables.Transaction) error {
	if r.keep {
		r.last = tx.String()
	}
	t := time.Now()
	err := r.Interface.Run(ctx, tx)
	r.took = time.Since(t)
	return err
}

// notRootNetns refuses the root network namespace (that of pid 1), as the
// kube-proxy driver does. Where pid 1's namespace cannot be read (a
// container), a namespace with a default route is refused: the throwaway
// node namespace has none.
func notRootNetns() error {
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return err
	}
	root, err := os.Readlink("/proc/1/ns/net")
	if err != nil {
		routes, rerr := os.ReadFile("/proc/net/route")
		if rerr != nil {
			return rerr
		}
		for _, l := range strings.Split(string(routes), "\n")[1:] {
			if f := strings.Fields(l); len(f) > 7 && f[1] == "00000000" && f[7] == "00000000" {
				return fmt.Errorf("refusing to run in a network namespace with a default route (%s): run it in a throwaway one", f[0])
			}
		}
		return nil
	}
	if self == root {
		return fmt.Errorf("refusing to run in the root network namespace: run it in a throwaway one")
	}
	return nil
}
