package cli

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/podnet/podnet/internal/api"
	corev1 "k8s.io/api/core/v1"
)

func nodeStatus(n *corev1.Node) string { return api.NodeStatus(n) }

func nodeRoles(n *corev1.Node) string { return api.NodeRoles(n) }

// describeNode prints a node, its conditions (with their messages, e.g. a
// pod CIDR exhaustion) and the pods bound to it.
func describeNode(w io.Writer, n *corev1.Node, pods []*corev1.Pod) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "Name:\t%s\n", n.Name)
	fmt.Fprintf(tw, "Roles:\t%s\n", nodeRoles(n))
	fmt.Fprintf(tw, "Labels:\t%s\n", kv(n.Labels))
	fmt.Fprintf(tw, "Annotations:\t%s\n", kv(n.Annotations))
	fmt.Fprintf(tw, "CreationTimestamp:\t%s\n", n.CreationTimestamp.Time.Format(time.RFC1123Z))
	fmt.Fprintf(tw, "Unschedulable:\t%v\n", n.Spec.Unschedulable)
	fmt.Fprintf(tw, "Status:\t%s\n", nodeStatus(n))
	fmt.Fprintln(tw, "Addresses:")
	for _, a := range n.Status.Addresses {
		fmt.Fprintf(tw, "  %s:\t%s\n", a.Type, a.Address)
	}
	fmt.Fprintf(tw, "PodCIDR:\t%s\n", orNone(n.Spec.PodCIDR))
	fmt.Fprintf(tw, "PodCIDRs:\t%s\n", orNone(strings.Join(n.Spec.PodCIDRs, ",")))
	tw.Flush()
	fmt.Fprintln(w, "Conditions:")
	tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  Type\tStatus\tLastHeartbeatTime\tLastTransitionTime\tReason\tMessage")
	fmt.Fprintln(tw, "  ----\t------\t-----------------\t------------------\t------\t-------")
	for _, c := range n.Status.Conditions {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", c.Type, c.Status, c.LastHeartbeatTime.Time.Format(time.RFC1123Z), c.LastTransitionTime.Time.Format(time.RFC1123Z), c.Reason, c.Message)
	}
	tw.Flush()
	fmt.Fprintf(w, "Pods:\t(%d in total)\n", len(pods))
	if len(pods) == 0 {
		return
	}
	tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  Namespace\tName\tStatus\tIP\tAge")
	fmt.Fprintln(tw, "  ---------\t----\t------\t--\t---")
	sort.Slice(pods, func(i, j int) bool {
		if pods[i].Namespace != pods[j].Namespace {
			return pods[i].Namespace < pods[j].Namespace
		}
		return pods[i].Name < pods[j].Name
	})
	for _, p := range pods {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", p.Namespace, p.Name, podStatus(p), orNone(p.Status.PodIP), age(p.CreationTimestamp.Time))
	}
	tw.Flush()
}

func podKindOf() *api.Kind {
	k, _ := api.KindOf(&corev1.Pod{})
	return k
}
