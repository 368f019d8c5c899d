package cli

import (
	"fmt"
	"strings"

	"github.com/podnet/podnet/internal/api"
	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type exposeOptions struct {
	port, targetPort, typ, name, protocol, selector, labels string
	clusterIP, sessionAffinity, output, dryRun              string
	externalIPs                                             []string
}

func newExpose(g *globals) *cobra.Command {
	var o exposeOptions
	cmd := &cobra.Command{
		Use:   "expose (deployment|replicaset|pod|service) NAME [--port P] [--target-port T] [--type ClusterIP|NodePort|LoadBalancer] [--name N]",
		Short: "Create a service for a deployment, replicaset, pod or service, selecting its pods",
		RunE: func(cmd *cobra.Command, args []string) error {
			k, names, err := resourceArgs(args)
			if err != nil {
				return err
			}
			if len(names) != 1 {
				return fmt.Errorf("expose takes one object, got %d", len(names))
			}
			switch k.New().(type) {
			case *appsv1.Deployment, *appsv1.ReplicaSet, *corev1.Pod, *corev1.Service:
			default:
				return fmt.Errorf("cannot expose %s: only deployments, replicasets, pods and services can be exposed", k.Resource)
			}
			ctx := cmd.Context()
			s, done, err := g.store(ctx)
			if err != nil {
				return err
			}
			defer done()
			obj, err := s.Get(ctx, k, g.namespace, names[0])
			if err != nil {
				return friendly(err)
			}
			svc, err := exposeService(obj, &o)
			if err != nil {
				return err
			}
			return g.writeNewWith(cmd, s, svc, "exposed", o.output, o.dryRun)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.port, "port", "", "the port the service serves on (default: the object's container ports or service ports)")
	f.StringVar(&o.targetPort, "target-port", "", "the container port (number or name) traffic goes to (default: --port)")
	f.StringVar(&o.typ, "type", "", "service type: ClusterIP (default), NodePort or LoadBalancer")
	f.StringVar(&o.name, "name", "", "the service's name (default: the object's)")
	f.StringVar(&o.protocol, "protocol", "", "TCP (default), UDP or SCTP")
	f.StringVar(&o.selector, "selector", "", "label selector k=v,... for the service (default: the object's selector or labels)")
	f.StringVarP(&o.labels, "labels", "l", "", "labels k=v,... of the service (default: the object's labels)")
	f.StringVar(&o.clusterIP, "cluster-ip", "", `the cluster IP to ask for ("None" for a headless service)`)
	f.StringVar(&o.sessionAffinity, "session-affinity", "", "None (default) or ClientIP")
	f.StringSliceVar(&o.externalIPs, "external-ip", nil, "an external IP the service also answers on")
	f.StringVarP(&o.output, "output", "o", "", "print the object: yaml, json or name")
	addDryRunFlag(cmd, &o.dryRun)
	return cmd
}

// exposeService builds the Service that exposes obj, as kubectl does: the
// selector is the object's (a deployment's or replicaset's matchLabels, a
// pod's labels, a service's selector) unless --selector; the ports are
// --port/--target-port or, without --port, the object's own ports; the
// labels are the object's.
func exposeService(obj api.Object, o *exposeOptions) (*corev1.Service, error) {
	k, err := api.KindOf(obj)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("%s %q", strings.ToLower(k.GVK.Kind), obj.GetName())
	var sel map[string]string
	var ports []corev1.ServicePort
	switch v := obj.(type) {
	case *appsv1.Deployment:
		sel, err = matchLabelsOnly(v.Spec.Selector, what)
		ports = containerPorts(v.Spec.Template.Spec)
	case *appsv1.ReplicaSet:
		sel, err = matchLabelsOnly(v.Spec.Selector, what)
		ports = containerPorts(v.Spec.Template.Spec)
	case *corev1.Pod:
		sel = v.Labels
		ports = containerPorts(v.Spec)
	case *corev1.Service:
		sel = v.Spec.Selector
		for _, p := range v.Spec.Ports {
			ports = append(ports, corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port, TargetPort: p.TargetPort})
		}
	default:
		return nil, fmt.Errorf("cannot expose %s: only deployments, replicasets, pods and services can be exposed", k.Resource)
	}
	if err != nil && o.selector == "" {
		return nil, err
	}
	if o.selector != "" {
		if sel, err = labels.ConvertSelectorToLabelsMap(o.selector); err != nil {
			return nil, fmt.Errorf("--selector %q: %w (a service selects by k=v pairs only)", o.selector, err)
		}
	}
	if len(sel) == 0 {
		return nil, fmt.Errorf("couldn't retrieve selectors via --selector flag or introspection: %s has no labels to select its pods by", what)
	}
	svcLabels := obj.GetLabels()
	if o.labels != "" {
		if svcLabels, err = labels.ConvertSelectorToLabelsMap(o.labels); err != nil {
			return nil, fmt.Errorf("--labels %q: %w", o.labels, err)
		}
	}
	typ := corev1.ServiceType(o.typ)
	switch typ {
	case "", corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer:
	default:
		return nil, fmt.Errorf("--type %q: want ClusterIP, NodePort or LoadBalancer", o.typ)
	}
	proto := corev1.Protocol(o.protocol)
	switch proto {
	case "", corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
	default:
		return nil, fmt.Errorf("--protocol %q: want TCP, UDP or SCTP", o.protocol)
	}
	switch corev1.ServiceAffinity(o.sessionAffinity) {
	case "", corev1.ServiceAffinityNone, corev1.ServiceAffinityClientIP:
	default:
		return nil, fmt.Errorf("--session-affinity %q: want None or ClientIP", o.sessionAffinity)
	}
	if o.port != "" {
		n, err := parsePortNumber(o.port)
		if err != nil {
			return nil, fmt.Errorf("--port: %w", err)
		}
		p := corev1.ServicePort{Port: n, TargetPort: intstr.FromInt32(n), Protocol: corev1.ProtocolTCP}
		if len(ports) == 1 && ports[0].Protocol != "" {
			p.Protocol = ports[0].Protocol
		}
		ports = []corev1.ServicePort{p}
	}
	if len(ports) == 0 {
		return nil, fmt.Errorf("couldn't find port via --port flag or introspection: %s declares no ports", what)
	}
	if o.targetPort != "" {
		t, err := parseTargetPort(o.targetPort)
		if err != nil {
			return nil, fmt.Errorf("--target-port: %w", err)
		}
		for i := range ports {
			ports[i].TargetPort = t
		}
	}
	for i := range ports {
		if proto != "" {
			ports[i].Protocol = proto
		}
		if ports[i].Protocol == "" {
			ports[i].Protocol = corev1.ProtocolTCP
		}
	}
	name := o.name
	if name == "" {
		name = obj.GetName()
	}
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: obj.GetNamespace(), Labels: svcLabels},
		Spec: corev1.ServiceSpec{
			Type:            typ,
			Selector:        sel,
			Ports:           ports,
			ClusterIP:       o.clusterIP,
			SessionAffinity: corev1.ServiceAffinity(o.sessionAffinity),
			ExternalIPs:     o.externalIPs,
		},
	}, nil
}

// matchLabelsOnly is a workload's selector as a Service's: matchLabels
// only, as a Service cannot express matchExpressions.
func matchLabelsOnly(sel *metav1.LabelSelector, what string) (map[string]string, error) {
	if sel == nil {
		return nil, nil
	}
	if len(sel.MatchExpressions) > 0 {
		return nil, fmt.Errorf("couldn't retrieve selectors via --selector flag or introspection: %s selects with matchExpressions, which a service cannot express; give --selector", what)
	}
	return sel.MatchLabels, nil
}

// containerPorts are the ports a pod spec declares, as service ports
// (port and targetPort the containerPort; named port-1, port-2, ... when
// there are several, as kubectl names them).
func containerPorts(spec corev1.PodSpec) []corev1.ServicePort {
	var out []corev1.ServicePort
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			out = append(out, corev1.ServicePort{Port: p.ContainerPort, TargetPort: intstr.FromInt32(p.ContainerPort), Protocol: p.Protocol})
		}
	}
	if len(out) > 1 {
		for i := range out {
			out[i].Name = fmt.Sprintf("port-%d", i+1)
		}
	}
	return out
}
