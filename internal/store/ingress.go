package store

import (
	"context"
	"fmt"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/ingress/route"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
