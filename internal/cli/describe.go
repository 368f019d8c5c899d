package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func newDescribe(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "describe (RESOURCE NAME | TYPE/NAME)",
		Short: "Show one object in detail",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			k, names, err := resourceArgs(args)
			if err != nil {
				return err
			}
			if len(names) != 1 {
				return fmt.Errorf("describe takes one object, got %d", len(names))
			}
			ctx := cmd.Context()
			s, done, err := g.store(ctx)
			if err != nil {
				return err
			}
			defer done()
			o, err := s.Get(ctx, k, g.namespace, names[0])
			if err != nil {
				return friendly(err)
			}
			if d := describers[k.GVK.Kind]; d != nil {
				return d(ctx, s, o, g.out)
			}
			tw := tabwriter.NewWriter(g.out, 0, 8, 2, ' ', 0)
			fmt.Fprintf(tw, "Name:\t%s\n", o.GetName())
			if k.Namespaced {
				fmt.Fprintf(tw, "Namespace:\t%s\n", o.GetNamespace())
			}
			fmt.Fprintf(tw, "Labels:\t%s\n", kv(o.GetLabels()))
			fmt.Fprintf(tw, "Annotations:\t%s\n", annotations(o.GetAnnotations()))
			if ns, ok := o.(*corev1.Namespace); ok {
				fmt.Fprintf(tw, "Status:\t%s\n", ns.Status.Phase)
			}
			return tw.Flush()
		},
	}
}

// describer prints one object of a kind in detail, reading what else it
// shows (a node's pods, a service's endpoints) from the store.
type describer func(ctx context.Context, s *store.Store, o api.Object, w io.Writer) error

// describers are the kinds with their own `describe`, by kind; the others
// get name, labels and annotations.
var describers = map[string]describer{
	"Pod": func(_ context.Context, _ *store.Store, o api.Object, w io.Writer) error {
		describePod(w, o.(*corev1.Pod))
		return nil
	},
	"Node": func(ctx context.Context, s *store.Store, o api.Object, w io.Writer) error {
		v := o.(*corev1.Node)
		all, _, err := s.List(ctx, podKindOf(), "")
		if err != nil {
			return err
		}
		var pods []*corev1.Pod
		for _, o := range all {
			if p := o.(*corev1.Pod); p.Spec.NodeName == v.Name {
				pods = append(pods, p)
			}
		}
		describeNode(w, v, pods)
		return nil
	},
	"Service":       describeService,
	"Deployment":    describeDeployment,
	"ReplicaSet":    describeReplicaSet,
	"EndpointSlice": describeEndpointSlice,
}

func kv(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, "\n\t")
}

func describePod(w io.Writer, p *corev1.Pod) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintf(tw, "Name:\t%s\n", p.Name)
	fmt.Fprintf(tw, "Namespace:\t%s\n", p.Namespace)
	fmt.Fprintf(tw, "UID:\t%s\n", p.UID)
	node := orNone(p.Spec.NodeName)
	if p.Status.HostIP != "" {
		node += "/" + p.Status.HostIP
	}
	fmt.Fprintf(tw, "Node:\t%s\n", node)
	if p.Status.StartTime != nil {
		fmt.Fprintf(tw, "Start Time:\t%s\n", p.Status.StartTime.Time.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
	}
	fmt.Fprintf(tw, "Labels:\t%s\n", kv(p.Labels))
	fmt.Fprintf(tw, "Annotations:\t%s\n", annotations(p.Annotations))
	fmt.Fprintf(tw, "Status:\t%s\n", podStatus(p))
	if p.Status.Message != "" {
		fmt.Fprintf(tw, "Message:\t%s\n", p.Status.Message)
	}
	fmt.Fprintf(tw, "Network:\t%s\n", api.NetworkMode(p))
	fmt.Fprintf(tw, "IP:\t%s\n", p.Status.PodIP)
	fmt.Fprintln(tw, "IPs:")
	for _, ip := range p.Status.PodIPs {
		fmt.Fprintf(tw, "  IP:\t%s\n", ip.IP)
	}
	if ref := metav1.GetControllerOf(p); ref != nil {
		fmt.Fprintf(tw, "Controlled By:\t%s/%s\n", ref.Kind, ref.Name)
	}
	fmt.Fprintln(tw, "Containers:")
	statuses := map[string]corev1.ContainerStatus{}
	for _, cs := range p.Status.ContainerStatuses {
		statuses[cs.Name] = cs
	}
	for _, c := range p.Spec.Containers {
		fmt.Fprintf(tw, "  %s:\n", c.Name)
		fmt.Fprintf(tw, "    Command:\t%s\n", strings.Join(c.Command, " "))
		if len(c.Args) > 0 {
			fmt.Fprintf(tw, "    Args:\t%s\n", strings.Join(c.Args, " "))
		}
		for _, port := range c.Ports {
			if port.HostPort != 0 {
				fmt.Fprintf(tw, "    Port:\t%d/%s (host port %d)\n", port.ContainerPort, port.Protocol, port.HostPort)
			} else {
				fmt.Fprintf(tw, "    Port:\t%d/%s\n", port.ContainerPort, port.Protocol)
			}
		}
		cs, ok := statuses[c.Name]
		switch {
		case !ok:
			fmt.Fprintf(tw, "    State:\tWaiting\n")
		case cs.State.Running != nil:
			fmt.Fprintf(tw, "    State:\tRunning\n      Started:\t%s\n", cs.State.Running.StartedAt.Time.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
		case cs.State.Terminated != nil:
			fmt.Fprintf(tw, "    State:\tTerminated\n      Reason:\t%s\n      Exit Code:\t%d\n", cs.State.Terminated.Reason, cs.State.Terminated.ExitCode)
		case cs.State.Waiting != nil:
			fmt.Fprintf(tw, "    State:\tWaiting\n      Reason:\t%s\n", cs.State.Waiting.Reason)
		}
		if ok {
			fmt.Fprintf(tw, "    Ready:\t%v\n    Restart Count:\t%d\n", cs.Ready, cs.RestartCount)
		}
		if len(c.Env) > 0 {
			fmt.Fprintln(tw, "    Environment:")
			for _, e := range c.Env {
				fmt.Fprintf(tw, "      %s:\t%s\n", e.Name, e.Value)
			}
		}
	}
	if len(p.Status.Conditions) > 0 {
		fmt.Fprintln(tw, "Conditions:\n  Type\tStatus")
		for _, c := range p.Status.Conditions {
			if c.Reason != "" || c.Message != "" {
				fmt.Fprintf(tw, "  %s\t%s\t%s: %s\n", c.Type, c.Status, c.Reason, c.Message)
			} else {
				fmt.Fprintf(tw, "  %s\t%s\n", c.Type, c.Status)
			}
		}
	}
}
