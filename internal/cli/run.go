package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func newRun(g *globals) *cobra.Command {
	var publish, labelArgs, envArgs []string
	var network, restart, node, container string
	var wait bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "run NAME [-p [HOSTIP:]HOSTPORT:PORT[/udp]] [--network bridge|host|none] [-l k=v] -- CMD [ARGS...]",
		Short: "Create a pod that runs one command",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return fmt.Errorf("usage: podnet run NAME [flags] -- CMD [ARGS...]")
			}
			p, err := buildPod(args[0], g.namespace, container, args[1:], publish, labelArgs, envArgs, network, restart, node)
			if err != nil {
				return err
			}
			if err := api.Prepare(p); err != nil {
				return err
			}
			ctx := cmd.Context()
			s, done, err := g.store(ctx)
			if err != nil {
				return err
			}
			defer done()
			if err := s.Create(ctx, p); err != nil {
				return friendly(err)
			}
			fmt.Fprintf(g.out, "pod/%s created\n", p.Name)
			if !wait {
				return nil
			}
			return waitRunning(ctx, g, s, p, timeout)
		},
	}
	f := cmd.Flags()
	f.StringSliceVarP(&publish, "publish", "p", nil, "publish a port: [HOSTIP:]HOSTPORT:PORT[/tcp|/udp], or PORT to declare it")
	f.StringSliceVarP(&labelArgs, "labels", "l", nil, "labels k=v")
	f.StringSliceVarP(&envArgs, "env", "e", nil, "environment K=V")
	f.StringVar(&network, "network", "bridge", "network mode: bridge, host or none")
	f.StringVar(&restart, "restart", "Always", "restart policy: Always, OnFailure, Never")
	f.StringVar(&node, "node", "", "bind the pod to this node (default: any node)")
	f.StringVar(&container, "container-name", "", "container name (default: the pod name)")
	f.BoolVar(&wait, "wait", false, "wait until the pod runs and print its IP")
	f.DurationVar(&timeout, "timeout", 60*time.Second, "how long --wait waits")
	return cmd
}

func buildPod(name, ns, container string, command, publish, labelArgs, envArgs []string, network, restart, node string) (*corev1.Pod, error) {
	if container == "" {
		container = name
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"run": name}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicy(restart),
			NodeName:      node,
			Containers:    []corev1.Container{{Name: container, Command: command}},
		},
	}
	for _, l := range labelArgs {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return nil, fmt.Errorf("-l %q: want key=value", l)
		}
		p.Labels[k] = v
	}
	for _, e := range envArgs {
		k, v, ok := strings.Cut(e, "=")
		if !ok {
			return nil, fmt.Errorf("--env %q: want KEY=VALUE", e)
		}
		p.Spec.Containers[0].Env = append(p.Spec.Containers[0].Env, corev1.EnvVar{Name: k, Value: v})
	}
	switch network {
	case "bridge", "":
	case "host":
		p.Spec.HostNetwork = true
	case "none":
		p.Annotations = map[string]string{api.AnnotationNetwork: api.NetworkNone}
	default:
		return nil, fmt.Errorf("--network %q: want bridge, host or none", network)
	}
	for _, spec := range publish {
		port, err := parsePublish(spec)
		if err != nil {
			return nil, err
		}
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, port)
	}
	return p, nil
}

// parsePublish reads Docker's -p syntax: [HOSTIP:]HOSTPORT:PORT[/PROTO] or PORT[/PROTO].
func parsePublish(spec string) (corev1.ContainerPort, error) {
	var cp corev1.ContainerPort
	rest, proto, hasProto := strings.Cut(spec, "/")
	cp.Protocol = corev1.ProtocolTCP
	if hasProto {
		switch strings.ToLower(proto) {
		case "tcp":
		case "udp":
			cp.Protocol = corev1.ProtocolUDP
		default:
			return cp, fmt.Errorf("-p %q: protocol %q: want tcp or udp", spec, proto)
		}
	}
	parts := strings.Split(rest, ":")
	num := func(s, what string) (int32, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 65535 {
			return 0, fmt.Errorf("-p %q: %s %q: want a port number 1-65535", spec, what, s)
		}
		return int32(n), nil
	}
	var err error
	switch len(parts) {
	case 1:
		cp.ContainerPort, err = num(parts[0], "container port")
	case 2:
		if cp.HostPort, err = num(parts[0], "host port"); err == nil {
			cp.ContainerPort, err = num(parts[1], "container port")
		}
	case 3:
		cp.HostIP = parts[0]
		if cp.HostPort, err = num(parts[1], "host port"); err == nil {
			cp.ContainerPort, err = num(parts[2], "container port")
		}
	default:
		err = fmt.Errorf("-p %q: want [HOSTIP:]HOSTPORT:PORT[/tcp|udp]", spec)
	}
	return cp, err
}

// waitRunning watches the pod until it runs (or finishes) and prints its IP.
func waitRunning(ctx context.Context, g *globals, s *store.Store, p *corev1.Pod, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	k, _ := api.KindOf(p)
	rev, _ := strconv.ParseInt(p.ResourceVersion, 10, 64)
	cur := p
	report := func(cur *corev1.Pod) bool {
		switch cur.Status.Phase {
		case corev1.PodRunning, corev1.PodSucceeded, corev1.PodFailed:
			fmt.Fprintf(g.out, "pod/%s %s ip=%s node=%s\n", cur.Name, cur.Status.Phase, orNone(cur.Status.PodIP), cur.Spec.NodeName)
			return true
		}
		return false
	}
	for ev := range s.Watch(ctx, k, p.Namespace, rev) {
		if ev.Err != nil || ev.Object == nil || ev.Object.GetUID() != p.UID {
			continue
		}
		if ev.Type == store.Deleted {
			return fmt.Errorf("pod/%s was deleted", p.Name)
		}
		cur = ev.Object.(*corev1.Pod)
		if report(cur) {
			return nil
		}
	}
	// The watch ended: time out, or a broken watch; look once more.
	if o, err := s.Get(context.Background(), k, p.Namespace, p.Name); err == nil && report(o.(*corev1.Pod)) {
		return nil
	} else if err == nil {
		cur = o.(*corev1.Pod)
	}
	return fmt.Errorf("pod/%s not running after %s: status %s %s", p.Name, timeout, podStatus(cur), cur.Status.Message)
}
