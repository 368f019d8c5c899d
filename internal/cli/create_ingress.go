package cli

import (
	"crypto/tls"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ruleRE is kubectl's --rule syntax: host/path=svc:port[,tls[=secret]].
// The host may be empty (any host); the path starts with "/" and ends
// with "*" for pathType Prefix (else Exact).
var ruleRE = regexp.MustCompile(`^(?P<host>[\w*.-]*)(?P<path>/.*)=(?P<svc>[\w-]+):(?P<port>[\w-]+)(?:,(?P<tls>tls)=?(?P<secret>[\w-]+)?)?$`)

// ingressRule is one parsed --rule.
type ingressRule struct {
	host   string
	path   networkingv1.HTTPIngressPath
	tls    bool
	secret string
}

// parseIngressRule reads one --rule of `create ingress`, as kubectl does.
func parseIngressRule(rule string) (ingressRule, error) {
	m := ruleRE.FindStringSubmatch(rule)
	if m == nil {
		return ingressRule{}, fmt.Errorf("rule %s is invalid and should be in format host/path=svcname:svcport[,tls[=secret]]", rule)
	}
	get := func(name string) string { return m[ruleRE.SubexpIndex(name)] }
	path, pt := get("path"), networkingv1.PathTypeExact
	if p, ok := strings.CutSuffix(path, "*"); ok {
		path, pt = p, networkingv1.PathTypePrefix
	}
	return ingressRule{
		host: get("host"),
		path: networkingv1.HTTPIngressPath{Path: path, PathType: &pt, Backend: serviceBackend(get("svc"), get("port"))},
		tls:  get("tls") != "", secret: get("secret"),
	}, nil
}

// serviceBackend is a Service backend on a port given by number or name.
func serviceBackend(name, port string) networkingv1.IngressBackend {
	sb := &networkingv1.IngressServiceBackend{Name: name}
	if p := intstr.Parse(port); p.Type == intstr.Int {
		sb.Port.Number = p.IntVal
	} else {
		sb.Port.Name = p.StrVal
	}
	return networkingv1.IngressBackend{Service: sb}
}

// buildIngress is what `create ingress` sends, as kubectl builds it: the
// rules of one host merge into one rule (in order of first appearance);
// a rule with ",tls" puts its host in the TLS section of its secret (one
// section per secret; ",tls" alone means no secret: the proxy's default
// certificate), each host only once.
func buildIngress(name, ns, class, defaultBackend string, rules, annots []string) (*networkingv1.Ingress, error) {
	if defaultBackend == "" && len(rules) == 0 {
		return nil, fmt.Errorf("not enough information provided: every ingress has to either specify a default-backend (which catches all traffic) or a list of rules (which catch specific paths)")
	}
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	for _, a := range annots {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return nil, fmt.Errorf("annotation %s is invalid and should be in format key=[value]", a)
		}
		if ing.Annotations == nil {
			ing.Annotations = map[string]string{}
		}
		ing.Annotations[k] = v
	}
	if class != "" {
		ing.Spec.IngressClassName = &class
	}
	if defaultBackend != "" {
		svc, port, ok := strings.Cut(defaultBackend, ":")
		if !ok || strings.Contains(port, ":") {
			return nil, fmt.Errorf("default-backend should be in format servicename:serviceport")
		}
		b := serviceBackend(svc, port)
		ing.Spec.DefaultBackend = &b
	}
	tlsHosts := map[string]bool{}
	for _, r := range rules {
		ir, err := parseIngressRule(r)
		if err != nil {
			return nil, err
		}
		found := false
		for i := range ing.Spec.Rules {
			if ing.Spec.Rules[i].Host == ir.host {
				ing.Spec.Rules[i].HTTP.Paths = append(ing.Spec.Rules[i].HTTP.Paths, ir.path)
				found = true
				break
			}
		}
		if !found {
			ing.Spec.Rules = append(ing.Spec.Rules, networkingv1.IngressRule{
				Host:             ir.host,
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{ir.path}}},
			})
		}
		if !ir.tls || tlsHosts[ir.host] {
			continue
		}
		tlsHosts[ir.host] = true
		idx := -1
		for i, t := range ing.Spec.TLS {
			if t.SecretName == ir.secret {
				idx = i
				break
			}
		}
		switch {
		case idx >= 0:
			ing.Spec.TLS[idx].Hosts = append(ing.Spec.TLS[idx].Hosts, ir.host)
		case ir.host != "" || ir.secret != "":
			t := networkingv1.IngressTLS{SecretName: ir.secret}
			if ir.host != "" {
				t.Hosts = []string{ir.host}
			}
			ing.Spec.TLS = append(ing.Spec.TLS, t)
		}
	}
	return ing, nil
}

func newCreateIngress(g *globals) *cobra.Command {
	var rules, annots []string
	var class, defaultBackend, output, dryRunFlag string
	cmd := &cobra.Command{
		Use:     "ingress NAME --rule=host/path=service:port[,tls[=secret]]",
		Aliases: []string{"ing"},
		Short:   "Create an ingress: rules host/path=svc:port (path ending in * is Prefix, else Exact), optional TLS",
		Example: `  # foo.com/bar to svc1:8080, TLS with the secret my-cert
  podnet create ingress simple --rule="foo.com/bar=svc1:8080,tls=my-cert"

  # any host, /path (Exact) to svc:port
  podnet create ingress catch-all --rule="/path=svc:port"

  # two hosts, pathType Prefix, a default backend
  podnet create ingress ingress1 --default-backend=defaultsvc:http \
    --rule="foo.com/path*=svc:8080" --rule="bar.com/admin*=svc2:http"

  # TLS with the proxy's default certificate, and an annotation
  podnet create ingress ingtls --rule="foo.com/=svc:https,tls" \
    --annotation nginx.ingress.kubernetes.io/ssl-redirect=false`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ing, err := buildIngress(args[0], g.namespace, class, defaultBackend, rules, annots)
			if err != nil {
				return err
			}
			return g.writeNew(cmd, ing, "created", output, dryRunFlag)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&rules, "rule", nil, "a rule host/path=service:port[,tls[=secret]]: a path ending in * is pathType Prefix, else Exact; an empty host matches any host; repeatable")
	f.StringVar(&class, "class", "", "the ingress class (default: the default class, podnet)")
	f.StringVar(&defaultBackend, "default-backend", "", "the backend of requests no rule matches: service:port")
	f.StringArrayVar(&annots, "annotation", nil, "an annotation key=value; repeatable")
	f.StringVarP(&output, "output", "o", "", "print the object: yaml, json or name")
	addDryRunFlag(cmd, &dryRunFlag)
	return cmd
}

func newCreateSecret(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secret tls NAME --cert=FILE --key=FILE",
		Short: "Create a secret: tls (a certificate and its key, for Ingress TLS)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fmt.Errorf("usage: podnet create secret tls NAME --cert=FILE --key=FILE")
		},
	}
	cmd.AddCommand(newCreateSecretTLS(g))
	return cmd
}

// buildTLSSecret is what `create secret tls` sends: type kubernetes.io/tls
// with tls.crt and tls.key read from the files, refused unless they are a
// key pair (as kubectl checks it).
func buildTLSSecret(name, ns, certFile, keyFile string) (*corev1.Secret, error) {
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("key and cert must be specified: --cert=FILE --key=FILE")
	}
	crt, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("--cert: %w", err)
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	if _, err := tls.X509KeyPair(crt, key); err != nil {
		return nil, fmt.Errorf("failed to load key pair (--cert %s, --key %s): %w", certFile, keyFile, err)
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: crt, corev1.TLSPrivateKeyKey: key},
	}, nil
}

func newCreateSecretTLS(g *globals) *cobra.Command {
	var certFile, keyFile, output, dryRunFlag string
	cmd := &cobra.Command{
		Use:   "tls NAME --cert=FILE --key=FILE",
		Short: "Create a kubernetes.io/tls secret from a PEM certificate (chain) and its private key",
		Example: `  podnet create secret tls web-tls --cert=web.crt --key=web.key
  # a manifest to keep (the only way to print the values: get and describe never do)
  podnet create secret tls web-tls --cert=web.crt --key=web.key --dry-run=client -o yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := buildTLSSecret(args[0], g.namespace, certFile, keyFile)
			if err != nil {
				return err
			}
			return g.writeNew(cmd, s, "created", output, dryRunFlag)
		},
	}
	f := cmd.Flags()
	f.StringVar(&certFile, "cert", "", "PEM certificate file (the leaf first, then intermediates)")
	f.StringVar(&keyFile, "key", "", "PEM private key file")
	f.StringVarP(&output, "output", "o", "", "print the object: yaml, json or name")
	addDryRunFlag(cmd, &dryRunFlag)
	return cmd
}
