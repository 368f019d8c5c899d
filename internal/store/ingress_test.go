package store_test

import (
	"context"
	"testing"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/ingress/route"
	"github.com/podnet/podnet/internal/store"
	"github.com/podnet/podnet/internal/testutil"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestEnsureIngressClass(t *testing.T) {
	s, _ := testutil.Store(t)
	ctx := context.Background()
	icKind, _ := api.ResourceFor("ingressclass")
	if err := s.EnsureIngressClass(ctx); err != nil {
		t.Fatal(err)
	}
	o, err := s.Get(ctx, icKind, "", route.ClassName)
	if err != nil {
		t.Fatal(err)
	}
	ic := o.(*networkingv1.IngressClass)
	if ic.Spec.Controller != route.ControllerName || !api.IngressClassIsDefault(ic) {
		t.Fatalf("%+v", ic)
	}
	// Idempotent: a second call writes nothing.
	if err := s.EnsureIngressClass(ctx); err != nil {
		t.Fatal(err)
	}
	o2, _ := s.Get(ctx, icKind, "", route.ClassName)
	if o2.GetResourceVersion() != ic.ResourceVersion {
		t.Fatalf("rewritten: %s -> %s", ic.ResourceVersion, o2.GetResourceVersion())
	}
	// A user's edit (no longer the default) is kept.
	ic.Annotations[api.AnnotationDefaultIngressClass] = "false"
	if err := s.Update(ctx, ic); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureIngressClass(ctx); err != nil {
		t.Fatal(err)
	}
	o, _ = s.Get(ctx, icKind, "", route.ClassName)
	if api.IngressClassIsDefault(o.(*networkingv1.IngressClass)) {
		t.Fatal("the user's edit was overwritten")
	}
	// Deleted: created again.
	if _, err := s.Delete(ctx, icKind, "", route.ClassName, store.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureIngressClass(ctx); err != nil {
		t.Fatal(err)
	}
	if o, err = s.Get(ctx, icKind, "", route.ClassName); err != nil || !api.IngressClassIsDefault(o.(*networkingv1.IngressClass)) {
		t.Fatalf("re-created: %v %+v", err, o)
	}
}

// TestApplyKeepsIngressStatus: apply of a manifest keeps what the
// ingress-status controller wrote (status and the problems annotation).
func TestApplyKeepsIngressStatus(t *testing.T) {
	s, _ := testutil.Store(t)
	ctx := context.Background()
	if err := s.EnsureNamespaces(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	ingKind, _ := api.ResourceFor("ing")
	pt := networkingv1.PathTypePrefix
	ing := &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: "a.com", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
			Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &pt, Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}},
		}}}}},
	}
	if _, err := s.Apply(ctx, ing.DeepCopy()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Mutate(ctx, ingKind, "default", "web", func(o api.Object) error {
		cur := o.(*networkingv1.Ingress)
		cur.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "10.0.0.1"}}
		cur.Annotations = map[string]string{api.AnnotationIngressProblems: "service default/web not found"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Apply(ctx, ing.DeepCopy())
	if err != nil || res != store.Unchanged {
		t.Fatalf("re-apply: %v %v", res, err)
	}
	o, _ := s.Get(ctx, ingKind, "default", "web")
	got := o.(*networkingv1.Ingress)
	if api.IngressAddress(got) != "10.0.0.1" || got.Annotations[api.AnnotationIngressProblems] == "" {
		t.Fatalf("status lost: %+v", got)
	}
}

// TestIngressDefaultClass: an Ingress created without a class gets the
// default IngressClass (as the DefaultIngressClass admission plugin sets
// it), one with the legacy annotation does not, and an update naming no
// class keeps it.
func TestIngressDefaultClass(t *testing.T) {
	s, _ := testutil.Store(t)
	ctx := context.Background()
	if err := s.EnsureNamespaces(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	ingKind, _ := api.KindOf(&networkingv1.Ingress{})
	mk := func(name string, ann map[string]string) *networkingv1.Ingress {
		pt := networkingv1.PathTypePrefix
		return &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Annotations: ann},
			Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: "a.example.com", IngressRuleValue: networkingv1.IngressRuleValue{
				HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &pt,
					Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}},
			}}}},
		}
	}
	class := func(name string) string {
		t.Helper()
		o, err := s.Get(ctx, ingKind, "default", name)
		if err != nil {
			t.Fatal(err)
		}
		if c := o.(*networkingv1.Ingress).Spec.IngressClassName; c != nil {
			return *c
		}
		return "<none>"
	}
	// No default class yet: nothing set.
	if err := s.Create(ctx, mk("before", nil)); err != nil {
		t.Fatal(err)
	}
	if got := class("before"); got != "<none>" {
		t.Errorf("without a default class: %q", got)
	}
	if err := s.EnsureIngressClass(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, mk("web", nil)); err != nil {
		t.Fatal(err)
	}
	if got := class("web"); got != "podnet" {
		t.Errorf("created without a class: %q, want the default podnet", got)
	}
	if err := s.Create(ctx, mk("legacy", map[string]string{api.AnnotationIngressClass: "nginx"})); err != nil {
		t.Fatal(err)
	}
	if got := class("legacy"); got != "<none>" {
		t.Errorf("with the legacy annotation: %q", got)
	}
	// An update (apply) that names no class keeps the one set at create.
	o, _ := s.Get(ctx, ingKind, "default", "web")
	upd := mk("web", nil)
	upd.ResourceVersion = o.GetResourceVersion()
	if err := s.Update(ctx, upd); err != nil {
		t.Fatal(err)
	}
	if got := class("web"); got != "podnet" {
		t.Errorf("after an update without a class: %q", got)
	}
}
