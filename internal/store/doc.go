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
//
// metadata.generation is 1 on create and grows by one with every write that
// changes the spec; status-only and metadata-only writes keep it.
//
// A kind may register a TxnHook (hooks.go) whose conditions and operations
// join the transaction of its creates, updates and deletes. Services use it
// (service.go) to claim their cluster IP and nodePorts (internal/serviceipam
// keys) atomically with the Service itself: a Service is never stored
// without its claims, a refused claim stores nothing, a delete frees them.
//
// Deleting a namespace marks it Terminating and writes
// /podnet/namespaces/terminating/<ns>, whose absence every create in that
// namespace checks; the namespace controller empties it and calls
// RemoveNamespace.
package store
