package api

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Probe and lifecycle-hook defaults and validation, as the Kubernetes API
// server has them (gRPC probes and postStart hooks are not supported).

func defaultProbe(p *corev1.Probe) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = 1
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = 10
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = 1
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = 3
	}
	defaultHTTPGet(p.HTTPGet)
}

func defaultHTTPGet(h *corev1.HTTPGetAction) {
	if h == nil {
		return
	}
	if h.Path == "" {
		h.Path = "/"
	}
	if h.Scheme == "" {
		h.Scheme = corev1.URISchemeHTTP
	}
}

func defaultContainerProbes(c *corev1.Container) {
	defaultProbe(c.ReadinessProbe)
	defaultProbe(c.LivenessProbe)
	defaultProbe(c.StartupProbe)
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		defaultHTTPGet(c.Lifecycle.PreStop.HTTPGet)
	}
}

// validateContainerProbes checks a container's probes and lifecycle hooks.
func validateContainerProbes(c *corev1.Container, cp *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateProbe(c.ReadinessProbe, c, cp.Child("readinessProbe"), false)...)
	errs = append(errs, validateProbe(c.LivenessProbe, c, cp.Child("livenessProbe"), true)...)
	errs = append(errs, validateProbe(c.StartupProbe, c, cp.Child("startupProbe"), true)...)
	if lc := c.Lifecycle; lc != nil {
		lp := cp.Child("lifecycle")
		if lc.PostStart != nil {
			errs = append(errs, field.Forbidden(lp.Child("postStart"), "not supported by podnet"))
		}
		if h := lc.PreStop; h != nil {
			pp := lp.Child("preStop")
			n := 0
			if h.Exec != nil {
				n++
				errs = append(errs, validateExec(h.Exec, pp.Child("exec"))...)
			}
			if h.HTTPGet != nil {
				n++
				errs = append(errs, validateHTTPGet(h.HTTPGet, c, pp.Child("httpGet"))...)
			}
			if h.TCPSocket != nil {
				n++
				errs = append(errs, field.Forbidden(pp.Child("tcpSocket"), "is not a lifecycle handler (deprecated in Kubernetes, which ignores it)"))
			}
			if h.Sleep != nil {
				n++
				if h.Sleep.Seconds < 0 {
					errs = append(errs, field.Invalid(pp.Child("sleep", "seconds"), h.Sleep.Seconds, "must be greater than or equal to 0"))
				}
			}
			errs = append(errs, handlerCount(n, pp)...)
		}
	}
	return errs
}

func handlerCount(n int, p *field.Path) field.ErrorList {
	switch {
	case n == 0:
		return field.ErrorList{field.Required(p, "must specify a handler type")}
	case n > 1:
		return field.ErrorList{field.Forbidden(p, "may not specify more than 1 handler type")}
	}
	return nil
}

func validateProbe(p *corev1.Probe, c *corev1.Container, pp *field.Path, restarts bool) field.ErrorList {
	if p == nil {
		return nil
	}
	var errs field.ErrorList
	n := 0
	if p.Exec != nil {
		n++
		errs = append(errs, validateExec(p.Exec, pp.Child("exec"))...)
	}
	if p.HTTPGet != nil {
		n++
		errs = append(errs, validateHTTPGet(p.HTTPGet, c, pp.Child("httpGet"))...)
	}
	if p.TCPSocket != nil {
		n++
		errs = append(errs, validatePortRef(p.TCPSocket.Port, c, pp.Child("tcpSocket", "port"))...)
	}
	if p.GRPC != nil {
		n++
		errs = append(errs, field.Forbidden(pp.Child("grpc"), "not supported by podnet"))
	}
	errs = append(errs, handlerCount(n, pp)...)
	for _, f := range []struct {
		name string
		v    int32
		min  int32
	}{
		{"initialDelaySeconds", p.InitialDelaySeconds, 0},
		{"timeoutSeconds", p.TimeoutSeconds, 1},
		{"periodSeconds", p.PeriodSeconds, 1},
		{"successThreshold", p.SuccessThreshold, 1},
		{"failureThreshold", p.FailureThreshold, 1},
	} {
		if f.v < f.min {
			errs = append(errs, field.Invalid(pp.Child(f.name), f.v, "must be greater than or equal to "+itoa(int(f.min))))
		}
	}
	if restarts && p.SuccessThreshold != 1 {
		errs = append(errs, field.Invalid(pp.Child("successThreshold"), p.SuccessThreshold, "must be 1"))
	}
	if g := p.TerminationGracePeriodSeconds; g != nil {
		switch {
		case !restarts:
			errs = append(errs, field.Invalid(pp.Child("terminationGracePeriodSeconds"), *g, "must not be set for readinessProbes"))
		case *g <= 0:
			errs = append(errs, field.Invalid(pp.Child("terminationGracePeriodSeconds"), *g, "must be greater than 0"))
		}
	}
	return errs
}

func validateExec(e *corev1.ExecAction, p *field.Path) field.ErrorList {
	if len(e.Command) == 0 {
		return field.ErrorList{field.Required(p.Child("command"), "")}
	}
	return nil
}

func validateHTTPGet(h *corev1.HTTPGetAction, c *corev1.Container, p *field.Path) field.ErrorList {
	errs := validatePortRef(h.Port, c, p.Child("port"))
	if h.Scheme != corev1.URISchemeHTTP && h.Scheme != corev1.URISchemeHTTPS {
		errs = append(errs, field.NotSupported(p.Child("scheme"), h.Scheme, []string{"HTTP", "HTTPS"}))
	}
	if h.Path != "" && h.Path[0] != '/' {
		errs = append(errs, field.Invalid(p.Child("path"), h.Path, "must start with /"))
	}
	for i, hd := range h.HTTPHeaders {
		for _, m := range utilvalidation.IsHTTPHeaderName(hd.Name) {
			errs = append(errs, field.Invalid(p.Child("httpHeaders").Index(i).Child("name"), hd.Name, m))
		}
	}
	return errs
}

// validatePortRef checks a port number, or a name that must be one of the
// container's ports (podnet resolves it against them, as the kubelet).
func validatePortRef(port intstr.IntOrString, c *corev1.Container, p *field.Path) field.ErrorList {
	if port.Type == intstr.Int {
		var errs field.ErrorList
		for _, m := range utilvalidation.IsValidPortNum(port.IntValue()) {
			errs = append(errs, field.Invalid(p, port.IntValue(), m))
		}
		return errs
	}
	if ms := utilvalidation.IsValidPortName(port.StrVal); len(ms) > 0 {
		var errs field.ErrorList
		for _, m := range ms {
			errs = append(errs, field.Invalid(p, port.StrVal, m))
		}
		return errs
	}
	for _, cp := range c.Ports {
		if cp.Name == port.StrVal {
			return nil
		}
	}
	return field.ErrorList{field.Invalid(p, port.StrVal, "must be the name of one of the container's ports")}
}

func itoa(i int) string { return strconv.Itoa(i) }
