package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	corev1 "k8s.io/api/core/v1"
)

// Network attaches pods to the cluster network. The real one drives the CNI
// plugin through libcni; unit tests use a fake.
type Network interface {
	// Add attaches the pod and returns its addresses (no prefix length).
	Add(ctx context.Context, a Attachment) ([]string, error)
	// Del detaches the pod. It must succeed when the namespace is gone or
	// the pod was never (fully) attached.
	Del(ctx context.Context, a Attachment) error
}

// Attachment is one pod's CNI attachment.
type Attachment struct {
	ContainerID  string // the pod UID
	NetNS        string // namespace path; "" on DEL when it is gone
	IfName       string
	PodNamespace string
	PodName      string
	PodUID       string
	PortMappings []PortMapping
}

// PortMapping is one entry of the CNI portMappings capability.
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// PortMappingsOf returns the portMappings of the pod's container ports that
// ask for a hostPort.
func PortMappingsOf(pod *corev1.Pod) []PortMapping {
	var out []PortMapping
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			proto := strings.ToLower(string(p.Protocol))
			if proto == "" {
				proto = "tcp"
			}
			out = append(out, PortMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort, Protocol: proto, HostIP: p.HostIP})
		}
	}
	return out
}

// runtimeConf is the libcni RuntimeConf of an attachment, as a CRI runtime
// builds it.
func runtimeConf(a Attachment) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: a.ContainerID,
		NetNS:       a.NetNS,
		IfName:      a.IfName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", a.PodNamespace},
			{"K8S_POD_NAME", a.PodName},
			{"K8S_POD_INFRA_CONTAINER_ID", a.ContainerID},
			{"K8S_POD_UID", a.PodUID},
		},
		CapabilityArgs: map[string]any{},
	}
	if len(a.PortMappings) > 0 {
		rt.CapabilityArgs["portMappings"] = a.PortMappings
	}
	return rt
}

// CNI is the libcni-backed Network.
type CNI struct {
	// ConfList is the conflist's bytes; when empty, ConfListPath is read
	// at every call (so the agent may write it after creating the Manager).
	ConfList     []byte
	ConfListPath string
	BinDirs      []string
	CacheDir     string
}

var _ Network = (*CNI)(nil)

func (c *CNI) load() (*libcni.CNIConfig, *libcni.NetworkConfigList, error) {
	data := c.ConfList
	if len(data) == 0 {
		if c.ConfListPath == "" {
			return nil, nil, errors.New("cni: no conflist configured")
		}
		var err error
		if data, err = os.ReadFile(c.ConfListPath); err != nil {
			return nil, nil, fmt.Errorf("cni: %w", err)
		}
	}
	list, err := libcni.NetworkConfFromBytes(data)
	if err != nil {
		return nil, nil, fmt.Errorf("cni: parse conflist: %w", err)
	}
	return libcni.NewCNIConfigWithCacheDir(c.BinDirs, c.CacheDir, nil), list, nil
}

// Add runs CNI ADD for the whole list and returns the result's addresses.
func (c *CNI) Add(ctx context.Context, a Attachment) ([]string, error) {
	cni, list, err := c.load()
	if err != nil {
		return nil, err
	}
	res, err := cni.AddNetworkList(ctx, list, runtimeConf(a))
	if err != nil {
		return nil, fmt.Errorf("cni ADD %s: %w", list.Name, err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("cni ADD %s: convert result: %w", list.Name, err)
	}
	var ips []string
	for _, ip := range r.IPs {
		ips = append(ips, ip.Address.IP.String())
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("cni ADD %s: result has no IP addresses", list.Name)
	}
	return ips, nil
}

// Del runs CNI DEL for the whole list.
func (c *CNI) Del(ctx context.Context, a Attachment) error {
	cni, list, err := c.load()
	if err != nil {
		return err
	}
	if err := cni.DelNetworkList(ctx, list, runtimeConf(a)); err != nil {
		return fmt.Errorf("cni DEL %s: %w", list.Name, err)
	}
	return nil
}
