package api

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// MaxConfigMapSize is the most data a ConfigMap holds (1 MiB), as
// Kubernetes limits it.
const MaxConfigMapSize = 1 << 20

// ValidateConfigMap checks keys (each a valid config key, in data or
// binaryData but not both) and the total size, as Kubernetes does.
func ValidateConfigMap(c *corev1.ConfigMap) field.ErrorList {
	var errs field.ErrorList
	size := 0
	dp, bp := field.NewPath("data"), field.NewPath("binaryData")
	for k, v := range c.Data {
		for _, msg := range utilvalidation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(dp.Key(k), k, msg))
		}
		size += len(k) + len(v)
	}
	for k, v := range c.BinaryData {
		for _, msg := range utilvalidation.IsConfigMapKey(k) {
			errs = append(errs, field.Invalid(bp.Key(k), k, msg))
		}
		if _, dup := c.Data[k]; dup {
			errs = append(errs, field.Invalid(bp.Key(k), k, "duplicate of key present in data"))
		}
		size += len(k) + len(v)
	}
	if size > MaxConfigMapSize {
		errs = append(errs, field.TooLong(field.NewPath(""), fmt.Sprintf("%d bytes", size), MaxConfigMapSize))
	}
	return errs
}

func configMapColumns() []Column {
	return []Column{
		nameColumn,
		{Name: "DATA", Cell: func(o Object) string {
			c := o.(*corev1.ConfigMap)
			return fmt.Sprint(len(c.Data) + len(c.BinaryData))
		}},
		ageColumn,
	}
}

// Cluster DNS objects, as kubeadm names them.
const (
	// DNSNamespace holds the cluster DNS objects.
	DNSNamespace = "kube-system"
	// DNSConfigMap is the ConfigMap with the Corefile (key DNSCorefileKey).
	DNSConfigMap   = "coredns"
	DNSCorefileKey = "Corefile"
	// DNSService is the cluster DNS Service, at DNSServiceIP.
	DNSService   = "kube-dns"
	DNSServiceIP = "10.96.0.10"
	// AnnotationDNSErrorPrefix + node name is the annotation a node's DNS
	// server sets on the ConfigMap while the Corefile does not load there.
	AnnotationDNSErrorPrefix = "dns.podnet.io/error-"
	// LabelServiceProxyName, when set on a Service, tells the service
	// proxy to leave it alone, as kube-proxy does: another component
	// serves its cluster IP (the node-local DNS server for kube-dns).
	LabelServiceProxyName = "service.kubernetes.io/service-proxy-name"
)

// DefaultCorefile is kubeadm's Corefile for the cluster domain.
const DefaultCorefile = `.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
`
