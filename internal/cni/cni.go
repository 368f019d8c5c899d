// Package cni is the podnet-cni plugin (CNI spec 1.1.0, also 0.4.0 and
// 1.0.0): config parsing and validation, and the ADD, DEL, CHECK, STATUS,
// GC and VERSION commands.
//
// One plugin does everything for a pod attachment, with no delegation: the
// node bridge and the pod's veth (internal/link), addresses and host ports
// (internal/ipam, state under dataDir/<network>/) and masquerade and
// published ports in nftables (internal/nft).
//
// ADD, CHECK and STATUS validate the whole config (STATUS reports a
// broken one as code 7 naming the field). DEL and GC read only the
// network name and dataDir and take everything else from the attachment
// records, so a config broken while pods run never strands them.
//
// ADD validates the whole config first, then reserves addresses and ports
// and writes the attachment record under the network's flock, then does the
// kernel work outside the lock. Every step registers an undo that runs if a
// later step fails, so a failed ADD leaves nothing behind. The record is
// written before any kernel change, so DEL and GC can always undo whatever
// an interrupted ADD did. See docs/cni.md.
package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/podnet/podnet/internal/ipam"
	"github.com/podnet/podnet/internal/link"
	"github.com/podnet/podnet/internal/nft"
)

// Plugin-specific error codes (the spec reserves 100 and up for plugins).
const (
	ErrRangeExhausted uint = 100 // no free address in a range
	ErrHostPortTaken  uint = 101 // a requested host port is held by another attachment
	ErrAddressTaken   uint = 102 // a requested address (ips capability) is held by another attachment
)

// SupportedVersions are the cniVersions the plugin takes, oldest first.
var SupportedVersions = []string{"0.4.0", "1.0.0", "1.1.0"}

// LockTimeout bounds the wait for the network's state lock; past it the
// plugin answers code 11 (try again later).
const LockTimeout = 30 * time.Second

// CrashEnv names the test-only hook: when set to a step name the plugin
// kills itself with SIGKILL at that step, to prove crash safety.
const CrashEnv = "PODNET_CNI_TEST_CRASH_AT"

// Main is the plugin's entry point.
func Main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		Status: cmdStatus,
		GC:     cmdGC,
	}, version.PluginSupports(SupportedVersions...), "podnet-cni: podnet's bridge, IPAM and nftables CNI plugin")
}

var log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// TraceEnv, when set, makes the plugin log each step's elapsed time to
// stderr (for latency measurements).
const TraceEnv = "PODNET_CNI_TRACE"

var start = time.Now()

func crashAt(step string) {
	if os.Getenv(TraceEnv) != "" {
		fmt.Fprintf(os.Stderr, "podnet-cni trace: %-14s %v\n", step, time.Since(start))
	}
	if v := os.Getenv(CrashEnv); v != "" && v == step {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}

// Record is an attachment's state on disk: everything DEL, CHECK and GC
// need, independent of the config they are called with.
type Record struct {
	ContainerID string            `json:"containerID"`
	IfName      string            `json:"ifName"`
	Netns       string            `json:"netns"`
	Network     string            `json:"network"`
	Bridge      string            `json:"bridge"`
	HostVeth    string            `json:"hostVeth"`
	IPs         []netip.Prefix    `json:"ips"`
	Ports       []nft.PortMapping `json:"portMappings,omitempty"`
	IPMasq      bool              `json:"ipMasq"`
	// NonMasq is the config's nonMasqueradeCIDRs at ADD, so DEL removes
	// exactly the elements ADD made even if the config changed since.
	NonMasq []netip.Prefix `json:"nonMasqueradeCIDRs,omitempty"`
	Created time.Time      `json:"created"`
}

func (r *Record) attachment() nft.Attachment {
	return nft.Attachment{Key: r.Network + "/" + r.HostVeth, IPs: r.IPs, Masquerade: r.IPMasq, Ports: r.Ports, NonMasquerade: r.NonMasq}
}

func ioErr(format string, err error) error {
	return types.NewError(types.ErrIOFailure, fmt.Sprintf("podnet-cni: "+format, err), "")
}

func internalErr(format string, err error) error {
	return types.NewError(types.ErrInternal, fmt.Sprintf("podnet-cni: "+format, err), "")
}

// network is an open network state directory.
type network struct {
	cfg   *Config
	store *ipam.DiskStore
}

func openNetwork(cfg *Config) (*network, error) {
	st, err := ipam.NewDiskStore(cfg.DataDir)
	if err != nil {
		return nil, ioErr("%v", err)
	}
	return &network{cfg: cfg, store: st}, nil
}

func (n *network) lock() (func(), error) {
	unlock, err := n.store.Lock(LockTimeout)
	if errors.Is(err, ipam.ErrLockTimeout) {
		return nil, types.NewError(types.ErrTryAgainLater, fmt.Sprintf("podnet-cni: network %q: %v", n.cfg.Name, err), "")
	}
	if err != nil {
		return nil, ioErr("%v", err)
	}
	return unlock, nil
}

func (n *network) record(key string) (*Record, error) {
	b, err := n.store.GetRecord(key)
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		// A torn record can't be: records are renamed into place. Treat
		// garbage as an IO failure rather than guess.
		return nil, fmt.Errorf("attachment record %s: %w", key, err)
	}
	return &r, nil
}

func cmdAdd(args *skel.CmdArgs) error {
	cfg, err := ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	res, err := add(context.Background(), cfg, args)
	if err != nil {
		return err
	}
	return types.PrintResult(res, cfg.CNIVersion)
}

func add(ctx context.Context, cfg *Config, args *skel.CmdArgs) (_ *current.Result, retErr error) {
	crashAt("parsed")
	n, err := openNetwork(cfg)
	if err != nil {
		return nil, err
	}
	hostVeth := link.HostVethName(args.ContainerID, args.IfName)
	// A repeated ADD without DEL (or one after a killed ADD): undo the old
	// attachment first so the new one starts clean.
	if _, err := n.store.GetRecord(hostVeth); err == nil {
		if err := n.teardown(ctx, hostVeth); err != nil {
			return nil, err
		}
	}

	success := false
	var undo []func()
	defer func() {
		if !success {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()

	rec, err := n.reserve(args, hostVeth)
	if err != nil {
		return nil, err
	}
	undo = append(undo, func() {
		unlock, err := n.lock()
		if err != nil {
			log.Warn("undo ADD: lock", "err", err)
			return
		}
		defer unlock()
		if err := (&ipam.Allocator{Store: n.store}).Release(hostVeth); err != nil {
			log.Warn("undo ADD: release", "err", err)
		}
		if err := n.store.DeleteRecord(hostVeth); err != nil {
			log.Warn("undo ADD: delete record", "err", err)
		}
	})
	crashAt("after-reserve")

	// Kernel work, outside the lock.
	var gws []netip.Prefix
	for _, f := range cfg.Families {
		for _, r := range f.Ranges {
			gws = append(gws, netip.PrefixFrom(r.Gateway, r.Subnet.Bits()))
		}
	}
	br, err := link.EnsureBridge(cfg.Bridge, cfg.MTU, gws)
	if err != nil {
		return nil, internalErr("%v", err)
	}
	if err := sysctls(cfg); err != nil {
		return nil, internalErr("%v", err)
	}
	crashAt("after-bridge")
	created, err := link.SetupVeth(link.Veth{
		HostName:  hostVeth,
		ContName:  args.IfName,
		NetnsPath: args.Netns,
		Bridge:    br,
		MTU:       cfg.MTU,
		MAC:       cfg.MAC,
		Hairpin:   cfg.Hairpin,
		Addrs:     rec.IPs,
		Routes:    cfg.Routes,
	})
	if err != nil {
		return nil, internalErr("%v", err)
	}
	undo = append(undo, func() {
		if err := link.DeleteLink(hostVeth); err != nil {
			log.Warn("undo ADD: delete veth", "err", err)
		}
	})
	crashAt("after-veth")

	dp, err := nft.NewExec()
	if err != nil {
		return nil, internalErr("%v", err)
	}
	att := rec.attachment()
	if err := dp.Add(ctx, att); err != nil {
		return nil, internalErr("%v", err)
	}
	undo = append(undo, func() {
		if err := dp.Remove(ctx, att); err != nil {
			log.Warn("undo ADD: remove nft elements", "err", err)
		}
	})
	crashAt("after-nft")
	defer crashAt("done")

	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: cfg.Bridge, Mac: br.Attrs().HardwareAddr.String()},
			{Name: hostVeth, Mac: created.HostMAC.String()},
			{Name: args.IfName, Mac: created.ContMAC.String(), Sandbox: args.Netns},
		},
		DNS: cfg.DNS,
	}
	for _, p := range rec.IPs {
		f, _ := cfg.family(p.Addr().Is4())
		gw := f.Gateway()
		for _, r := range f.Ranges {
			if r.Subnet.Contains(p.Addr()) {
				gw = r.Gateway
			}
		}
		res.IPs = append(res.IPs, &current.IPConfig{
			Interface: current.Int(2),
			Address:   net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
			Gateway:   gw.AsSlice(),
		})
	}
	for _, r := range cfg.Routes {
		rt := &types.Route{Dst: net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), r.Dst.Addr().BitLen())}}
		if r.GW.IsValid() {
			rt.GW = r.GW.AsSlice()
		}
		res.Routes = append(res.Routes, rt)
	}
	success = true
	return res, nil
}

// reserve allocates addresses and host ports and writes the attachment
// record, all under the network lock. On error nothing is reserved.
func (n *network) reserve(args *skel.CmdArgs, key string) (*Record, error) {
	unlock, err := n.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	alloc := &ipam.Allocator{Store: n.store}
	ok := false
	defer func() {
		if !ok {
			_ = alloc.Release(key)
		}
	}()
	rec := &Record{
		ContainerID: args.ContainerID, IfName: args.IfName, Netns: args.Netns,
		Network: n.cfg.Name, Bridge: n.cfg.Bridge, HostVeth: key,
		Ports: n.cfg.Ports, IPMasq: n.cfg.IPMasq, NonMasq: n.cfg.NonMasq, Created: time.Now().UTC(),
	}
	for _, f := range n.cfg.Families {
		want := n.cfg.Requested[f.Is4()]
		var ip netip.Addr
		var lastErr error
		for _, r := range f.Ranges {
			if want.IsValid() && !r.Contains(want) {
				continue
			}
			ip, lastErr = alloc.Allocate(key, r, want)
			if lastErr == nil || !errors.Is(lastErr, ipam.ErrExhausted) {
				break
			}
		}
		if lastErr != nil {
			var ex *ipam.ExhaustedError
			switch {
			case errors.As(lastErr, &ex):
				return nil, types.NewError(ErrRangeExhausted, "podnet-cni: "+ex.Error(), "")
			case errors.Is(lastErr, ipam.ErrIPTaken):
				return nil, types.NewError(ErrAddressTaken, "podnet-cni: "+n.describeOwner(lastErr.Error()), "")
			default:
				return nil, ioErr("allocate address: %v", lastErr)
			}
		}
		var bits int
		for _, r := range f.Ranges {
			if r.Contains(ip) {
				bits = r.Subnet.Bits()
			}
		}
		rec.IPs = append(rec.IPs, netip.PrefixFrom(ip, bits))
	}
	crashAt("after-ip")
	var ports []ipam.Port
	for _, pm := range n.cfg.Ports {
		ports = append(ports, ipam.Port{Proto: pm.Proto, HostIP: pm.HostIP, Port: pm.HostPort})
	}
	if err := alloc.ReservePorts(key, ports); err != nil {
		var pc *ipam.PortConflictError
		if errors.As(err, &pc) {
			owner := pc.Owner
			if r, err := n.record(owner); err == nil {
				owner = r.ContainerID
			}
			return nil, types.NewError(ErrHostPortTaken, fmt.Sprintf("podnet-cni: host port %s is already allocated to container %s", pc.Port, owner), "")
		}
		return nil, types.NewError(types.ErrInvalidNetworkConfig, "podnet-cni: config field \"runtimeConfig.portMappings\": "+err.Error(), "")
	}
	crashAt("after-ports")
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return nil, internalErr("%v", err)
	}
	if err := n.store.PutRecord(key, b); err != nil {
		return nil, ioErr("%v", err)
	}
	ok = true
	return rec, nil
}

// describeOwner rewrites "... in use by <key>" to name the container.
func (n *network) describeOwner(msg string) string {
	i := strings.LastIndex(msg, " by ")
	if i < 0 {
		return msg
	}
	rest := msg[i+4:]
	key, tail, _ := strings.Cut(rest, ":")
	if r, err := n.record(key); err == nil {
		return msg[:i] + " by container " + r.ContainerID + ":" + tail
	}
	return msg
}

func sysctls(cfg *Config) error {
	for _, f := range cfg.Families {
		if f.Is4() {
			if err := link.Sysctl("net/ipv4/ip_forward", "1"); err != nil {
				return err
			}
			// Lets DNAT from 127.0.0.1 to a pod leave through the bridge.
			if err := link.Sysctl("net/ipv4/conf/"+cfg.Bridge+"/route_localnet", "1"); err != nil {
				return err
			}
		} else {
			if err := link.Sysctl("net/ipv6/conf/all/forwarding", "1"); err != nil {
				return err
			}
		}
	}
	return nil
}

// teardown undoes one attachment by key: veth, nft elements, reservations,
// record, in that order, so an interruption leaves the record for a retry.
// A missing record still frees any reservation and link under the key.
func (n *network) teardown(ctx context.Context, key string) error {
	rec, err := n.record(key)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return ioErr("%v", err)
	}
	// Deleting a veth waits for RCU grace periods (~20 ms); overlap it
	// with the nft transaction. Addresses are released only after both.
	linkErr := make(chan error, 1)
	go func() { linkErr <- link.DeleteLink(key) }()
	var nftErr error
	if rec != nil {
		dp, err := nft.NewExec()
		if err == nil {
			err = dp.Remove(ctx, rec.attachment())
		}
		nftErr = err
	}
	if err := errors.Join(<-linkErr, nftErr); err != nil {
		return internalErr("%v", err)
	}
	unlock, err := n.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := (&ipam.Allocator{Store: n.store}).Release(key); err != nil {
		return ioErr("%v", err)
	}
	if err := n.store.DeleteRecord(key); err != nil {
		return ioErr("%v", err)
	}
	return nil
}

func cmdDel(args *skel.CmdArgs) error {
	cfg, err := ParseTeardownConfig(args.StdinData)
	if err != nil {
		return err
	}
	key := link.HostVethName(args.ContainerID, args.IfName)
	if _, err := os.Stat(cfg.DataDir); errors.Is(err, fs.ErrNotExist) {
		// Nothing was ever recorded for this network; only the link can exist.
		if err := link.DeleteLink(key); err != nil {
			return internalErr("%v", err)
		}
		return nil
	}
	n, err := openNetwork(cfg)
	if err != nil {
		return err
	}
	return n.teardown(context.Background(), key)
}

func cmdCheck(args *skel.CmdArgs) error {
	cfg, err := ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	n, err := openNetwork(cfg)
	if err != nil {
		return err
	}
	key := link.HostVethName(args.ContainerID, args.IfName)
	rec, err := n.record(key)
	if errors.Is(err, fs.ErrNotExist) {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("podnet-cni: no attachment of container %s interface %s in network %q", args.ContainerID, args.IfName, cfg.Name), "")
	}
	if err != nil {
		return ioErr("%v", err)
	}
	if rec.ContainerID != args.ContainerID || rec.IfName != args.IfName {
		return internalErr("%v", fmt.Errorf("attachment record %s belongs to %s/%s", key, rec.ContainerID, rec.IfName))
	}
	ips, err := n.store.IPs()
	if err != nil {
		return ioErr("%v", err)
	}
	for _, p := range rec.IPs {
		if ips[p.Addr()] != key {
			return internalErr("%v", fmt.Errorf("address %s of container %s is not reserved for it", p.Addr(), args.ContainerID))
		}
	}
	if err := link.CheckVeth(rec.HostVeth, rec.Bridge, args.Netns, args.IfName, rec.IPs); err != nil {
		return internalErr("check: %v", err)
	}
	dp, err := nft.NewExec()
	if err != nil {
		return internalErr("%v", err)
	}
	if err := dp.Check(context.Background(), rec.attachment()); err != nil {
		return internalErr("check: %v", err)
	}
	return nil
}

func cmdStatus(args *skel.CmdArgs) error {
	cfg, err := ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	unavailable := func(format string, err error) error {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("podnet-cni: "+format, err), "")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return unavailable("dataDir not writable: %v", err)
	}
	f, err := os.CreateTemp(cfg.DataDir, ".status-")
	if err != nil {
		return unavailable("dataDir not writable: %v", err)
	}
	f.Close()
	os.Remove(f.Name())
	if err := nft.Probe(context.Background()); err != nil {
		return unavailable("nftables not usable: %v", err)
	}
	return nil
}

func cmdGC(args *skel.CmdArgs) error {
	cfg, err := ParseTeardownConfig(args.StdinData)
	if err != nil {
		return err
	}
	if _, err := os.Stat(cfg.DataDir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	n, err := openNetwork(cfg)
	if err != nil {
		return err
	}
	return n.gc(context.Background(), cfg.Raw.ValidAttachments)
}

// gc removes every attachment of the network not in valid, and every
// reservation without an attachment record (left by a killed ADD).
func (n *network) gc(ctx context.Context, valid []types.GCAttachment) error {
	keep := map[string]bool{}
	for _, a := range valid {
		keep[link.HostVethName(a.ContainerID, a.IfName)] = true
	}
	keys, err := n.store.RecordKeys()
	if err != nil {
		return ioErr("%v", err)
	}
	var errs []error
	live := map[string]bool{}
	for _, k := range keys {
		if keep[k] {
			live[k] = true
			continue
		}
		if err := n.teardown(ctx, k); err != nil {
			errs = append(errs, err)
			live[k] = true
		}
	}
	// Reservations whose ADD died before writing the record.
	unlock, err := n.lock()
	if err != nil {
		return err
	}
	owners, err := n.store.Owners()
	if err == nil {
		recs, _ := n.store.RecordKeys()
		have := map[string]bool{}
		for _, k := range recs {
			have[k] = true
		}
		for k := range owners {
			if !have[k] {
				if err := (&ipam.Allocator{Store: n.store}).Release(k); err != nil {
					errs = append(errs, err)
				}
				if k != "" {
					_ = link.DeleteLink(k)
				}
			}
		}
	} else {
		errs = append(errs, err)
	}
	unlock()
	// nft elements of this network whose record is gone.
	dp, err := nft.NewExec()
	if err != nil {
		return internalErr("%v", err)
	}
	if err := dp.Sweep(ctx, n.cfg.Name+"/", func(key string) bool { return live[key] }); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return internalErr("gc: %v", err)
	}
	return nil
}
