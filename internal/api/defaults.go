package api

import (
	corev1 "k8s.io/api/core/v1"
)

const (
	// DefaultNamespace is where namespaced objects go without one.
	DefaultNamespace = "default"
	// AnnotationNetwork selects a pod's network mode: "bridge" (the
	// default) or "none" (loopback only). hostNetwork: true is host mode.
	AnnotationNetwork = "podnet.io/network"
	NetworkBridge     = "bridge"
	NetworkNone       = "none"
	NetworkHost       = "host"
)

// SystemNamespaces exist in every cluster; the server creates them.
var SystemNamespaces = []string{"default", "kube-system", "kube-public"}

// NetworkMode returns a pod's network mode: bridge, host or none.
func NetworkMode(p *corev1.Pod) string {
	if p.Spec.HostNetwork {
		return NetworkHost
	}
	if p.Annotations[AnnotationNetwork] == NetworkNone {
		return NetworkNone
	}
	return NetworkBridge
}

func defaultNamespace(ns *corev1.Namespace) {
	if ns.Status.Phase == "" {
		ns.Status.Phase = corev1.NamespaceActive
	}
}

// DefaultPod fills the fields the Kubernetes API server would default and
// podnet reads.
func DefaultPod(p *corev1.Pod) {
	defaultPodSpec(&p.Spec)
	if p.Status.Phase == "" {
		p.Status.Phase = corev1.PodPending
	}
}

// defaultPodSpec fills a pod spec's defaults (of a pod or a pod template).
func defaultPodSpec(s *corev1.PodSpec) {
	if s.RestartPolicy == "" {
		s.RestartPolicy = corev1.RestartPolicyAlways
	}
	if s.DNSPolicy == "" {
		s.DNSPolicy = corev1.DNSClusterFirst
	}
	if s.TerminationGracePeriodSeconds == nil {
		g := int64(corev1.DefaultTerminationGracePeriodSeconds)
		s.TerminationGracePeriodSeconds = &g
	}
	if s.SchedulerName == "" {
		s.SchedulerName = corev1.DefaultSchedulerName
	}
	for i := range s.Containers {
		c := &s.Containers[i]
		for j := range c.Ports {
			if c.Ports[j].Protocol == "" {
				c.Ports[j].Protocol = corev1.ProtocolTCP
			}
			if s.HostNetwork && c.Ports[j].HostPort == 0 {
				c.Ports[j].HostPort = c.Ports[j].ContainerPort
			}
		}
		if c.TerminationMessagePath == "" {
			c.TerminationMessagePath = corev1.TerminationMessagePathDefault
		}
		if c.ImagePullPolicy == "" {
			c.ImagePullPolicy = corev1.PullIfNotPresent
		}
		defaultContainerProbes(c)
	}
}
