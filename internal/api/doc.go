// Package api is the one place that knows which objects podnet stores and
// what makes them valid. The CLI and the agents share it.
//
// Objects are the Kubernetes API types from k8s.io/api. This package decodes
// manifests strictly (an unknown field is an error that names its path),
// fills in defaults the way the Kubernetes API server does for the fields
// podnet uses, and validates them, returning field paths such as
// `spec.containers[0].ports[1].hostPort`.
//
// Kinds are registered in a table (kinds.go): Namespace, Pod, Node,
// ConfigMap, Secret, Service, EndpointSlice, Deployment, ReplicaSet,
// Ingress and IngressClass. A row carries the kind's defaulting,
// validation (Kubernetes' rules, per kind in service.go, endpointslice.go,
// deployment.go, ingress.go, secret.go; pod templates share the pod spec
// checks of validate.go), printing columns, write warnings and, for
// Secrets, the redacted form `get` prints. Adding a kind means adding a
// row plus its functions.
package api
