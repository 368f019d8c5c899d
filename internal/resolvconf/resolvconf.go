// Package resolvconf is the one place that computes a pod's /etc/resolv.conf
// and /etc/hosts.
//
// The sandbox writes the results to /etc/netns/<pod-netns>/, where
// `ip netns exec` bind-mounts them over the host's files for every process
// of the pod.
//
// DNS policy follows the kubelet:
//
//   - Default: the node's resolv.conf (nameservers, search, options), minus
//     loopback nameservers, which do not answer from inside a pod's namespace.
//   - ClusterFirst (the default policy) and ClusterFirstWithHostNet: the
//     cluster DNS servers in Config.ClusterDNS, the search path
//     "<ns>.svc.<domain> svc.<domain> <domain>" followed by the node's search
//     domains, and "options ndots:5". With no cluster DNS configured they
//     fall back to Default, as does ClusterFirst for a hostNetwork pod.
//   - None: only pod.Spec.DNSConfig.
//
// pod.Spec.DNSConfig is then merged in: nameservers and searches are
// appended (without duplicates), options override by name.
//
// A hostNetwork pod has no namespace of its own, so it sees the node's
// /etc/resolv.conf unless HostNetworkOwnFile says its containers get the
// computed file bind-mounted over it (ClusterFirstWithHostNet with cluster
// DNS, and None).
package resolvconf

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Limits applied after merging, as the kubelet does.
const (
	MaxNameservers = 3
	MaxSearches    = 32
	DefaultDomain  = "cluster.local"
	DefaultHost    = "/etc/resolv.conf"
	clusterNdots   = "ndots:5"
)

// Config is the node's DNS configuration.
type Config struct {
	// ClusterDNS is the cluster DNS service's addresses (e.g. 10.96.0.10).
	// Empty means no cluster DNS: ClusterFirst pods fall back to Default.
	ClusterDNS []string
	// ClusterDomain is the cluster's DNS domain; "" means cluster.local.
	ClusterDomain string
	// HostResolvConf is the node's resolv.conf; "" means /etc/resolv.conf.
	// A missing file counts as empty.
	HostResolvConf string
}

// File is a parsed resolv.conf.
type File struct {
	Nameservers []string
	Searches    []string
	Options     []string
}

// Parse reads the nameserver, search/domain and options lines of a
// resolv.conf. Comments and unknown lines are ignored; a later search or
// domain line replaces an earlier one, as in the resolver.
func Parse(data []byte) File {
	var f File
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "nameserver":
			if len(fields) > 1 {
				f.Nameservers = append(f.Nameservers, fields[1])
			}
		case "search", "domain":
			f.Searches = append([]string(nil), fields[1:]...)
		case "options":
			f.Options = mergeOptions(f.Options, fields[1:])
		}
	}
	return f
}

// Bytes renders the file in resolv.conf syntax.
func (f File) Bytes() []byte {
	var b bytes.Buffer
	for _, ns := range f.Nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if len(f.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(f.Searches, " "))
	}
	if len(f.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(f.Options, " "))
	}
	return b.Bytes()
}

// HostNetworkOwnFile reports whether a hostNetwork pod's containers must see
// ForPod's file instead of the node's /etc/resolv.conf: for dnsPolicy None,
// and for ClusterFirstWithHostNet when the node has cluster DNS. Default and
// ClusterFirst (which is Default on the host network) keep the node's file,
// as does ClusterFirstWithHostNet without cluster DNS (its fallback would
// only drop the node's loopback nameservers, which do answer on the host
// network). It is false for pods that are not hostNetwork: they always get
// their own file through their namespace.
func HostNetworkOwnFile(pod *corev1.Pod, node Config) bool {
	if pod == nil || !pod.Spec.HostNetwork {
		return false
	}
	switch pod.Spec.DNSPolicy {
	case corev1.DNSNone:
		return true
	case corev1.DNSClusterFirstWithHostNet:
		return len(node.ClusterDNS) > 0
	}
	return false
}

// ForPod returns the resolv.conf for pod on a node configured with node.
func ForPod(pod *corev1.Pod, node Config) ([]byte, error) {
	f, err := Compute(pod, node)
	if err != nil {
		return nil, err
	}
	return f.Bytes(), nil
}

// Compute is ForPod before rendering.
func Compute(pod *corev1.Pod, node Config) (File, error) {
	if pod == nil {
		return File{}, errors.New("resolvconf: nil pod")
	}
	who := pod.Namespace + "/" + pod.Name
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	var f File
	switch policy {
	case corev1.DNSNone:
		if pod.Spec.DNSConfig == nil {
			return File{}, fmt.Errorf("resolvconf: pod %s: dnsPolicy None needs dnsConfig", who)
		}
	case corev1.DNSDefault, corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet:
		host, err := hostFile(node.HostResolvConf)
		if err != nil {
			return File{}, fmt.Errorf("resolvconf: pod %s: %w", who, err)
		}
		useCluster := policy != corev1.DNSDefault && len(node.ClusterDNS) > 0 &&
			!(policy == corev1.DNSClusterFirst && pod.Spec.HostNetwork)
		if useCluster {
			domain := node.ClusterDomain
			if domain == "" {
				domain = DefaultDomain
			}
			f.Nameservers = append([]string(nil), node.ClusterDNS...)
			f.Searches = []string{pod.Namespace + ".svc." + domain, "svc." + domain, domain}
			f.Searches = appendUnique(f.Searches, host.Searches)
			f.Options = []string{clusterNdots}
		} else {
			f = host
		}
	default:
		return File{}, fmt.Errorf("resolvconf: pod %s: unknown dnsPolicy %q", who, policy)
	}
	if c := pod.Spec.DNSConfig; c != nil {
		f.Nameservers = appendUnique(f.Nameservers, c.Nameservers)
		f.Searches = appendUnique(f.Searches, c.Searches)
		var opts []string
		for _, o := range c.Options {
			if o.Name == "" {
				continue
			}
			if o.Value != nil {
				opts = append(opts, o.Name+":"+*o.Value)
			} else {
				opts = append(opts, o.Name)
			}
		}
		f.Options = mergeOptions(f.Options, opts)
	}
	if len(f.Nameservers) > MaxNameservers {
		f.Nameservers = f.Nameservers[:MaxNameservers]
	}
	if len(f.Searches) > MaxSearches {
		f.Searches = f.Searches[:MaxSearches]
	}
	return f, nil
}

// hostFile reads the node's resolv.conf without loopback nameservers.
func hostFile(path string) (File, error) {
	if path == "" {
		path = DefaultHost
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return File{}, nil
	}
	if err != nil {
		return File{}, fmt.Errorf("read host resolv.conf: %w", err)
	}
	f := Parse(data)
	var ns []string
	for _, s := range f.Nameservers {
		if a, err := netip.ParseAddr(s); err == nil && a.Unmap().IsLoopback() {
			continue
		}
		ns = append(ns, s)
	}
	f.Nameservers = ns
	return f, nil
}

func appendUnique(dst, src []string) []string {
	for _, s := range src {
		dup := false
		for _, d := range dst {
			if d == s {
				dup = true
				break
			}
		}
		if !dup {
			dst = append(dst, s)
		}
	}
	return dst
}

// mergeOptions adds opts to base; an option whose name (the part before
// ':') is already present replaces it in place.
func mergeOptions(base, opts []string) []string {
	out := append([]string(nil), base...)
	for _, o := range opts {
		name, _, _ := strings.Cut(o, ":")
		replaced := false
		for i, e := range out {
			if en, _, _ := strings.Cut(e, ":"); en == name {
				out[i] = o
				replaced = true
				break
			}
		}
		if !replaced {
			out = append(out, o)
		}
	}
	return out
}
