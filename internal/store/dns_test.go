package store_test

import (
	"context"
	"testing"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	corev1 "k8s.io/api/core/v1"
)

func TestEnsureClusterDNS(t *testing.T) {
	s := serviceStore(t, "10.96.0.0/12", "30000-32767")
	ctx := context.Background()
	if err := s.EnsureClusterDNS(ctx, "10.96.0.0/12"); err != nil {
		t.Fatal(err)
	}
	cmKind, _ := api.ResourceFor("configmaps")
	o, err := s.Get(ctx, cmKind, "kube-system", "coredns")
	if err != nil {
		t.Fatal(err)
	}
	cm := o.(*corev1.ConfigMap)
	if cm.Data["Corefile"] != api.DefaultCorefile {
		t.Errorf("Corefile %q", cm.Data["Corefile"])
	}
	o, err = s.Get(ctx, svcKind, "kube-system", "kube-dns")
	if err != nil {
		t.Fatal(err)
	}
	svc := o.(*corev1.Service)
	if svc.Spec.ClusterIP != "10.96.0.10" || len(svc.Spec.Ports) != 3 || svc.Labels["k8s-app"] != "kube-dns" || svc.Labels[api.LabelServiceProxyName] == "" {
		t.Errorf("kube-dns %+v", svc)
	}
	// An edited Corefile is kept on the next bootstrap.
	cm.Data["Corefile"] = ".:53 {\n    whoami\n}\n"
	if err := s.Update(ctx, cm); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureClusterDNS(ctx, "10.96.0.0/12"); err != nil {
		t.Fatal(err)
	}
	o, _ = s.Get(ctx, cmKind, "kube-system", "coredns")
	if got := o.(*corev1.ConfigMap).Data["Corefile"]; got != ".:53 {\n    whoami\n}\n" {
		t.Errorf("edited Corefile replaced: %q", got)
	}
	for cidr, want := range map[string]string{"10.96.0.0/12": "10.96.0.10", "10.100.0.0/16,fd00::/108": "10.100.0.10", "": "10.96.0.10"} {
		if got, err := store.DNSServiceIP(cidr); err != nil || got != want {
			t.Errorf("DNSServiceIP(%q) = %q, %v", cidr, got, err)
		}
	}
	if _, err := store.DNSServiceIP("10.0.0.0/29"); err == nil {
		t.Errorf("a /29 has no tenth address")
	}
}
