package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"
	"sigs.k8s.io/yaml"
)

// The context file, like a kubeconfig, lists the clusters the CLI knows
// and which one is current:
//
//	apiVersion: podnet.io/v1
//	kind: Config
//	currentCluster: podnet
//	clusters:
//	- name: podnet
//	  etcdEndpoints: [http://192.168.250.2:2379]
//	  netns: podnet-podnet-cp        # dial the endpoints from inside it
//	  dir: /var/lib/podnet/clusters/podnet
//	  backend: vxlan
//	  nodes:
//	  - {name: podnet-n1, netns: podnet-podnet-n1, ip: 192.168.250.11}
//
// A cluster entry may also name an external etcd (no netns, TLS files).
const (
	ConfigAPIVersion = "podnet.io/v1"
	ConfigKind       = "Config"
	// ConfigEnv overrides the context file's path.
	ConfigEnv = "PODNET_CONFIG"
	// ClusterEnv picks a cluster, as --cluster does.
	ClusterEnv = "PODNET_CLUSTER"
	// DirEnv overrides DefaultDir, the parent of cluster directories.
	DirEnv = "PODNET_CLUSTERS_DIR"
	// DefaultDir holds one directory per local cluster.
	DefaultDir = "/var/lib/podnet/clusters"
)

// Config is the context file.
type Config struct {
	APIVersion     string  `json:"apiVersion"`
	Kind           string  `json:"kind"`
	CurrentCluster string  `json:"currentCluster,omitempty"`
	Clusters       []Entry `json:"clusters"`
}

// Entry says how to reach one cluster.
type Entry struct {
	Name          string   `json:"name"`
	EtcdEndpoints []string `json:"etcdEndpoints"`
	// NetNS is the named network namespace the endpoints are dialled
	// from ("" for the caller's own).
	NetNS    string `json:"netns,omitempty"`
	CAFile   string `json:"etcdCAFile,omitempty"`
	CertFile string `json:"etcdCertFile,omitempty"`
	KeyFile  string `json:"etcdKeyFile,omitempty"`
	// Dir is a local cluster's directory (its record, logs, state).
	Dir     string      `json:"dir,omitempty"`
	Backend string      `json:"backend,omitempty"`
	Nodes   []NodeEntry `json:"nodes,omitempty"`
}

// NodeEntry is one node of a local cluster.
type NodeEntry struct {
	Name  string `json:"name"`
	NetNS string `json:"netns"`
	IP    string `json:"ip"`
}

// NodeNetNS returns the namespace of the named node, or "".
func (e *Entry) NodeNetNS(node string) string {
	for _, n := range e.Nodes {
		if n.Name == node {
			return n.NetNS
		}
	}
	return ""
}

// ConfigPath is $PODNET_CONFIG, else ~/.podnet/config.
func ConfigPath() string {
	if p := os.Getenv(ConfigEnv); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/root"
	}
	return filepath.Join(home, ".podnet", "config")
}

// ClustersDir is $PODNET_CLUSTERS_DIR, else DefaultDir.
func ClustersDir() string {
	if d := os.Getenv(DirEnv); d != "" {
		return d
	}
	return DefaultDir
}

// LoadConfig reads the context file; a missing file is an empty Config.
func LoadConfig(path string) (*Config, error) {
	c := &Config{APIVersion: ConfigAPIVersion, Kind: ConfigKind}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("context file %s: %w", path, err)
	}
	if err := yaml.UnmarshalStrict(b, c); err != nil {
		return nil, fmt.Errorf("context file %s: %w", path, err)
	}
	if c.Kind != ConfigKind || c.APIVersion != ConfigAPIVersion {
		return nil, fmt.Errorf("context file %s: want apiVersion %s, kind %s; have %q, %q", path, ConfigAPIVersion, ConfigKind, c.APIVersion, c.Kind)
	}
	for i, e := range c.Clusters {
		if e.Name == "" {
			return nil, fmt.Errorf("context file %s: clusters[%d].name: required", path, i)
		}
		if len(e.EtcdEndpoints) == 0 {
			return nil, fmt.Errorf("context file %s: clusters[%d].etcdEndpoints: required", path, i)
		}
	}
	return c, nil
}

// Get returns the named entry, or nil.
func (c *Config) Get(name string) *Entry {
	for i := range c.Clusters {
		if c.Clusters[i].Name == name {
			return &c.Clusters[i]
		}
	}
	return nil
}

// Select picks the cluster to use: name if given (an error if unknown),
// else the current one, else nil (the caller's default).
func (c *Config) Select(name, path string) (*Entry, error) {
	if name != "" {
		if e := c.Get(name); e != nil {
			return e, nil
		}
		return nil, fmt.Errorf("cluster %q is not in the context file %s (see `podnet cluster list`)", name, path)
	}
	if c.CurrentCluster == "" {
		return nil, nil
	}
	if e := c.Get(c.CurrentCluster); e != nil {
		return e, nil
	}
	return nil, fmt.Errorf("current cluster %q is not in the context file %s", c.CurrentCluster, path)
}

// UpdateConfig applies fn to the context file under an exclusive lock and
// writes it back atomically.
func UpdateConfig(path string, fn func(*Config) error) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("context file %s: %w", path, err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("context file %s: lock: %w", path, err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("context file %s: lock: %w", path, err)
	}
	c, err := LoadConfig(path)
	if err != nil {
		return err
	}
	if err := fn(c); err != nil {
		return err
	}
	sort.Slice(c.Clusters, func(i, j int) bool { return c.Clusters[i].Name < c.Clusters[j].Name })
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("context file %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("context file %s: %w", path, err)
	}
	return nil
}

// Put adds or replaces an entry.
func (c *Config) Put(e Entry) {
	if old := c.Get(e.Name); old != nil {
		*old = e
		return
	}
	c.Clusters = append(c.Clusters, e)
}

// Remove drops the named entry (and the current cluster if it was it).
func (c *Config) Remove(name string) bool {
	for i := range c.Clusters {
		if c.Clusters[i].Name == name {
			c.Clusters = append(c.Clusters[:i], c.Clusters[i+1:]...)
			if c.CurrentCluster == name {
				c.CurrentCluster = ""
			}
			return true
		}
	}
	return false
}
