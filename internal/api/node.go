package api

import (
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Node annotations podnet uses.
const (
	// AnnotationBackendData carries a node's overlay data as JSON, e.g. its
	// VXLAN VTEP MAC: {"vtepMAC":"..."}.
	AnnotationBackendData = "podnet.io/backend-data"
	// AnnotationBackend names the overlay backend a node's agent runs.
	AnnotationBackend = "podnet.io/backend"
	// AnnotationStateDir is where the node's agent keeps pods' state and
	// logs (for `podnet logs` on the same machine).
	AnnotationStateDir = "podnet.io/state-dir"
	// AnnotationNetNS is the named network namespace a node runs in, when
	// it is one (podnet cluster create); `podnet exec` of a host-network
	// pod enters it.
	AnnotationNetNS = "podnet.io/netns"
)

// NodeInternalIP returns the node's InternalIP address, or "".
func NodeInternalIP(n *corev1.Node) string {
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			return a.Address
		}
	}
	return ""
}

// NodeReady reports the node's Ready condition status ("" if unknown).
func NodeReady(n *corev1.Node) corev1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status
		}
	}
	return ""
}

// ValidateNode checks the fields podnet reads.
func ValidateNode(n *corev1.Node) field.ErrorList {
	var errs field.ErrorList
	sp := field.NewPath("spec")
	if n.Spec.PodCIDR != "" {
		if _, err := netip.ParsePrefix(n.Spec.PodCIDR); err != nil {
			errs = append(errs, field.Invalid(sp.Child("podCIDR"), n.Spec.PodCIDR, "must be a CIDR"))
		}
	}
	for i, c := range n.Spec.PodCIDRs {
		if _, err := netip.ParsePrefix(c); err != nil {
			errs = append(errs, field.Invalid(sp.Child("podCIDRs").Index(i), c, "must be a CIDR"))
		}
	}
	for i, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
			if _, err := netip.ParseAddr(a.Address); err != nil {
				errs = append(errs, field.Invalid(field.NewPath("status", "addresses").Index(i).Child("address"), a.Address, "must be an IP address"))
			}
		}
	}
	return errs
}

// validateNodeUpdate: a node's pod CIDR, once set, changes only by
// deleting the node (as in Kubernetes) or by being cleared first (the node
// lifecycle controller reclaims a dead node's range that way).
func validateNodeUpdate(old, new *corev1.Node) field.ErrorList {
	if old.Spec.PodCIDR != "" && new.Spec.PodCIDR != "" && new.Spec.PodCIDR != old.Spec.PodCIDR {
		return field.ErrorList{field.Forbidden(field.NewPath("spec", "podCIDR"), "may not change once set; delete the node to release it")}
	}
	return nil
}
