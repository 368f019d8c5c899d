package store

import (
	"context"
	"fmt"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/ingress/route"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// EnsureIngressClass creates, when missing, the IngressClass podnet's
// ingress serves: route.ClassName with controller route.ControllerName,
// marked as the default class so Ingresses that name no class are served.
// An existing class of that name (a user's edit: another default, an
// annotation removed) is left alone.
func (s *Store) EnsureIngressClass(ctx context.Context) error {
	ic := &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:        route.ClassName,
			Labels:      map[string]string{"app.kubernetes.io/component": "controller", "app.kubernetes.io/name": "podnet"},
			Annotations: map[string]string{api.AnnotationDefaultIngressClass: "true"},
		},
		Spec: networkingv1.IngressClassSpec{Controller: route.ControllerName},
	}
	if err := s.Create(ctx, ic); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("ensure ingressclass %s: %w", route.ClassName, err)
	}
	return nil
}

// EnsureIngressService creates, when missing, the Service
// api.IngressNamespace/api.IngressService in front of the nodes' ingress
// proxies: type LoadBalancer (so a cluster with a load-balancer range
// gives its Ingresses one address, announced and forwarded like any
// Service's), ports http 80 and https 443, no selector: its endpoints are
// the Ready nodes, written by the ingress-status controller. An existing
// Service of that name is left alone (a user may make it ClusterIP).
func (s *Store) EnsureIngressService(ctx context.Context) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: api.IngressNamespace, Name: api.IngressService,
			Labels: map[string]string{"app.kubernetes.io/component": "controller", "app.kubernetes.io/name": "podnet"},
		},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeLoadBalancer,
			Ports: []corev1.ServicePort{
				{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("http")},
				{Name: "https", Protocol: corev1.ProtocolTCP, Port: 443, TargetPort: intstr.FromString("https")},
			},
		},
	}
	if err := s.Create(ctx, svc); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("ensure service %s/%s: %w", api.IngressNamespace, api.IngressService, err)
	}
	return nil
}

// An Ingress created without a class gets the default IngressClass's name
// in spec.ingressClassName, as the API server's DefaultIngressClass
// admission plugin sets it: not when the legacy kubernetes.io/ingress.class
// annotation names one, nor when no class or several are marked default.
// An update that names no class keeps it.
func init() {
	RegisterTxnHook("Ingress", TxnHook{PrepareUpdate: func(old, new api.Object) {
		// An update that names no class keeps the one set at create (as
		// kubectl apply keeps a field it never managed).
		o, n := old.(*networkingv1.Ingress), new.(*networkingv1.Ingress)
		if _, legacy := n.Annotations[api.AnnotationIngressClass]; n.Spec.IngressClassName == nil && !legacy {
			n.Spec.IngressClassName = o.Spec.IngressClassName
		}
	}, Create: func(ctx context.Context, s *Store, o api.Object) (TxnParts, error) {
		ing := o.(*networkingv1.Ingress)
		if ing.Spec.IngressClassName != nil {
			return TxnParts{}, nil
		}
		if _, legacy := ing.Annotations[api.AnnotationIngressClass]; legacy {
			return TxnParts{}, nil
		}
		k, err := api.KindOf(&networkingv1.IngressClass{})
		if err != nil {
			return TxnParts{}, err
		}
		classes, _, err := s.List(ctx, k, "")
		if err != nil {
			return TxnParts{}, fmt.Errorf("default ingress class: %w", err)
		}
		var def []string
		for _, c := range classes {
			if c.GetAnnotations()[api.AnnotationDefaultIngressClass] == "true" {
				def = append(def, c.GetName())
			}
		}
		if len(def) == 1 {
			ing.Spec.IngressClassName = &def[0]
		}
		return TxnParts{}, nil
	}})
}
