package store

import (
	"context"

	"github.com/podnet/podnet/internal/api"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TxnHook adds a kind's side effects to the etcd transaction of its writes,
// so that they commit or fail with the object itself: a Service's cluster
// IP and nodePort claims (service.go). Each function may be nil.
type TxnHook struct {
	// PrepareUpdate runs on an update (and an apply) before defaulting and
	// validation, with the stored object: it keeps values the server
	// allocated that the new object leaves unset, as the API server does.
	PrepareUpdate func(old, new api.Object)
	// Create returns the extra conditions and operations of o's create
	// transaction; it may fill fields of o (allocated values). It is called
	// again, on a fresh copy, if the transaction fails on its conditions.
	Create func(ctx context.Context, s *Store, o api.Object) (TxnParts, error)
	// Update is Create for an update of old (stored) to new.
	Update func(ctx context.Context, s *Store, old, new api.Object) (TxnParts, error)
	// Delete returns what the deletion of old (stored) also does.
	Delete func(ctx context.Context, s *Store, old api.Object) (TxnParts, error)
}

// TxnParts are a hook's additions to a transaction.
type TxnParts struct {
	Cmps []clientv3.Cmp
	Ops  []clientv3.Op
}

var hooks = map[string]TxnHook{}

// RegisterTxnHook sets the hook of a kind (by its Kind name, "Service").
// Call it from an init function.
func RegisterTxnHook(kind string, h TxnHook) { hooks[kind] = h }

func hookOf(k *api.Kind) TxnHook { return hooks[k.GVK.Kind] }
