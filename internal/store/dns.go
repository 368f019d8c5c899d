package store

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/podnet/podnet/internal/api"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// NodeDNSProxyName is the value of api.LabelServiceProxyName on the
// kube-dns Service: the node-local DNS servers answer its cluster IP, the
// service proxy does not.
const NodeDNSProxyName = "podnet-node-dns"

// EnsureClusterDNS creates, when missing, the cluster DNS objects of
// kubeadm: the ConfigMap kube-system/coredns with its default Corefile,
// and the Service kube-system/kube-dns at the service range's tenth
// address (10.96.0.10 in the default range) with ports 53/UDP, 53/TCP and
// 9153/TCP. Existing objects (a user's edited Corefile) are left alone.
func (s *Store) EnsureClusterDNS(ctx context.Context, serviceCIDR string) error {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: api.DNSNamespace, Name: api.DNSConfigMap},
		Data:       map[string]string{api.DNSCorefileKey: api.DefaultCorefile},
	}
	if err := s.Create(ctx, cm); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("ensure configmap %s/%s: %w", api.DNSNamespace, api.DNSConfigMap, err)
	}
	ip, err := DNSServiceIP(serviceCIDR)
	if err != nil {
		return err
	}
	lbl := map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS", api.LabelServiceProxyName: NodeDNSProxyName}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: api.DNSNamespace, Name: api.DNSService, Labels: lbl},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeClusterIP,
			ClusterIP:  ip,
			ClusterIPs: []string{ip},
			Selector:   map[string]string{"k8s-app": "kube-dns"},
			Ports: []corev1.ServicePort{
				{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(53)},
				{Name: "dns-tcp", Protocol: corev1.ProtocolTCP, Port: 53, TargetPort: intstr.FromInt32(53)},
				{Name: "metrics", Protocol: corev1.ProtocolTCP, Port: 9153, TargetPort: intstr.FromInt32(9153)},
			},
		},
	}
	if err := s.Create(ctx, svc); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("ensure service %s/%s: %w", api.DNSNamespace, api.DNSService, err)
	}
	return nil
}

// DNSServiceIP is the cluster DNS address of a service range: its tenth
// address, as kubeadm picks it (10.96.0.10 for 10.96.0.0/12).
func DNSServiceIP(serviceCIDR string) (string, error) {
	if serviceCIDR == "" {
		return api.DNSServiceIP, nil
	}
	first, _, _ := strings.Cut(serviceCIDR, ",")
	p, err := netip.ParsePrefix(strings.TrimSpace(first))
	if err != nil {
		return "", fmt.Errorf("service CIDR %q: %w", serviceCIDR, err)
	}
	a := p.Masked().Addr()
	for range 10 {
		a = a.Next()
	}
	if !p.Contains(a) {
		return "", fmt.Errorf("service CIDR %q has no tenth address for cluster DNS", serviceCIDR)
	}
	return a.String(), nil
}
