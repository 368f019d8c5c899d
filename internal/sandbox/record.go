package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/podnet/podnet/internal/api"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Mode is how a pod is networked.
type Mode string

const (
	// ModeBridge: a namespace of its own attached by the CNI plugin.
	ModeBridge Mode = api.NetworkBridge
	// ModeNone: a namespace of its own with only lo.
	ModeNone Mode = api.NetworkNone
	// ModeHost: spec.hostNetwork, the node's namespace.
	ModeHost Mode = api.NetworkHost
)

// AnnotationNetwork selects the mode of a pod that is not hostNetwork:
// "none", or "bridge" (the default when absent).
const AnnotationNetwork = api.AnnotationNetwork

// ModeOf returns the pod's network mode.
func ModeOf(pod *corev1.Pod) (Mode, error) {
	if pod.Spec.HostNetwork {
		return ModeHost, nil
	}
	switch v := pod.Annotations[AnnotationNetwork]; v {
	case "", string(ModeBridge):
		return ModeBridge, nil
	case string(ModeNone):
		return ModeNone, nil
	default:
		return "", fmt.Errorf("annotation %s: unknown network %q (want none or bridge)", AnnotationNetwork, v)
	}
}

// NetNSName is the name of the pod's network namespace: "pn-" and 12 hex
// digits of a hash of its UID (15 characters).
func NetNSName(uid types.UID) string {
	sum := sha256.Sum256([]byte(uid))
	return "pn-" + hex.EncodeToString(sum[:])[:12]
}

// Record is what the agent knows about a pod on disk, written before any
// kernel work so a crash half-way can be undone.
type Record struct {
	UID       types.UID `json:"uid"`
	Namespace string    `json:"namespace"`
	Name      string    `json:"name"`
	Mode      Mode      `json:"mode"`
	// NetNS is the named network namespace ("" in host mode).
	NetNS string `json:"netns,omitempty"`
	// ResolvConf, in host mode, is the pod's own resolv.conf (in its pod
	// directory), bind-mounted over /etc/resolv.conf for its containers
	// and execs; "" means they see the node's (resolvconf.HostNetworkOwnFile).
	ResolvConf string `json:"resolvConf,omitempty"`
	// IPs are the pod's addresses from the CNI result (bridge mode).
	IPs []string `json:"ips,omitempty"`
	// Containers are the container names, in spec order.
	Containers    []string             `json:"containers"`
	RestartPolicy corev1.RestartPolicy `json:"restartPolicy"`
	// GracePeriod is how long containers get between SIGTERM and SIGKILL.
	GracePeriod time.Duration `json:"gracePeriod"`
	// PortMappings are the CNI portMappings capability args given to ADD,
	// given again to DEL.
	PortMappings []PortMapping `json:"portMappings,omitempty"`
	// Ready is true once every set-up step succeeded. A record that is not
	// Ready belongs to a set-up that crashed and must be torn down.
	Ready     bool      `json:"ready"`
	CreatedAt time.Time `json:"createdAt"`
}

// Files under the state root.
const (
	podsDir       = "pods"
	recordFile    = "pod.json"
	containersDir = "containers"
)

func validUID(uid types.UID) error {
	s := string(uid)
	if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\x00") || len(s) > 128 {
		return fmt.Errorf("invalid pod UID %q", s)
	}
	return nil
}

func (m *Manager) podDir(uid types.UID) string {
	return filepath.Join(m.cfg.StateDir, podsDir, string(uid))
}

func (m *Manager) containerDir(uid types.UID, name string) string {
	return ContainerDir(m.cfg.StateDir, uid, name)
}

// ContainerDir is a container's directory (spec, state, log) under a node's
// state directory; `podnet logs` reads the log from there.
func ContainerDir(stateDir string, uid types.UID, name string) string {
	return filepath.Join(stateDir, podsDir, string(uid), containersDir, name)
}

// HostResolvConfPath is where a host-mode pod's own resolv.conf is kept
// under a node's state directory, when it has one (Record.ResolvConf);
// `podnet exec` looks for it there.
func HostResolvConfPath(stateDir string, uid types.UID) string {
	return filepath.Join(stateDir, podsDir, string(uid), "resolv.conf")
}

func (m *Manager) readRecord(uid types.UID) (*Record, error) {
	data, err := os.ReadFile(filepath.Join(m.podDir(uid), recordFile))
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(m.podDir(uid), recordFile), err)
	}
	if r.UID != uid {
		return nil, fmt.Errorf("%s: record is for UID %q", filepath.Join(m.podDir(uid), recordFile), r.UID)
	}
	return &r, nil
}

func (m *Manager) writeRecord(r *Record) error {
	dir := m.podDir(r.UID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, recordFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// List returns the pod records on disk, sorted by namespace and name. A
// record that cannot be read is logged and skipped.
func (m *Manager) List() ([]Record, error) {
	entries, err := os.ReadDir(filepath.Join(m.cfg.StateDir, podsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox: list pods: %w", err)
	}
	var out []Record
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		r, err := m.readRecord(types.UID(e.Name()))
		if err != nil {
			m.log.Warn("skipping unreadable pod record", "dir", filepath.Join(m.cfg.StateDir, podsDir, e.Name()), "err", err)
			continue
		}
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}
