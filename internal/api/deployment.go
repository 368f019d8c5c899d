package api

import (
	"reflect"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Defaults and validation of Deployment and ReplicaSet (apps/v1), as the
// Kubernetes API server: SetDefaults_Deployment / _ReplicaSet and
// pkg/apis/apps/validation. Their pod templates are checked by the same
// code as pods (validatePodSpec).

// Annotations and labels the Deployment machinery shares, as Kubernetes.
const (
	AnnotationRevision    = "deployment.kubernetes.io/revision"
	AnnotationRestartedAt = "kubectl.kubernetes.io/restartedAt"
	LabelPodTemplateHash  = appsv1.DefaultDeploymentUniqueLabelKey // pod-template-hash
)

// Deployment defaults, as Kubernetes.
const (
	DefaultRevisionHistoryLimit    = int32(10)
	DefaultProgressDeadlineSeconds = int32(600)
)

// DefaultDeployment fills defaulted fields of a Deployment.
func DefaultDeployment(d *appsv1.Deployment) {
	s := &d.Spec
	if s.Replicas == nil {
		one := int32(1)
		s.Replicas = &one
	}
	if s.Strategy.Type == "" {
		s.Strategy.Type = appsv1.RollingUpdateDeploymentStrategyType
	}
	if s.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType {
		if s.Strategy.RollingUpdate == nil {
			s.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{}
		}
		quarter := intstr.FromString("25%")
		if s.Strategy.RollingUpdate.MaxUnavailable == nil {
			v := quarter
			s.Strategy.RollingUpdate.MaxUnavailable = &v
		}
		if s.Strategy.RollingUpdate.MaxSurge == nil {
			v := quarter
			s.Strategy.RollingUpdate.MaxSurge = &v
		}
	}
	if s.RevisionHistoryLimit == nil {
		v := DefaultRevisionHistoryLimit
		s.RevisionHistoryLimit = &v
	}
	if s.ProgressDeadlineSeconds == nil {
		v := DefaultProgressDeadlineSeconds
		s.ProgressDeadlineSeconds = &v
	}
	defaultPodSpec(&s.Template.Spec)
}

// DefaultReplicaSet fills defaulted fields of a ReplicaSet.
func DefaultReplicaSet(r *appsv1.ReplicaSet) {
	if r.Spec.Replicas == nil {
		one := int32(1)
		r.Spec.Replicas = &one
	}
	defaultPodSpec(&r.Spec.Template.Spec)
}

// ValidateDeployment checks a Deployment as Kubernetes does.
func ValidateDeployment(d *appsv1.Deployment) field.ErrorList {
	s := &d.Spec
	spec := field.NewPath("spec")
	errs := validateReplicated(s.Replicas, s.Selector, &s.Template, s.MinReadySeconds, "deployment", spec)

	sp := spec.Child("strategy")
	switch s.Strategy.Type {
	case appsv1.RecreateDeploymentStrategyType:
		if s.Strategy.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(sp.Child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
		}
	case appsv1.RollingUpdateDeploymentStrategyType:
		if s.Strategy.RollingUpdate == nil {
			errs = append(errs, field.Required(sp.Child("rollingUpdate"), "this should be defaulted and never be nil"))
		} else {
			errs = append(errs, validateRollingUpdate(s.Strategy.RollingUpdate, sp.Child("rollingUpdate"))...)
		}
	default:
		errs = append(errs, field.NotSupported(sp.Child("type"), s.Strategy.Type, []string{string(appsv1.RecreateDeploymentStrategyType), string(appsv1.RollingUpdateDeploymentStrategyType)}))
	}
	if s.RevisionHistoryLimit != nil {
		errs = append(errs, nonNegative(int64(*s.RevisionHistoryLimit), spec.Child("revisionHistoryLimit"))...)
	}
	if s.ProgressDeadlineSeconds != nil {
		pd := spec.Child("progressDeadlineSeconds")
		errs = append(errs, nonNegative(int64(*s.ProgressDeadlineSeconds), pd)...)
		if *s.ProgressDeadlineSeconds <= s.MinReadySeconds {
			errs = append(errs, field.Invalid(pd, *s.ProgressDeadlineSeconds, "must be greater than minReadySeconds"))
		}
	}
	return errs
}

// ValidateReplicaSet checks a ReplicaSet as Kubernetes does.
func ValidateReplicaSet(r *appsv1.ReplicaSet) field.ErrorList {
	return validateReplicated(r.Spec.Replicas, r.Spec.Selector, &r.Spec.Template, r.Spec.MinReadySeconds, "replicaset", field.NewPath("spec"))
}

// validateReplicated checks what Deployments and ReplicaSets share:
// replicas, a selector matching the template's labels, the pod template.
func validateReplicated(replicas *int32, sel *metav1.LabelSelector, t *corev1.PodTemplateSpec, minReady int32, what string, spec *field.Path) field.ErrorList {
	var errs field.ErrorList
	if replicas != nil {
		errs = append(errs, nonNegative(int64(*replicas), spec.Child("replicas"))...)
	}
	errs = append(errs, nonNegative(int64(minReady), spec.Child("minReadySeconds"))...)
	sp := spec.Child("selector")
	tl := spec.Child("template", "metadata", "labels")
	if sel == nil {
		errs = append(errs, field.Required(sp, ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, sp)...)
		if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
			errs = append(errs, field.Invalid(sp, sel, "empty selector is invalid for "+what))
		} else if selector, err := metav1.LabelSelectorAsSelector(sel); err == nil && !selector.Matches(labels.Set(t.Labels)) {
			errs = append(errs, field.Invalid(tl, t.Labels, "`selector` does not match template `labels`"))
		}
	}
	errs = append(errs, validatePodTemplate(t, spec.Child("template"))...)
	return errs
}

// validatePodTemplate checks a Deployment's or ReplicaSet's pod template:
// its metadata, its spec as a pod's, and restartPolicy Always.
func validatePodTemplate(t *corev1.PodTemplateSpec, tp *field.Path) field.ErrorList {
	var errs field.ErrorList
	mp := tp.Child("metadata")
	for k, v := range t.Labels {
		for _, m := range utilvalidation.IsQualifiedName(k) {
			errs = append(errs, field.Invalid(mp.Child("labels").Key(k), k, m))
		}
		for _, m := range utilvalidation.IsValidLabelValue(v) {
			errs = append(errs, field.Invalid(mp.Child("labels").Key(k), v, m))
		}
	}
	errs = append(errs, validation.ValidateAnnotations(t.Annotations, mp.Child("annotations"))...)
	sp := tp.Child("spec")
	errs = append(errs, validatePodSpec(&t.Spec, t.Annotations, mp.Child("annotations"), sp)...)
	if t.Spec.RestartPolicy != corev1.RestartPolicyAlways && t.Spec.RestartPolicy != "" {
		errs = append(errs, field.NotSupported(sp.Child("restartPolicy"), t.Spec.RestartPolicy, []string{string(corev1.RestartPolicyAlways)}))
	}
	if t.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(sp.Child("activeDeadlineSeconds"), "activeDeadlineSeconds in ReplicaSet is not Supported"))
	}
	return errs
}

func validateRollingUpdate(ru *appsv1.RollingUpdateDeployment, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	mu, ms := p.Child("maxUnavailable"), p.Child("maxSurge")
	if ru.MaxUnavailable != nil {
		errs = append(errs, validateIntOrPercent(*ru.MaxUnavailable, mu)...)
		if v, ok := percent(*ru.MaxUnavailable); ok && v > 100 {
			errs = append(errs, field.Invalid(mu, ru.MaxUnavailable.String(), "must not be greater than 100%"))
		}
	}
	if ru.MaxSurge != nil {
		errs = append(errs, validateIntOrPercent(*ru.MaxSurge, ms)...)
	}
	if isZero(ru.MaxUnavailable) && isZero(ru.MaxSurge) {
		errs = append(errs, field.Invalid(mu, ru.MaxUnavailable.String(), "may not be 0 when `maxSurge` is 0"))
	}
	return errs
}

// validateIntOrPercent accepts a non-negative integer or "N%".
func validateIntOrPercent(v intstr.IntOrString, p *field.Path) field.ErrorList {
	switch v.Type {
	case intstr.String:
		if _, ok := percent(v); !ok {
			return field.ErrorList{field.Invalid(p, v.StrVal, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '25%')")}
		}
	case intstr.Int:
		return nonNegative(int64(v.IntVal), p)
	}
	return nil
}

// percent parses "N%"; ok is false for anything else.
func percent(v intstr.IntOrString) (int, bool) {
	if v.Type != intstr.String {
		return 0, false
	}
	s, found := strings.CutSuffix(v.StrVal, "%")
	if !found || s == "" || strings.ContainsAny(s, "+-") {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}

func isZero(v *intstr.IntOrString) bool {
	if v == nil {
		return true
	}
	if v.Type == intstr.Int {
		return v.IntVal == 0
	}
	n, ok := percent(*v)
	return ok && n == 0
}

func nonNegative(v int64, p *field.Path) field.ErrorList {
	if v < 0 {
		return field.ErrorList{field.Invalid(p, v, "must be greater than or equal to 0")}
	}
	return nil
}

// validateSelectorUpdate: apps/v1 selectors are immutable.
func validateSelectorUpdate(old, new *metav1.LabelSelector) field.ErrorList {
	if !reflect.DeepEqual(old, new) {
		return field.ErrorList{field.Invalid(field.NewPath("spec", "selector"), new, "field is immutable")}
	}
	return nil
}

func validateDeploymentUpdate(old, new *appsv1.Deployment) field.ErrorList {
	return validateSelectorUpdate(old.Spec.Selector, new.Spec.Selector)
}

func validateReplicaSetUpdate(old, new *appsv1.ReplicaSet) field.ErrorList {
	return validateSelectorUpdate(old.Spec.Selector, new.Spec.Selector)
}
