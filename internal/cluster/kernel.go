package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/podnet/podnet/internal/netns"
)

// Kernel is what building a topology needs from the machine. The real one
// runs `ip` and writes /proc/sys from inside namespaces; tests use a fake
// that records the calls.
type Kernel interface {
	CreateNS(name string) error
	DeleteNS(name string) error
	// IP runs `ip ARGS...` in the caller's namespace (ARGS use -n to
	// reach into others).
	IP(args ...string) error
	// Sysctl writes value to /proc/sys/<key> inside the namespace.
	Sysctl(ns, key, value string) error
}

// HostKernel is the real Kernel.
type HostKernel struct{}

var _ Kernel = HostKernel{}

func (HostKernel) CreateNS(name string) error { _, err := netns.Create(name); return err }
func (HostKernel) DeleteNS(name string) error { return netns.Delete(name) }

func (HostKernel) IP(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (HostKernel) Sysctl(ns, key, value string) error {
	return netns.Do(netns.Path(ns), func() error {
		if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644); err != nil {
			return fmt.Errorf("netns %s: sysctl %s=%s: %w", ns, key, value, err)
		}
		return nil
	})
}

// Build creates the topology's namespaces, switches, cables, addresses and
// routes. On failure it deletes every namespace it created, which takes
// the links with them, and returns the error.
func Build(k Kernel, t *Topology) (err error) {
	var made []string
	defer func() {
		if err != nil {
			for i := len(made) - 1; i >= 0; i-- {
				_ = k.DeleteNS(made[i])
			}
		}
	}()
	for _, ns := range t.Namespaces() {
		if err := k.CreateNS(ns); err != nil {
			return err
		}
		made = append(made, ns)
	}
	for _, s := range t.Switches {
		if err := k.IP("-n", s.NetNS, "link", "add", s.Bridge, "type", "bridge"); err != nil {
			return err
		}
		if err := k.IP("-n", s.NetNS, "link", "set", s.Bridge, "up"); err != nil {
			return err
		}
	}
	for _, h := range t.Hosts {
		if err := buildHost(k, t, &h); err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
	}
	return nil
}

func buildHost(k Kernel, t *Topology, h *Host) error {
	for _, c := range h.Ifaces {
		br := ""
		for _, s := range t.Switches {
			if s.NetNS == c.Switch {
				br = s.Bridge
			}
		}
		steps := [][]string{
			{"-n", h.NetNS, "link", "add", c.Name, "type", "veth", "peer", "name", c.Port, "netns", c.Switch},
			{"-n", c.Switch, "link", "set", c.Port, "master", br, "up"},
			{"-n", h.NetNS, "addr", "add", c.Addr.String(), "dev", c.Name},
			{"-n", h.NetNS, "link", "set", c.Name, "up"},
		}
		for _, s := range steps {
			if err := k.IP(s...); err != nil {
				return err
			}
		}
	}
	for _, r := range h.Routes {
		if err := k.IP("-n", h.NetNS, "route", "add", r.Dst.String(), "via", r.Via.String()); err != nil {
			return err
		}
	}
	if h.Forward {
		if err := k.Sysctl(h.NetNS, "net/ipv4/ip_forward", "1"); err != nil {
			return err
		}
	}
	return nil
}

// DeleteNamespaces removes the named namespaces (missing ones are fine),
// hosts before switches, and returns every error.
func DeleteNamespaces(k Kernel, names []string) error {
	var errs []error
	for i := len(names) - 1; i >= 0; i-- {
		if err := k.DeleteNS(names[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
