package api

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Defaults and validation of the Service, EndpointSlice, Deployment and
// ReplicaSet kinds. (Filled in by the Services work: Kubernetes' defaults
// and validation rules for each.)

// DefaultService fills the fields the Kubernetes API server defaults.
func DefaultService(s *corev1.Service) {}

// ValidateService checks a Service as the Kubernetes API server does.
func ValidateService(s *corev1.Service) field.ErrorList { return nil }

func validateServiceUpdate(old, new *corev1.Service) field.ErrorList { return nil }

// DefaultEndpointSlice fills defaulted fields of an EndpointSlice.
func DefaultEndpointSlice(s *discoveryv1.EndpointSlice) {}

// ValidateEndpointSlice checks an EndpointSlice.
func ValidateEndpointSlice(s *discoveryv1.EndpointSlice) field.ErrorList { return nil }

// DefaultDeployment fills defaulted fields of a Deployment.
func DefaultDeployment(d *appsv1.Deployment) {}

// ValidateDeployment checks a Deployment.
func ValidateDeployment(d *appsv1.Deployment) field.ErrorList { return nil }

// DefaultReplicaSet fills defaulted fields of a ReplicaSet.
func DefaultReplicaSet(r *appsv1.ReplicaSet) {}

// ValidateReplicaSet checks a ReplicaSet.
func ValidateReplicaSet(r *appsv1.ReplicaSet) field.ErrorList { return nil }
