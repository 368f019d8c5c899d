package resolvconf

import (
	"bytes"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// hostsHeader is the fixed part of every pod's hosts file, as the kubelet
// writes it.
const hostsHeader = `# Kubernetes-managed hosts file (podnet).
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
fe00::0	ip6-localnet
fe00::0	ip6-mcastprefix
fe00::1	ip6-allnodes
fe00::2	ip6-allrouters
`

// HostsFor returns the /etc/hosts of a pod with the given addresses: the
// localhost lines, one "<podIP>\t<hostname>" line per pod address (the
// hostname is spec.hostname, else the pod's name) and spec.hostAliases.
func HostsFor(pod *corev1.Pod, podIPs []string) []byte {
	var b bytes.Buffer
	b.WriteString(hostsHeader)
	host := pod.Spec.Hostname
	if host == "" {
		host = pod.Name
	}
	for _, ip := range podIPs {
		if ip == "" {
			continue
		}
		fmt.Fprintf(&b, "%s\t%s\n", ip, host)
	}
	if len(pod.Spec.HostAliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, a := range pod.Spec.HostAliases {
			if a.IP == "" || len(a.Hostnames) == 0 {
				continue
			}
			fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
		}
	}
	return b.Bytes()
}
