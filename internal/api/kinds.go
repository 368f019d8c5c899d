package api

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Object is any stored object: Kubernetes metadata plus type information.
type Object interface {
	metav1.Object
	runtime.Object
}

// Kind describes one kind podnet stores.
type Kind struct {
	GVK        schema.GroupVersionKind
	Resource   string   // plural, lower case: "pods"
	Aliases    []string // what `podnet get` accepts besides Resource: "pod", "po"
	Namespaced bool
	New        func() Object
	Default    func(Object)
	Validate   func(Object) field.ErrorList
	// ValidateUpdate checks an update of old to new; nil means any change
	// that passes Validate is allowed.
	ValidateUpdate func(old, new Object) field.ErrorList
	// Columns are the kind's table for `podnet get` (see Column).
	Columns []Column
	// NameIsLabel: metadata.name must be a DNS-1035 label (Services) rather
	// than a DNS-1123 subdomain.
	NameIsLabel bool
	// Warnings, if set, returns the warnings a write of a valid object
	// gets, as the API server returns them to kubectl (unknown Ingress
	// annotations); the CLI prints them as "Warning: ..." on stderr.
	Warnings func(Object) []string
	// Redact, if set, returns what `get` prints for an object in its
	// yaml, json, jsonpath and custom-columns forms, in place of the
	// object: a Secret with its values replaced (see Redacted).
	Redact func(Object) any
}

// WarningsFor returns the warnings of writing o (none if the kind has no
// Warnings).
func (k *Kind) WarningsFor(o Object) []string {
	if k.Warnings == nil {
		return nil
	}
	return k.Warnings(o)
}

// Printable returns what `get` prints for o: o itself, or its kind's
// redacted form.
func Printable(o Object) any {
	if k, err := KindOf(o); err == nil && k.Redact != nil {
		return k.Redact(o)
	}
	return o
}

// GroupResource names the kind in errors, as Kubernetes does ("pods").
func (k *Kind) GroupResource() schema.GroupResource {
	return schema.GroupResource{Group: k.GVK.Group, Resource: k.Resource}
}

var kinds = []*Kind{
	{
		GVK:         corev1.SchemeGroupVersion.WithKind("Namespace"),
		Columns:     namespaceColumns(),
		Resource:    "namespaces",
		Aliases:     []string{"namespace", "ns"},
		Namespaced:  false,
		New:         func() Object { return &corev1.Namespace{} },
		Default:     func(o Object) { defaultNamespace(o.(*corev1.Namespace)) },
		Validate:    func(o Object) field.ErrorList { return validateNamespace(o.(*corev1.Namespace)) },
		NameIsLabel: true,
	},
	{
		GVK:        corev1.SchemeGroupVersion.WithKind("Pod"),
		Columns:    podColumns(),
		Resource:   "pods",
		Aliases:    []string{"pod", "po"},
		Namespaced: true,
		New:        func() Object { return &corev1.Pod{} },
		Default:    func(o Object) { DefaultPod(o.(*corev1.Pod)) },
		Validate:   func(o Object) field.ErrorList { return ValidatePod(o.(*corev1.Pod)) },
		ValidateUpdate: func(old, new Object) field.ErrorList {
			return validatePodUpdate(old.(*corev1.Pod), new.(*corev1.Pod))
		},
	},
	{
		GVK:        corev1.SchemeGroupVersion.WithKind("Node"),
		Columns:    nodeColumns(),
		Resource:   "nodes",
		Aliases:    []string{"node", "no"},
		Namespaced: false,
		New:        func() Object { return &corev1.Node{} },
		Default:    func(Object) {},
		Validate:   func(o Object) field.ErrorList { return ValidateNode(o.(*corev1.Node)) },
		ValidateUpdate: func(old, new Object) field.ErrorList {
			return validateNodeUpdate(old.(*corev1.Node), new.(*corev1.Node))
		},
	},
	{
		GVK:        corev1.SchemeGroupVersion.WithKind("ConfigMap"),
		Columns:    configMapColumns(),
		Resource:   "configmaps",
		Aliases:    []string{"configmap", "cm"},
		Namespaced: true,
		New:        func() Object { return &corev1.ConfigMap{} },
		Default:    func(Object) {},
		Validate:   func(o Object) field.ErrorList { return ValidateConfigMap(o.(*corev1.ConfigMap)) },
		ValidateUpdate: func(old, new Object) field.ErrorList {
			if o := old.(*corev1.ConfigMap); o.Immutable != nil && *o.Immutable {
				return field.ErrorList{field.Forbidden(field.NewPath("data"), "field is immutable when `immutable` is set")}
			}
			return nil
		},
	},
	{
		GVK:        corev1.SchemeGroupVersion.WithKind("Service"),
		Columns:    serviceColumns(),
		Resource:   "services",
		Aliases:    []string{"service", "svc"},
		Namespaced: true,
		New:        func() Object { return &corev1.Service{} },
		Default:    func(o Object) { DefaultService(o.(*corev1.Service)) },
		Validate:   func(o Object) field.ErrorList { return ValidateService(o.(*corev1.Service)) },
		ValidateUpdate: func(old, new Object) field.ErrorList {
			return validateServiceUpdate(old.(*corev1.Service), new.(*corev1.Service))
		},
		NameIsLabel: true,
	},
	{
		GVK:        discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice"),
		Columns:    endpointSliceColumns(),
		Resource:   "endpointslices",
		Aliases:    []string{"endpointslice"},
		Namespaced: true,
		New:        func() Object { return &discoveryv1.EndpointSlice{} },
		Default:    func(o Object) { DefaultEndpointSlice(o.(*discoveryv1.EndpointSlice)) },
		Validate:   func(o Object) field.ErrorList { return ValidateEndpointSlice(o.(*discoveryv1.EndpointSlice)) },
		ValidateUpdate: func(old, new Object) field.ErrorList {
			return validateEndpointSliceUpdate(old.(*discoveryv1.EndpointSlice), new.(*discoveryv1.EndpointSlice))
		},
	},
	{
		GVK:        appsv1.SchemeGroupVersion.WithKind("Deployment"),
		Columns:    deploymentColumns(),
		Resource:   "deployments",
		Aliases:    []string{"deployment", "deploy"},
		Namespaced: true,
		New:        func() Object { return &appsv1.Deployment{} },
		Default:    func(o Object) { DefaultDeployment(o.(*appsv1.Deployment)) },
		Validate:   func(o Object) field.ErrorList { return ValidateDeployment(o.(*appsv1.Deployment)) },
		ValidateUpdate: func(old, new Object) field.ErrorList {
			return validateDeploymentUpdate(old.(*appsv1.Deployment), new.(*appsv1.Deployment))
		},
	},
	{
		GVK:        appsv1.SchemeGroupVersion.WithKind("ReplicaSet"),
		Columns:    replicaSetColumns(),
		Resource:   "replicasets",
		Aliases:    []string{"replicaset", "rs"},
		Namespaced: true,
		New:        func() Object { return &appsv1.ReplicaSet{} },
		Default:    func(o Object) { DefaultReplicaSet(o.(*appsv1.ReplicaSet)) },
		Validate:   func(o Object) field.ErrorList { return ValidateReplicaSet(o.(*appsv1.ReplicaSet)) },
		ValidateUpdate: func(old, new Object) field.ErrorList {
			return validateReplicaSetUpdate(old.(*appsv1.ReplicaSet), new.(*appsv1.ReplicaSet))
		},
	},
	{
		GVK:        corev1.SchemeGroupVersion.WithKind("Secret"),
		Columns:    secretColumns(),
		Resource:   "secrets",
		Aliases:    []string{"secret"},
		Namespaced: true,
		New:        func() Object { return &corev1.Secret{} },
		Default:    func(o Object) { DefaultSecret(o.(*corev1.Secret)) },
		Validate:   func(o Object) field.ErrorList { return ValidateSecret(o.(*corev1.Secret)) },
		ValidateUpdate: func(old, new Object) field.ErrorList {
			return validateSecretUpdate(old.(*corev1.Secret), new.(*corev1.Secret))
		},
		Warnings: func(o Object) []string { return SecretWarnings(o.(*corev1.Secret)) },
		Redact:   redactSecret,
	},
	{
		GVK:        networkingv1.SchemeGroupVersion.WithKind("Ingress"),
		Columns:    ingressColumns(),
		Resource:   "ingresses",
		Aliases:    []string{"ingress", "ing"},
		Namespaced: true,
		New:        func() Object { return &networkingv1.Ingress{} },
		Default:    func(Object) {},
		Validate:   func(o Object) field.ErrorList { return ValidateIngress(o.(*networkingv1.Ingress)) },
		Warnings:   func(o Object) []string { return IngressWarnings(o.(*networkingv1.Ingress)) },
	},
	{
		GVK:        networkingv1.SchemeGroupVersion.WithKind("IngressClass"),
		Columns:    ingressClassColumns(),
		Resource:   "ingressclasses",
		Aliases:    []string{"ingressclass"},
		Namespaced: false,
		New:        func() Object { return &networkingv1.IngressClass{} },
		Default:    func(o Object) { DefaultIngressClass(o.(*networkingv1.IngressClass)) },
		Validate:   func(o Object) field.ErrorList { return ValidateIngressClass(o.(*networkingv1.IngressClass)) },
		ValidateUpdate: func(old, new Object) field.ErrorList {
			return validateIngressClassUpdate(old.(*networkingv1.IngressClass), new.(*networkingv1.IngressClass))
		},
	},
}

// Kinds returns every registered kind.
func Kinds() []*Kind { return kinds }

// KindFor returns the kind of an apiVersion and kind pair from a manifest.
func KindFor(apiVersion, kind string) (*Kind, error) {
	for _, k := range kinds {
		if k.GVK.Kind == kind {
			if k.GVK.GroupVersion().String() != apiVersion {
				return nil, fmt.Errorf("kind %s: apiVersion %q is not served; use %q", kind, apiVersion, k.GVK.GroupVersion().String())
			}
			return k, nil
		}
	}
	return nil, fmt.Errorf("kind %q is not supported (supported: %s)", kind, strings.Join(kindNames(), ", "))
}

// KindOf returns the registered kind of a typed object.
func KindOf(o Object) (*Kind, error) {
	t := reflect.TypeOf(o)
	for _, k := range kinds {
		if reflect.TypeOf(k.New()) == t {
			return k, nil
		}
	}
	return nil, fmt.Errorf("type %T is not a stored kind", o)
}

// ResourceFor resolves what a user typed after `podnet get` ("po", "pods").
func ResourceFor(name string) (*Kind, error) {
	n := strings.ToLower(name)
	for _, k := range kinds {
		if k.Resource == n || strings.ToLower(k.GVK.Kind) == n {
			return k, nil
		}
		for _, a := range k.Aliases {
			if a == n {
				return k, nil
			}
		}
	}
	return nil, fmt.Errorf("the server doesn't have a resource type %q (have: %s)", name, strings.Join(resourceNames(), ", "))
}

// SetTypeMeta fills apiVersion and kind, which typed objects leave empty.
func SetTypeMeta(o Object) {
	if k, err := KindOf(o); err == nil {
		o.GetObjectKind().SetGroupVersionKind(k.GVK)
	}
}

func kindNames() []string {
	var out []string
	for _, k := range kinds {
		out = append(out, k.GVK.Kind)
	}
	sort.Strings(out)
	return out
}

func resourceNames() []string {
	var out []string
	for _, k := range kinds {
		out = append(out, k.Resource)
	}
	sort.Strings(out)
	return out
}
