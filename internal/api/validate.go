package api

import (
	"fmt"
	"net/netip"
	"reflect"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func validateMeta(k *Kind, o Object) field.ErrorList {
	p := field.NewPath("metadata")
	var errs field.ErrorList
	name := o.GetName()
	switch {
	case name == "":
		errs = append(errs, field.Required(p.Child("name"), "name is required"))
	case k.GVK.Kind == "Namespace":
		for _, m := range utilvalidation.IsDNS1123Label(name) {
			errs = append(errs, field.Invalid(p.Child("name"), name, m))
		}
	case k.NameIsLabel:
		for _, m := range utilvalidation.IsDNS1035Label(name) {
			errs = append(errs, field.Invalid(p.Child("name"), name, m))
		}
	default:
		for _, m := range utilvalidation.IsDNS1123Subdomain(name) {
			errs = append(errs, field.Invalid(p.Child("name"), name, m))
		}
	}
	if k.Namespaced {
		for _, m := range utilvalidation.IsDNS1123Label(o.GetNamespace()) {
			errs = append(errs, field.Invalid(p.Child("namespace"), o.GetNamespace(), m))
		}
	}
	errs = append(errs, validation.ValidateAnnotations(o.GetAnnotations(), p.Child("annotations"))...)
	for key, v := range o.GetLabels() {
		for _, m := range utilvalidation.IsQualifiedName(key) {
			errs = append(errs, field.Invalid(p.Child("labels").Key(key), key, m))
		}
		for _, m := range utilvalidation.IsValidLabelValue(v) {
			errs = append(errs, field.Invalid(p.Child("labels").Key(key), v, m))
		}
	}
	return errs
}

func validateNamespace(*corev1.Namespace) field.ErrorList { return nil }

// supportedFieldRefs are the downward-API fields a container's env can use.
var supportedFieldRefs = sets.New("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
	"spec.serviceAccountName", "status.podIP", "status.podIPs")

// ValidatePod checks the parts of a pod podnet runs.
func ValidatePod(p *corev1.Pod) field.ErrorList {
	return validatePodSpec(&p.Spec, p.Annotations, field.NewPath("metadata", "annotations"), field.NewPath("spec"))
}

// validatePodSpec checks a pod's spec (of a pod or of a pod template);
// annotations are the pod's (or the template's), at annPath.
func validatePodSpec(s *corev1.PodSpec, annotations map[string]string, annPath, spec *field.Path) field.ErrorList {
	var errs field.ErrorList
	if v, ok := annotations[AnnotationNetwork]; ok && v != NetworkNone && v != NetworkBridge {
		errs = append(errs, field.NotSupported(annPath.Key(AnnotationNetwork), v, []string{NetworkBridge, NetworkNone}))
	}
	if s.HostNetwork && annotations[AnnotationNetwork] == NetworkNone {
		errs = append(errs, field.Invalid(spec.Child("hostNetwork"), true, "cannot be combined with annotation "+AnnotationNetwork+": none"))
	}
	if len(s.Containers) == 0 {
		errs = append(errs, field.Required(spec.Child("containers"), "a pod needs at least one container"))
	}
	switch s.RestartPolicy {
	case corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
	default:
		errs = append(errs, field.NotSupported(spec.Child("restartPolicy"), s.RestartPolicy, []string{"Always", "OnFailure", "Never"}))
	}
	switch s.DNSPolicy {
	case corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault:
	case corev1.DNSNone:
		if s.DNSConfig == nil {
			errs = append(errs, field.Required(spec.Child("dnsConfig"), "required when dnsPolicy is None"))
		}
	default:
		errs = append(errs, field.NotSupported(spec.Child("dnsPolicy"), s.DNSPolicy, []string{"ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"}))
	}
	if s.DNSConfig != nil {
		for i, ns := range s.DNSConfig.Nameservers {
			if _, err := netip.ParseAddr(ns); err != nil {
				errs = append(errs, field.Invalid(spec.Child("dnsConfig", "nameservers").Index(i), ns, "must be an IP address"))
			}
		}
	}
	if s.NodeName != "" {
		for _, m := range utilvalidation.IsDNS1123Subdomain(s.NodeName) {
			errs = append(errs, field.Invalid(spec.Child("nodeName"), s.NodeName, m))
		}
	}
	for i, ha := range s.HostAliases {
		if _, err := netip.ParseAddr(ha.IP); err != nil {
			errs = append(errs, field.Invalid(spec.Child("hostAliases").Index(i).Child("ip"), ha.IP, "must be an IP address"))
		}
	}
	names := sets.New[string]()
	type hp struct {
		proto corev1.Protocol
		ip    string
		port  int32
	}
	hostPorts := map[hp]string{}
	if len(s.InitContainers) > 0 {
		errs = append(errs, field.Forbidden(spec.Child("initContainers"), "not supported by podnet"))
	}
	for i := range s.Containers {
		c := &s.Containers[i]
		cp := spec.Child("containers").Index(i)
		if c.Name == "" {
			errs = append(errs, field.Required(cp.Child("name"), ""))
		} else {
			for _, m := range utilvalidation.IsDNS1123Label(c.Name) {
				errs = append(errs, field.Invalid(cp.Child("name"), c.Name, m))
			}
			if names.Has(c.Name) {
				errs = append(errs, field.Duplicate(cp.Child("name"), c.Name))
			}
			names.Insert(c.Name)
		}
		if len(c.Command) == 0 {
			errs = append(errs, field.Required(cp.Child("command"), "podnet runs the command on the node's filesystem; image is not pulled"))
		}
		for j, e := range c.Env {
			if e.Name == "" {
				errs = append(errs, field.Required(cp.Child("env").Index(j).Child("name"), ""))
			}
			if vf := e.ValueFrom; vf != nil {
				vp := cp.Child("env").Index(j).Child("valueFrom")
				switch {
				case vf.FieldRef == nil:
					errs = append(errs, field.Forbidden(vp, "podnet supports only fieldRef"))
				case !supportedFieldRefs.Has(vf.FieldRef.FieldPath):
					errs = append(errs, field.NotSupported(vp.Child("fieldRef", "fieldPath"), vf.FieldRef.FieldPath, sets.List(supportedFieldRefs)))
				}
			}
		}
		errs = append(errs, validateContainerProbes(c, cp)...)
		for j, port := range c.Ports {
			pp := cp.Child("ports").Index(j)
			for _, m := range utilvalidation.IsValidPortNum(int(port.ContainerPort)) {
				errs = append(errs, field.Invalid(pp.Child("containerPort"), port.ContainerPort, m))
			}
			if port.HostPort != 0 {
				for _, m := range utilvalidation.IsValidPortNum(int(port.HostPort)) {
					errs = append(errs, field.Invalid(pp.Child("hostPort"), port.HostPort, m))
				}
				if s.HostNetwork && port.HostPort != port.ContainerPort {
					errs = append(errs, field.Invalid(pp.Child("hostPort"), port.HostPort, "must equal containerPort when hostNetwork is true"))
				}
			}
			if port.Protocol != corev1.ProtocolTCP && port.Protocol != corev1.ProtocolUDP {
				errs = append(errs, field.NotSupported(pp.Child("protocol"), port.Protocol, []string{"TCP", "UDP"}))
			}
			if port.HostIP != "" {
				if _, err := netip.ParseAddr(port.HostIP); err != nil {
					errs = append(errs, field.Invalid(pp.Child("hostIP"), port.HostIP, "must be an IP address"))
				}
			}
			if port.HostPort != 0 {
				key := hp{port.Protocol, port.HostIP, port.HostPort}
				if prev, ok := hostPorts[key]; ok {
					errs = append(errs, field.Duplicate(pp.Child("hostPort"), fmt.Sprintf("%s/%d (also %s)", port.Protocol, port.HostPort, prev)))
				}
				hostPorts[key] = pp.String()
			}
		}
	}
	return errs
}

// validatePodUpdate allows what Kubernetes allows on a running pod's spec:
// nothing but metadata labels and annotations, and nodeName once (binding).
func validatePodUpdate(old, new *corev1.Pod) field.ErrorList {
	a, b := old.Spec.DeepCopy(), new.Spec.DeepCopy()
	if a.NodeName == "" {
		a.NodeName = b.NodeName
	}
	if !reflect.DeepEqual(a, b) {
		return field.ErrorList{field.Forbidden(field.NewPath("spec"), "pod updates may not change fields other than metadata and spec.nodeName (when unset); delete and re-create the pod")}
	}
	return nil
}
