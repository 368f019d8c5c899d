// Package claim is the two-key claim in etcd that lbipam (load-balancer
// addresses) and clusteripam (node pod CIDRs) share: a value's key names
// its owner and the owner's key names the value, both created in one
// transaction only if neither exists, and released together only by the
// owner. Callers build the keys and wrap the errors with their own words.
//
// Service cluster IPs and nodePorts (internal/serviceipam) are not claimed
// this way: each is one key written in the Service's own transaction by
// internal/store.
package claim

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Pair is one claim: ValueKey holds Owner, OwnerKey holds Value.
type Pair struct {
	ValueKey, Owner string
	OwnerKey, Value string
}

// Result is what Create saw.
type Result struct {
	// Created is true when both keys were created.
	Created bool
	// Holder is ValueKey's content and Held is OwnerKey's content, read in
	// the same transaction when Created is false ("" when absent).
	Holder, Held string
}

// Create puts both keys if neither exists. When one does, nothing is
// written and Result says what the keys hold.
func Create(ctx context.Context, c *clientv3.Client, p Pair) (Result, error) {
	resp, err := c.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(p.ValueKey), "=", 0), clientv3.Compare(clientv3.CreateRevision(p.OwnerKey), "=", 0)).
		Then(clientv3.OpPut(p.ValueKey, p.Owner), clientv3.OpPut(p.OwnerKey, p.Value)).
		Else(clientv3.OpGet(p.ValueKey), clientv3.OpGet(p.OwnerKey)).
		Commit()
	if err != nil {
		return Result{}, err
	}
	if resp.Succeeded {
		return Result{Created: true}, nil
	}
	var r Result
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		r.Holder = string(kvs[0].Value)
	}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		r.Held = string(kvs[0].Value)
	}
	return r, nil
}

// Release deletes ValueKey if it holds Owner and every guard holds (extra
// conditions checked in the same transaction), and then OwnerKey if it
// still holds Value. released is false when nothing was deleted.
func Release(ctx context.Context, c *clientv3.Client, p Pair, guards ...clientv3.Cmp) (released bool, err error) {
	resp, err := c.Txn(ctx).
		If(append([]clientv3.Cmp{clientv3.Compare(clientv3.Value(p.ValueKey), "=", p.Owner)}, guards...)...).
		Then(clientv3.OpDelete(p.ValueKey), clientv3.OpTxn(
			[]clientv3.Cmp{clientv3.Compare(clientv3.Value(p.OwnerKey), "=", p.Value)},
			[]clientv3.Op{clientv3.OpDelete(p.OwnerKey)}, nil)).
		Commit()
	if err != nil {
		return false, err
	}
	return resp.Succeeded, nil
}
