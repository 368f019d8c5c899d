package cli

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/ingress/route"
	"github.com/podnet/podnet/internal/store"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

func init() {
	describers["Ingress"] = describeIngress
	describers["IngressClass"] = describeIngressClass
	describers["Secret"] = describeSecret
}

// describeIngress prints an Ingress as kubectl does: address, class,
// default backend, TLS, and each rule's paths with their backends'
// endpoints (resolved as the proxy resolves them, by route.Build), then
// the problems the ingress-status controller reported in place of events.
func describeIngress(ctx context.Context, s *store.Store, o api.Object, w io.Writer) error {
	ing := o.(*networkingv1.Ingress)
	backends, err := ingressBackends(ctx, s, ing)
	if err != nil {
		return err
	}
	describeIngressTo(w, ing, backends)
	return nil
}

// ingressBackends resolves the Ingress's Service backends against the
// store's Services and EndpointSlices in its namespace, keyed by
// backendKey. The Ingress is compiled as if podnet served it, so its
// endpoints show whatever its class.
func ingressBackends(ctx context.Context, s *store.Store, ing *networkingv1.Ingress) (map[string]*route.Backend, error) {
	in := route.Input{}
	ns := ing.Namespace
	svcKind, _ := api.KindOf(&corev1.Service{})
	sliceKind, _ := api.KindOf(&discoveryv1.EndpointSlice{})
	svcs, _, err := s.List(ctx, svcKind, ns)
	if err != nil {
		return nil, err
	}
	for _, o := range svcs {
		in.Services = append(in.Services, o.(*corev1.Service))
	}
	slices, _, err := s.List(ctx, sliceKind, ns)
	if err != nil {
		return nil, err
	}
	for _, o := range slices {
		in.EndpointSlices = append(in.EndpointSlices, o.(*discoveryv1.EndpointSlice))
	}
	// Served as a member of a class of ours, whatever it names.
	const describeClass = "podnet-describe"
	c := ing.DeepCopy()
	cls := describeClass
	c.Spec.IngressClassName = &cls
	delete(c.Annotations, api.AnnotationIngressClass)
	ic := &networkingv1.IngressClass{Spec: networkingv1.IngressClassSpec{Controller: route.ControllerName}}
	ic.Name = describeClass
	in.Ingresses = []*networkingv1.Ingress{c}
	in.IngressClasses = []*networkingv1.IngressClass{ic}
	t, _ := route.Build(in)
	out := map[string]*route.Backend{}
	add := func(b *route.Backend) {
		if b != nil && b.Service != "" {
			out[b.Service+":"+b.Port] = b
		}
	}
	add(t.DefaultBackend())
	for _, r := range t.Routes() {
		add(r.Backend)
		add(r.DefaultBackend)
	}
	return out, nil
}

// backendString is kubectl's name of a backend: "svc:80", "svc:http", or
// the resource's APIGroup, Kind and Name.
func backendString(b *networkingv1.IngressBackend) string {
	switch {
	case b == nil:
		return ""
	case b.Service != nil:
		port := b.Service.Port.Name
		if port == "" {
			port = strconv.Itoa(int(b.Service.Port.Number))
		}
		return b.Service.Name + ":" + port
	case b.Resource != nil:
		group := api.None
		if b.Resource.APIGroup != nil {
			group = *b.Resource.APIGroup
		}
		return fmt.Sprintf("APIGroup: %s, Kind: %s, Name: %s", group, b.Resource.Kind, b.Resource.Name)
	}
	return ""
}

// backendEndpoints is what kubectl prints in parentheses after a backend:
// its endpoints (the first three, then a count), "<none>", or the error.
func backendEndpoints(b *networkingv1.IngressBackend, backends map[string]*route.Backend) string {
	if b == nil || b.Service == nil {
		return ""
	}
	rb := backends[backendString(b)]
	switch {
	case rb == nil:
		return api.None
	case rb.Err != "":
		return "<error: " + rb.Err + ">"
	case len(rb.Endpoints) == 0:
		return api.None
	}
	var addrs []string
	for i, e := range rb.Endpoints {
		if i == 3 {
			return strings.Join(addrs, ",") + fmt.Sprintf(" + %d more...", len(rb.Endpoints)-3)
		}
		addrs = append(addrs, e.Addr)
	}
	return strings.Join(addrs, ",")
}

func describeIngressTo(w io.Writer, ing *networkingv1.Ingress, backends map[string]*route.Backend) {
	pw := newPrefixWriter(w)
	defer pw.Flush()
	pw.line(0, "Name:\t%s", ing.Name)
	pw.line(0, "Labels:\t%s", kv(ing.Labels))
	pw.line(0, "Namespace:\t%s", ing.Namespace)
	pw.line(0, "Address:\t%s", api.IngressAddress(ing))
	pw.line(0, "Ingress Class:\t%s", orNone(api.IngressClassOf(ing)))
	def := ing.Spec.DefaultBackend
	if def != nil {
		pw.line(0, "Default backend:\t%s (%s)", backendString(def), backendEndpoints(def, backends))
	} else {
		pw.line(0, "Default backend:\t<default>")
	}
	if len(ing.Spec.TLS) > 0 {
		pw.line(0, "TLS:")
		for _, t := range ing.Spec.TLS {
			if t.SecretName == "" {
				pw.line(1, "SNI routes %s", strings.Join(t.Hosts, ","))
			} else {
				pw.line(1, "%s terminates %s", t.SecretName, strings.Join(t.Hosts, ","))
			}
		}
	}
	pw.line(0, "Rules:")
	pw.line(1, "Host\tPath\tBackends")
	pw.line(1, "----\t----\t--------")
	rules := 0
	for _, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		rules++
		host := r.Host
		if host == "" {
			host = "*"
		}
		pw.line(1, "%s\t", host)
		for _, p := range r.HTTP.Paths {
			pw.line(2, "\t%s \t%s (%s)", p.Path, backendString(&p.Backend), backendEndpoints(&p.Backend, backends))
		}
	}
	if rules == 0 && def != nil {
		pw.line(1, "*\t*\t%s (%s)", backendString(def), backendEndpoints(def, backends))
	}
	shown := map[string]string{}
	for k, v := range ing.Annotations {
		if k != api.AnnotationIngressProblems {
			shown[k] = v
		}
	}
	pw.line(0, "Annotations:\t%s", annotations(shown))
	if problems := api.IngressProblems(ing); len(problems) > 0 {
		pw.line(0, "Problems (from the ingress-status controller, annotation %s):", api.AnnotationIngressProblems)
		for _, p := range problems {
			pw.line(1, "%s", p)
		}
	}
	pw.line(0, "Events:\t<none>")
}

// describeIngressClass prints an IngressClass as kubectl does.
func describeIngressClass(_ context.Context, _ *store.Store, o api.Object, w io.Writer) error {
	ic := o.(*networkingv1.IngressClass)
	pw := newPrefixWriter(w)
	pw.line(0, "Name:\t%s", ic.Name)
	pw.line(0, "Labels:\t%s", kv(ic.Labels))
	pw.line(0, "Annotations:\t%s", annotations(ic.Annotations))
	pw.line(0, "Controller:\t%s", ic.Spec.Controller)
	if p := ic.Spec.Parameters; p != nil {
		pw.line(0, "Parameters:")
		if p.APIGroup != nil {
			pw.line(1, "APIGroup:\t%s", *p.APIGroup)
		}
		pw.line(1, "Kind:\t%s", p.Kind)
		pw.line(1, "Name:\t%s", p.Name)
		if p.Namespace != nil {
			pw.line(1, "Namespace:\t%s", *p.Namespace)
		}
		if p.Scope != nil {
			pw.line(1, "Scope:\t%s", *p.Scope)
		}
	}
	pw.line(0, "Events:\t<none>")
	return pw.Flush()
}

// describeSecret prints a Secret as kubectl does, its values only as
// sizes; for a kubernetes.io/tls Secret also what its certificate is for
// (names and validity, which are public).
func describeSecret(_ context.Context, _ *store.Store, o api.Object, w io.Writer) error {
	sec := o.(*corev1.Secret)
	pw := newPrefixWriter(w)
	pw.line(0, "Name:\t%s", sec.Name)
	pw.line(0, "Namespace:\t%s", sec.Namespace)
	pw.line(0, "Labels:\t%s", kv(sec.Labels))
	pw.line(0, "Annotations:\t%s", annotations(sec.Annotations))
	pw.line(0, "")
	pw.line(0, "Type:\t%s", sec.Type)
	pw.line(0, "")
	pw.line(0, "Data")
	pw.line(0, "====")
	keys := make([]string, 0, len(sec.Data))
	for k := range sec.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		pw.line(0, "%s:\t%d bytes", k, len(sec.Data[k]))
	}
	if sec.Type == corev1.SecretTypeTLS {
		if c := firstCertificate(sec.Data[corev1.TLSCertKey]); c != nil {
			pw.line(0, "")
			pw.line(0, "Certificate")
			pw.line(0, "===========")
			pw.line(0, "Subject:\t%s", c.Subject)
			pw.line(0, "DNS Names:\t%s", orNone(strings.Join(c.DNSNames, ", ")))
			pw.line(0, "Issuer:\t%s", c.Issuer)
			pw.line(0, "Not Before:\t%s", c.NotBefore.UTC().Format(time.RFC3339))
			pw.line(0, "Not After:\t%s", c.NotAfter.UTC().Format(time.RFC3339))
		}
		if warns := api.SecretWarnings(sec); len(warns) > 0 {
			pw.line(0, "")
			for _, m := range warns {
				pw.line(0, "Warning: %s", m)
			}
		}
	}
	return pw.Flush()
}

// firstCertificate parses the first CERTIFICATE block of PEM data.
func firstCertificate(data []byte) *x509.Certificate {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil
			}
			return c
		}
	}
}
