package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/podnet/podnet/internal/cni"
)

// ConfListName is the file the agent writes in the CNI config directory.
const ConfListName = "10-podnet.conflist"

// DefaultNetworkName is the conflist's network name unless one is given.
const DefaultNetworkName = "podnet"

// DefaultCNIVersion is the conflist's cniVersion unless told otherwise:
// the newest that every current runtime accepts. containerd 1.6 and 1.7
// (libcni 1.1) reject a 1.1.0 result; containerd 2.x and CRI-O take 1.0.0
// as well as 1.1.0.
const DefaultCNIVersion = "1.0.0"

// CNIVersions are the cniVersions podnet-cni supports, oldest first.
var CNIVersions = cni.SupportedVersions

// CheckCNIVersion reports whether podnet-cni supports v.
func CheckCNIVersion(v string) error {
	for _, s := range CNIVersions {
		if v == s {
			return nil
		}
	}
	return fmt.Errorf("cniVersion %q is not supported by podnet-cni: want one of %s", v, strings.Join(CNIVersions, ", "))
}

// NetworkConfig is what the agent tells the CNI plugin about its node.
type NetworkConfig struct {
	Name string // network name, DefaultNetworkName if empty
	// CNIVersion is the conflist's cniVersion (default DefaultCNIVersion).
	CNIVersion string
	Bridge     string
	PodCIDR    string // this node's pod range
	MTU        int    // 0: the kernel default
	DataDir    string // the plugin's IPAM directory
	// NonMasqueradeCIDRs are reached with the pod's own address (the
	// cluster CIDR: pods on other nodes see the sender's pod IP).
	NonMasqueradeCIDRs []string
}

// ConfList renders the node's conflist for podnet-cni (see docs/cni.md).
func ConfList(c NetworkConfig) ([]byte, error) {
	if c.Name == "" {
		c.Name = DefaultNetworkName
	}
	if c.CNIVersion == "" {
		c.CNIVersion = DefaultCNIVersion
	}
	if err := CheckCNIVersion(c.CNIVersion); err != nil {
		return nil, err
	}
	plugin := map[string]any{
		"type":         "podnet-cni",
		"bridge":       c.Bridge,
		"subnet":       c.PodCIDR,
		"ipMasq":       true,
		"hairpinMode":  true,
		"capabilities": map[string]bool{"portMappings": true, "ips": true, "mac": true},
	}
	if c.MTU > 0 {
		plugin["mtu"] = c.MTU
	}
	if c.DataDir != "" {
		plugin["dataDir"] = c.DataDir
	}
	if len(c.NonMasqueradeCIDRs) > 0 {
		plugin["nonMasqueradeCIDRs"] = c.NonMasqueradeCIDRs
	}
	if c.Bridge == "" {
		delete(plugin, "bridge")
	}
	conf := map[string]any{
		"cniVersion": c.CNIVersion,
		"name":       c.Name,
		"plugins":    []any{plugin},
	}
	return json.MarshalIndent(conf, "", "  ")
}

// WriteFileAtomic replaces path with data (temp file, fsync, rename) unless
// it already holds exactly data. It reports whether it wrote.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	return true, os.Rename(tmp.Name(), path)
}

// InstallPlugin copies the podnet-cni binary from src into binDir when it
// is missing there or differs. Copying through a temp file and rename means
// a runtime never executes a half-written plugin.
func InstallPlugin(src, binDir string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("install CNI plugin: %w", err)
	}
	dst := filepath.Join(binDir, "podnet-cni")
	if same, _ := sameFile(src, dst); same {
		return nil
	}
	if _, err := WriteFileAtomic(dst, data, 0o755); err != nil {
		return fmt.Errorf("install CNI plugin into %s: %w", binDir, err)
	}
	return nil
}

func sameFile(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	sa, _ := fa.Stat()
	sb, _ := fb.Stat()
	if os.SameFile(sa, sb) {
		return true, nil
	}
	if sa.Size() != sb.Size() {
		return false, nil
	}
	ba, _ := io.ReadAll(fa)
	bb, _ := io.ReadAll(fb)
	return bytes.Equal(ba, bb), nil
}
