package cli

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
)

func newCreate(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "create (deployment|service|namespace|ingress|secret) NAME ...",
		Short: "Create an object from the command line: a deployment, a service, a namespace, an ingress, a TLS secret",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fmt.Errorf("usage: podnet create deployment|service|namespace|ingress|secret NAME ... (see podnet create --help)")
		},
	}
	cmd.AddCommand(newCreateDeployment(g), newCreateService(g), newCreateNamespace(g), newCreateIngress(g), newCreateSecret(g))
	return cmd
}

// writeNew stores o (after the same defaulting and validation as the
// store, so a bad object is refused before anything is sent) and reports
// it as kubectl does. With --dry-run nothing is stored: client prints o
// as built, server prints it defaulted.
func (g *globals) writeNew(cmd *cobra.Command, o api.Object, verb, output, dryRunFlag string) error {
	return g.writeNewWith(cmd, nil, o, verb, output, dryRunFlag)
}

// writeNewWith is writeNew on an open store (nil: connect when needed).
func (g *globals) writeNewWith(cmd *cobra.Command, s *store.Store, o api.Object, verb, output, dryRunFlag string) error {
	dr, err := parseDryRun(dryRunFlag)
	if err != nil {
		return err
	}
	if err := checkObjectOutput(output); err != nil {
		return err
	}
	prepared := o.DeepCopyObject().(api.Object)
	if err := api.Prepare(prepared); err != nil {
		return err
	}
	if k, err := api.KindOf(prepared); err == nil {
		g.printWarnings(k, prepared)
	}
	switch dr {
	case dryRunClient:
		return printWritten(g.out, o, verb, output, dr)
	case dryRunServer:
		return printWritten(g.out, prepared, verb, output, dr)
	}
	ctx := cmd.Context()
	if s == nil {
		var done func()
		if s, done, err = g.store(ctx); err != nil {
			return err
		}
		defer done()
	}
	if err := s.Create(ctx, o); err != nil {
		return friendly(err)
	}
	return printWritten(g.out, o, verb, output, dr)
}

func newCreateDeployment(g *globals) *cobra.Command {
	var replicas int32
	var port int32
	var output, dryRunFlag, image string
	cmd := &cobra.Command{
		Use:     "deployment NAME [--replicas N] [--port P] -- CMD [ARGS...]",
		Aliases: []string{"deploy"},
		Short:   "Create a deployment whose pods run CMD (labels app=NAME)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if image != "" {
				return fmt.Errorf("--image %q: podnet pods run commands on the node, not images: give the command after --, e.g. podnet create deployment %s -- podnet echo-server --listen :8080", image, args[0])
			}
			if cmd.ArgsLenAtDash() != 1 || len(args) < 2 {
				return fmt.Errorf("usage: podnet create deployment NAME [--replicas N] [--port P] -- CMD [ARGS...]")
			}
			if cmd.Flags().Changed("port") && (port < 1 || port > 65535) {
				return fmt.Errorf("--port %d: want a port number 1-65535", port)
			}
			if replicas < 0 {
				return fmt.Errorf("--replicas %d: must be greater than or equal to 0", replicas)
			}
			d, err := buildDeployment(args[0], g.namespace, replicas, port, args[1:])
			if err != nil {
				return err
			}
			return g.writeNew(cmd, d, "created", output, dryRunFlag)
		},
	}
	f := cmd.Flags()
	f.Int32Var(&replicas, "replicas", 1, "number of replicas")
	f.Int32Var(&port, "port", 0, "the containerPort the pods declare")
	f.StringVar(&image, "image", "", "not supported: podnet runs the command given after --")
	f.MarkHidden("image")
	f.StringVarP(&output, "output", "o", "", "print the object: yaml, json or name")
	addDryRunFlag(cmd, &dryRunFlag)
	return cmd
}

// buildDeployment is what `create deployment` sends: labels and selector
// app=NAME, one container named NAME running command (built by the same
// code as `podnet run`'s pod).
func buildDeployment(name, ns string, replicas, port int32, command []string) (*appsv1.Deployment, error) {
	var publish []string
	if port != 0 {
		publish = []string{strconv.Itoa(int(port))}
	}
	p, err := buildPod(name, ns, "", command, publish, nil, nil, "bridge", string(corev1.RestartPolicyAlways), "")
	if err != nil {
		return nil, err
	}
	lbl := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: lbl},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}, Annotations: p.Annotations},
				Spec:       p.Spec,
			},
		},
	}, nil
}

func newCreateNamespace(g *globals) *cobra.Command {
	var output, dryRunFlag string
	cmd := &cobra.Command{
		Use:     "namespace NAME",
		Aliases: []string{"ns"},
		Short:   "Create a namespace",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.writeNew(cmd, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: args[0]}}, "created", output, dryRunFlag)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "print the object: yaml, json or name")
	addDryRunFlag(cmd, &dryRunFlag)
	return cmd
}

func newCreateService(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "service (clusterip|nodeport|loadbalancer|externalname) NAME --tcp=PORT[:TARGETPORT]",
		Aliases: []string{"svc"},
		Short:   "Create a service with selector app=NAME",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fmt.Errorf("usage: podnet create service clusterip|nodeport|loadbalancer NAME --tcp=PORT[:TARGETPORT]")
		},
	}
	for _, t := range []corev1.ServiceType{corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName} {
		cmd.AddCommand(newCreateServiceOf(g, t))
	}
	return cmd
}

func newCreateServiceOf(g *globals, typ corev1.ServiceType) *cobra.Command {
	var tcp []string
	var clusterIP, externalName, output, dryRunFlag string
	var nodePort int32
	cmd := &cobra.Command{
		Use:   strings.ToLower(string(typ)) + " NAME --tcp=PORT[:TARGETPORT]",
		Short: "Create a " + string(typ) + " service",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			external := typ == corev1.ServiceTypeExternalName
			if external && externalName == "" {
				return fmt.Errorf("--external-name is required, e.g. --external-name db.example.com")
			}
			if len(tcp) == 0 && clusterIP != corev1.ClusterIPNone && !external {
				return fmt.Errorf("at least one --tcp=PORT[:TARGETPORT] is required")
			}
			if nodePort != 0 && (nodePort < 1 || nodePort > 65535) {
				return fmt.Errorf("--node-port %d: want a port number 1-65535", nodePort)
			}
			name := args[0]
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: g.namespace, Labels: map[string]string{"app": name}},
				Spec: corev1.ServiceSpec{
					Type:      typ,
					Selector:  map[string]string{"app": name},
					ClusterIP: clusterIP,
				},
			}
			if external {
				svc.Spec.Selector, svc.Spec.ExternalName = nil, externalName
			}
			for _, spec := range tcp {
				p, err := parseTCPSpec(spec)
				if err != nil {
					return err
				}
				p.NodePort = nodePort
				svc.Spec.Ports = append(svc.Spec.Ports, p)
			}
			return g.writeNew(cmd, svc, "created", output, dryRunFlag)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&tcp, "tcp", nil, "a port: PORT or PORT:TARGETPORT (TARGETPORT a number or a container port's name); repeatable")
	if typ == corev1.ServiceTypeClusterIP {
		f.StringVar(&clusterIP, "clusterip", "", `the cluster IP to ask for ("None" for a headless service)`)
	}
	if typ == corev1.ServiceTypeNodePort {
		f.Int32Var(&nodePort, "node-port", 0, "the nodePort to ask for (default: allocated)")
	}
	if typ == corev1.ServiceTypeExternalName {
		f.StringVar(&externalName, "external-name", "", "the DNS name the service is an alias of")
	}
	f.StringVarP(&output, "output", "o", "", "print the object: yaml, json or name")
	addDryRunFlag(cmd, &dryRunFlag)
	return cmd
}

// parseTCPSpec reads one --tcp value of `create service`: PORT or
// PORT:TARGETPORT, where TARGETPORT is a port number or a port name. The
// port's name is the spec with ":" turned into "-", as kubectl names it.
func parseTCPSpec(spec string) (corev1.ServicePort, error) {
	var sp corev1.ServicePort
	portStr, targetStr, hasTarget := strings.Cut(spec, ":")
	if !hasTarget {
		targetStr = portStr
	}
	port, err := parsePortNumber(portStr)
	if err != nil {
		return sp, fmt.Errorf("--tcp %q: port: %w", spec, err)
	}
	target, err := parseTargetPort(targetStr)
	if err != nil {
		return sp, fmt.Errorf("--tcp %q: target port: %w", spec, err)
	}
	sp.Name = strings.ReplaceAll(spec, ":", "-")
	sp.Port = port
	sp.TargetPort = target
	sp.Protocol = corev1.ProtocolTCP
	return sp, nil
}

// parsePortNumber reads a port number 1-65535.
func parsePortNumber(s string) (int32, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number 1-65535", s)
	}
	return int32(n), nil
}

// parseTargetPort reads a Service targetPort: a number 1-65535 or a
// container port's name (an IANA service name).
func parseTargetPort(s string) (intstr.IntOrString, error) {
	if s == "" {
		return intstr.IntOrString{}, fmt.Errorf("empty: want a port number 1-65535 or a port name")
	}
	if s[0] >= '0' && s[0] <= '9' || s[0] == '-' || s[0] == '+' {
		n, err := parsePortNumber(s)
		if err != nil {
			return intstr.IntOrString{}, err
		}
		return intstr.FromInt32(n), nil
	}
	if msgs := utilvalidation.IsValidPortName(s); len(msgs) > 0 {
		return intstr.IntOrString{}, fmt.Errorf("%q is not a port number or a valid port name: %s", s, strings.Join(msgs, "; "))
	}
	return intstr.FromString(s), nil
}
