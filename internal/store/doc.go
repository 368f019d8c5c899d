// Package store keeps podnet's objects in etcd and starts the embedded etcd.
//
// Key layout (values are the objects' JSON, apiVersion and kind included,
// resourceVersion left out):
//
//	/podnet/registry/<resource>/<namespace>/<name>   namespaced kinds (pods)
//	/podnet/registry/<resource>/<name>               cluster kinds (namespaces)
//
// An object's resourceVersion is the etcd mod revision of its key. Updates
// carry it as a precondition, checked in an etcd transaction: a stale write
// is refused with a Conflict error, never lost. Errors are the Kubernetes API
// errors (k8s.io/apimachinery/pkg/api/errors), so callers test them with
// apierrors.IsNotFound and friends and users read kubectl's wording.
package store
