package api

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Limits of an EndpointSlice, as Kubernetes' discovery validation.
const (
	MaxSliceEndpoints = 1000
	MaxSlicePorts     = 20000
	maxSliceAddresses = 100
	maxSliceZoneHints = 8
)

// Labels of EndpointSlices, as Kubernetes.
const (
	LabelServiceName = discoveryv1.LabelServiceName // kubernetes.io/service-name
	LabelManagedBy   = discoveryv1.LabelManagedBy   // endpointslice.kubernetes.io/managed-by
)

var addressTypes = []string{string(discoveryv1.AddressTypeIPv4), string(discoveryv1.AddressTypeIPv6), string(discoveryv1.AddressTypeFQDN)}

// DefaultEndpointSlice fills defaulted fields of an EndpointSlice: each
// port's name ("") and protocol (TCP).
func DefaultEndpointSlice(s *discoveryv1.EndpointSlice) {
	for i := range s.Ports {
		p := &s.Ports[i]
		if p.Name == nil {
			n := ""
			p.Name = &n
		}
		if p.Protocol == nil {
			tcp := corev1.ProtocolTCP
			p.Protocol = &tcp
		}
	}
}

// ValidateEndpointSlice checks an EndpointSlice as Kubernetes does.
func ValidateEndpointSlice(s *discoveryv1.EndpointSlice) field.ErrorList {
	var errs field.ErrorList
	at := field.NewPath("addressType")
	switch s.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN:
	case "":
		errs = append(errs, field.Required(at, ""))
	default:
		errs = append(errs, field.NotSupported(at, s.AddressType, addressTypes))
	}

	ep := field.NewPath("endpoints")
	if len(s.Endpoints) > MaxSliceEndpoints {
		errs = append(errs, field.TooMany(ep, len(s.Endpoints), MaxSliceEndpoints))
	}
	for i := range s.Endpoints {
		e := &s.Endpoints[i]
		p := ep.Index(i)
		ap := p.Child("addresses")
		switch {
		case len(e.Addresses) == 0:
			errs = append(errs, field.Required(ap, "must contain at least 1 address"))
		case len(e.Addresses) > maxSliceAddresses:
			errs = append(errs, field.TooMany(ap, len(e.Addresses), maxSliceAddresses))
		}
		for j, a := range e.Addresses {
			errs = append(errs, validateSliceAddress(s.AddressType, a, ap.Index(j))...)
		}
		if e.NodeName != nil {
			for _, m := range utilvalidation.IsDNS1123Subdomain(*e.NodeName) {
				errs = append(errs, field.Invalid(p.Child("nodeName"), *e.NodeName, m))
			}
		}
		if e.Hostname != nil {
			for _, m := range utilvalidation.IsDNS1123Label(*e.Hostname) {
				errs = append(errs, field.Invalid(p.Child("hostname"), *e.Hostname, m))
			}
		}
		if e.Zone != nil {
			for _, m := range utilvalidation.IsValidLabelValue(*e.Zone) {
				errs = append(errs, field.Invalid(p.Child("zone"), *e.Zone, m))
			}
		}
		if r := e.TargetRef; r != nil {
			rp := p.Child("targetRef")
			if r.Name == "" {
				errs = append(errs, field.Required(rp.Child("name"), ""))
			}
			if r.Namespace != "" {
				for _, m := range utilvalidation.IsDNS1123Label(r.Namespace) {
					errs = append(errs, field.Invalid(rp.Child("namespace"), r.Namespace, m))
				}
			}
		}
		if h := e.Hints; h != nil {
			zp := p.Child("hints", "forZones")
			if len(h.ForZones) > maxSliceZoneHints {
				errs = append(errs, field.TooMany(zp, len(h.ForZones), maxSliceZoneHints))
			}
			zones := sets.New[string]()
			for j, z := range h.ForZones {
				if zones.Has(z.Name) {
					errs = append(errs, field.Duplicate(zp.Index(j), z.Name))
				}
				zones.Insert(z.Name)
				for _, m := range utilvalidation.IsValidLabelValue(z.Name) {
					errs = append(errs, field.Invalid(zp.Index(j).Child("name"), z.Name, m))
				}
			}
		}
	}

	pp := field.NewPath("ports")
	if len(s.Ports) > MaxSlicePorts {
		errs = append(errs, field.TooMany(pp, len(s.Ports), MaxSlicePorts))
	}
	names := sets.New[string]()
	for i, port := range s.Ports {
		p := pp.Index(i)
		name := ""
		if port.Name != nil {
			name = *port.Name
		}
		if name != "" {
			for _, m := range utilvalidation.IsDNS1123Label(name) {
				errs = append(errs, field.Invalid(p.Child("name"), name, m))
			}
		}
		if names.Has(name) {
			errs = append(errs, field.Duplicate(p.Child("name"), name))
		}
		names.Insert(name)
		switch {
		case port.Protocol == nil:
			errs = append(errs, field.Required(p.Child("protocol"), ""))
		case !serviceProtocols.Has(*port.Protocol):
			errs = append(errs, field.NotSupported(p.Child("protocol"), *port.Protocol, []string{"TCP", "UDP", "SCTP"}))
		}
		if port.Port != nil {
			for _, m := range utilvalidation.IsValidPortNum(int(*port.Port)) {
				errs = append(errs, field.Invalid(p.Child("port"), *port.Port, m))
			}
		}
		if port.AppProtocol != nil {
			for _, m := range utilvalidation.IsQualifiedName(*port.AppProtocol) {
				errs = append(errs, field.Invalid(p.Child("appProtocol"), *port.AppProtocol, m))
			}
		}
	}
	return errs
}

func validateSliceAddress(t discoveryv1.AddressType, a string, p *field.Path) field.ErrorList {
	switch t {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
		ip, err := netip.ParseAddr(a)
		if err != nil || ip.Zone() != "" {
			return field.ErrorList{field.Invalid(p, a, fmt.Sprintf("must be a valid %s address", t))}
		}
		if (t == discoveryv1.AddressTypeIPv4) != ip.Is4() {
			return field.ErrorList{field.Invalid(p, a, fmt.Sprintf("must be a valid %s address", t))}
		}
		return validateNonSpecialIP(a, p)
	case discoveryv1.AddressTypeFQDN:
		var errs field.ErrorList
		for _, m := range utilvalidation.IsDNS1123Subdomain(a) {
			errs = append(errs, field.Invalid(p, a, m))
		}
		return errs
	}
	return nil
}

// validateEndpointSliceUpdate: addressType is immutable.
func validateEndpointSliceUpdate(old, new *discoveryv1.EndpointSlice) field.ErrorList {
	if old.AddressType != new.AddressType {
		return field.ErrorList{field.Invalid(field.NewPath("addressType"), new.AddressType, "field is immutable")}
	}
	return nil
}
