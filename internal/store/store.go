package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"reflect"
	"strconv"
	"time"

	"github.com/podnet/podnet/internal/api"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
)

// Prefix is the root of every key podnet writes.
const Prefix = "/podnet/registry/"

// Store reads and writes objects in etcd.
type Store struct {
	c *clientv3.Client
}

// New wraps an etcd client.
func New(c *clientv3.Client) *Store { return &Store{c: c} }

// Client returns the underlying etcd client (for leases and elections).
func (s *Store) Client() *clientv3.Client { return s.c }

// Key returns the etcd key of an object.
func Key(k *api.Kind, namespace, name string) string {
	if k.Namespaced {
		return Prefix + path.Join(k.Resource, namespace, name)
	}
	return Prefix + path.Join(k.Resource, name)
}

// ListKey returns the key prefix of a kind, within one namespace if given.
func ListKey(k *api.Kind, namespace string) string {
	if k.Namespaced && namespace != "" {
		return Prefix + k.Resource + "/" + namespace + "/"
	}
	return Prefix + k.Resource + "/"
}

func encode(o api.Object) ([]byte, error) {
	api.SetTypeMeta(o)
	rv := o.GetResourceVersion()
	o.SetResourceVersion("")
	defer o.SetResourceVersion(rv)
	return json.Marshal(o)
}

func decode(k *api.Kind, kv *mvccpb.KeyValue) (api.Object, error) {
	o := k.New()
	if err := json.Unmarshal(kv.Value, o); err != nil {
		return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	o.SetResourceVersion(strconv.FormatInt(kv.ModRevision, 10))
	api.SetTypeMeta(o)
	return o, nil
}

func nsKind() *api.Kind {
	k, _ := api.KindOf(&corev1.Namespace{})
	return k
}

// Create stores a new object. It defaults and validates it, sets uid,
// creationTimestamp and generation 1, and fails with AlreadyExists if the
// name is taken, NotFound if its namespace does not exist or Forbidden if
// the namespace is terminating. A kind's TxnHook (a Service's cluster IP
// and nodePorts) commits in the same transaction. o is updated in place.
func (s *Store) Create(ctx context.Context, o api.Object) error {
	k, err := api.KindOf(o)
	if err != nil {
		return err
	}
	if err := api.Prepare(o); err != nil {
		return apierrors.NewBadRequest(err.Error())
	}
	if o.GetResourceVersion() != "" {
		return apierrors.NewBadRequest(fmt.Sprintf("%s %q: metadata.resourceVersion must not be set on create", k.GVK.Kind, o.GetName()))
	}
	if o.GetUID() == "" {
		o.SetUID(uuid.NewUUID())
	}
	o.SetCreationTimestamp(metav1.NewTime(time.Now().UTC().Truncate(time.Second)))
	o.SetGeneration(1)
	key := Key(k, o.GetNamespace(), o.GetName())
	hook := hookOf(k)
	for attempt := 0; ; attempt++ {
		obj := o
		var parts TxnParts
		if hook.Create != nil {
			obj = o.DeepCopyObject().(api.Object)
			if parts, err = hook.Create(ctx, s, obj); err != nil {
				if g, gerr := s.c.Get(ctx, key, clientv3.WithCountOnly()); gerr == nil && g.Count > 0 {
					return apierrors.NewAlreadyExists(k.GroupResource(), o.GetName())
				}
				return err
			}
		}
		val, err := encode(obj)
		if err != nil {
			return err
		}
		cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
		var nsKey string
		if k.Namespaced {
			nsKey = Key(nsKind(), "", o.GetNamespace())
			cmps = append(cmps,
				clientv3.Compare(clientv3.CreateRevision(nsKey), ">", 0),
				clientv3.Compare(clientv3.CreateRevision(terminatingKey(o.GetNamespace())), "=", 0))
		}
		cmps = append(cmps, parts.Cmps...)
		resp, err := s.c.Txn(ctx).If(cmps...).Then(append([]clientv3.Op{clientv3.OpPut(key, string(val))}, parts.Ops...)...).Commit()
		if err != nil {
			return fmt.Errorf("create %s %s/%s: %w", k.Resource, o.GetNamespace(), o.GetName(), err)
		}
		if resp.Succeeded {
			if obj != o {
				reflect.ValueOf(o).Elem().Set(reflect.ValueOf(obj).Elem())
			}
			o.SetResourceVersion(strconv.FormatInt(resp.Header.Revision, 10))
			return nil
		}
		ops := []clientv3.Op{clientv3.OpGet(key, clientv3.WithCountOnly())}
		if k.Namespaced {
			ops = append(ops, clientv3.OpGet(nsKey, clientv3.WithCountOnly()), clientv3.OpGet(terminatingKey(o.GetNamespace()), clientv3.WithCountOnly()))
		}
		why, err := s.c.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("create %s %s/%s: %w", k.Resource, o.GetNamespace(), o.GetName(), err)
		}
		count := func(i int) int64 { return why.Responses[i].GetResponseRange().Count }
		switch {
		case count(0) > 0:
			return apierrors.NewAlreadyExists(k.GroupResource(), o.GetName())
		case k.Namespaced && count(1) == 0:
			return apierrors.NewNotFound(nsKind().GroupResource(), o.GetNamespace())
		case k.Namespaced && count(2) > 0:
			return apierrors.NewForbidden(k.GroupResource(), o.GetName(), fmt.Errorf("unable to create new content in namespace %s because it is being terminated", o.GetNamespace()))
		}
		// A claim of the hook was taken meanwhile: allocate again.
		if attempt >= 20 {
			return apierrors.NewConflict(k.GroupResource(), o.GetName(), errors.New("allocation kept conflicting; try again"))
		}
	}
}

// Get reads one object.
func (s *Store) Get(ctx context.Context, k *api.Kind, namespace, name string) (api.Object, error) {
	resp, err := s.c.Get(ctx, Key(k, namespace, name))
	if err != nil {
		return nil, fmt.Errorf("get %s %s: %w", k.Resource, name, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, apierrors.NewNotFound(k.GroupResource(), name)
	}
	return decode(k, resp.Kvs[0])
}

// List returns the objects of a kind (in one namespace, or all if "") and
// the store revision they were read at, for a following Watch.
func (s *Store) List(ctx context.Context, k *api.Kind, namespace string) ([]api.Object, int64, error) {
	resp, err := s.c.Get(ctx, ListKey(k, namespace), clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("list %s: %w", k.Resource, err)
	}
	out := make([]api.Object, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		o, err := decode(k, kv)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, o)
	}
	return out, resp.Header.Revision, nil
}

// Update replaces an object. o.ResourceVersion is required and must be the
// current one; otherwise the write is refused with a Conflict error. uid and
// creationTimestamp are kept from the stored object.
func (s *Store) Update(ctx context.Context, o api.Object) error {
	k, err := api.KindOf(o)
	if err != nil {
		return err
	}
	if o.GetResourceVersion() == "" {
		return apierrors.NewBadRequest(fmt.Sprintf("%s %q: metadata.resourceVersion must be set on update", k.GVK.Kind, o.GetName()))
	}
	rv, err := strconv.ParseInt(o.GetResourceVersion(), 10, 64)
	if err != nil {
		return apierrors.NewBadRequest(fmt.Sprintf("%s %q: metadata.resourceVersion: invalid value %q", k.GVK.Kind, o.GetName(), o.GetResourceVersion()))
	}
	cur, err := s.Get(ctx, k, o.GetNamespace(), o.GetName())
	if err != nil {
		return err
	}
	if cur.GetResourceVersion() != o.GetResourceVersion() {
		return conflict(k, o.GetName())
	}
	hook := hookOf(k)
	if hook.PrepareUpdate != nil {
		hook.PrepareUpdate(cur, o)
	}
	if err := api.Prepare(o); err != nil {
		return apierrors.NewBadRequest(err.Error())
	}
	if k.ValidateUpdate != nil {
		if err := api.Invalid(k, o.GetName(), k.ValidateUpdate(cur, o)); err != nil {
			return apierrors.NewBadRequest(err.Error())
		}
	}
	if o.GetUID() != "" && o.GetUID() != cur.GetUID() {
		return apierrors.NewBadRequest(fmt.Sprintf("%s %q: metadata.uid: Invalid value: %q: field is immutable", k.GVK.Kind, o.GetName(), o.GetUID()))
	}
	o.SetUID(cur.GetUID())
	o.SetCreationTimestamp(cur.GetCreationTimestamp())
	if cur.GetDeletionTimestamp() != nil && o.GetDeletionTimestamp() == nil {
		o.SetDeletionTimestamp(cur.GetDeletionTimestamp())
		o.SetDeletionGracePeriodSeconds(cur.GetDeletionGracePeriodSeconds())
	}
	o.SetGeneration(nextGeneration(cur, o))
	key := Key(k, o.GetNamespace(), o.GetName())
	for attempt := 0; ; attempt++ {
		obj := o
		var parts TxnParts
		if hook.Update != nil {
			obj = o.DeepCopyObject().(api.Object)
			if parts, err = hook.Update(ctx, s, cur, obj); err != nil {
				return err
			}
		}
		val, err := encode(obj)
		if err != nil {
			return err
		}
		cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(key), "=", rv)}, parts.Cmps...)
		resp, err := s.c.Txn(ctx).If(cmps...).Then(append([]clientv3.Op{clientv3.OpPut(key, string(val))}, parts.Ops...)...).Commit()
		if err != nil {
			return fmt.Errorf("update %s %s: %w", k.Resource, o.GetName(), err)
		}
		if resp.Succeeded {
			if obj != o {
				reflect.ValueOf(o).Elem().Set(reflect.ValueOf(obj).Elem())
			}
			o.SetResourceVersion(strconv.FormatInt(resp.Header.Revision, 10))
			return nil
		}
		if len(parts.Cmps) == 0 || attempt >= 20 {
			return conflict(k, o.GetName())
		}
		// Did the object change, or was a claim taken meanwhile?
		g, err := s.c.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("update %s %s: %w", k.Resource, o.GetName(), err)
		}
		if len(g.Kvs) == 0 {
			return apierrors.NewNotFound(k.GroupResource(), o.GetName())
		}
		if g.Kvs[0].ModRevision != rv {
			return conflict(k, o.GetName())
		}
	}
}

// nextGeneration is cur's generation, plus one if the update changes the
// spec (status-only and metadata-only writes keep it).
func nextGeneration(cur, o api.Object) int64 {
	g := cur.GetGeneration()
	if g == 0 {
		g = 1
	}
	if !bytes.Equal(specOf(cur), specOf(o)) {
		g++
	}
	return g
}

// specOf returns the JSON of an object's spec (nil for kinds without one).
func specOf(o api.Object) []byte {
	b, err := json.Marshal(o)
	if err != nil {
		return nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	return m["spec"]
}

func conflict(k *api.Kind, name string) error {
	return apierrors.NewConflict(k.GroupResource(), name, errors.New("the object has been modified; please apply your changes to the latest version and try again"))
}

// Mutate reads an object, applies fn and writes the result, retrying on
// conflicts. fn may return an error to abort. It returns the stored object.
func (s *Store) Mutate(ctx context.Context, k *api.Kind, namespace, name string, fn func(api.Object) error) (api.Object, error) {
	for attempt := 0; ; attempt++ {
		o, err := s.Get(ctx, k, namespace, name)
		if err != nil {
			return nil, err
		}
		before := o.DeepCopyObject()
		if err := fn(o); err != nil {
			return nil, err
		}
		if reflect.DeepEqual(before, o) {
			return o, nil
		}
		err = s.Update(ctx, o)
		if err == nil {
			return o, nil
		}
		if !apierrors.IsConflict(err) || attempt >= 20 {
			return nil, err
		}
	}
}

// ApplyResult says what Apply did, in kubectl's words.
type ApplyResult string

const (
	Created    ApplyResult = "created"
	Configured ApplyResult = "configured"
	Unchanged  ApplyResult = "unchanged"
)

// Apply creates o or updates the stored object to match it. If o carries a
// resourceVersion it is a precondition (a stale one is a Conflict);
// otherwise the current one is used. Status is kept from the stored object
// (a Service's status.loadBalancer, a Deployment's counts), and so is the
// revision annotation of Deployments and ReplicaSets.
func (s *Store) Apply(ctx context.Context, o api.Object) (ApplyResult, error) {
	k, err := api.KindOf(o)
	if err != nil {
		return "", err
	}
	for attempt := 0; ; attempt++ {
		cur, err := s.Get(ctx, k, o.GetNamespace(), o.GetName())
		if apierrors.IsNotFound(err) {
			if o.GetResourceVersion() != "" {
				return "", err
			}
			if err := s.Create(ctx, o); err != nil {
				if apierrors.IsAlreadyExists(err) && attempt < 5 {
					continue
				}
				return "", err
			}
			return Created, nil
		}
		if err != nil {
			return "", err
		}
		want := o.DeepCopyObject().(api.Object)
		explicitRV := want.GetResourceVersion() != ""
		if explicitRV && want.GetResourceVersion() != cur.GetResourceVersion() {
			return "", conflict(k, o.GetName())
		}
		want.SetResourceVersion(cur.GetResourceVersion())
		want.SetUID(cur.GetUID())
		want.SetCreationTimestamp(cur.GetCreationTimestamp())
		want.SetGeneration(cur.GetGeneration())
		copyStatus(cur, want)
		if h := hookOf(k); h.PrepareUpdate != nil {
			h.PrepareUpdate(cur, want)
		}
		if err := api.Prepare(want); err != nil {
			return "", apierrors.NewBadRequest(err.Error())
		}
		if sameObject(cur, want) {
			return Unchanged, nil
		}
		err = s.Update(ctx, want)
		if apierrors.IsConflict(err) && !explicitRV && attempt < 10 {
			continue
		}
		if err != nil {
			return "", err
		}
		return Configured, nil
	}
}

func copyStatus(from, to api.Object) {
	switch t := to.(type) {
	case *corev1.Pod:
		t.Status = from.(*corev1.Pod).Status
		if t.Spec.NodeName == "" {
			t.Spec.NodeName = from.(*corev1.Pod).Spec.NodeName
		}
	case *corev1.Namespace:
		t.Status = from.(*corev1.Namespace).Status
	case *corev1.Service:
		t.Status = from.(*corev1.Service).Status
	case *appsv1.Deployment:
		t.Status = from.(*appsv1.Deployment).Status
		keepAnnotation(from, to, api.AnnotationRevision)
	case *appsv1.ReplicaSet:
		t.Status = from.(*appsv1.ReplicaSet).Status
		keepAnnotation(from, to, api.AnnotationRevision)
	case *networkingv1.Ingress:
		t.Status = from.(*networkingv1.Ingress).Status
		keepAnnotation(from, to, api.AnnotationIngressProblems)
	}
}

// keepAnnotation carries an annotation the controllers own (a revision)
// over to an applied manifest that does not set it, as kubectl apply
// leaves annotations alone that it did not apply itself.
func keepAnnotation(from, to api.Object, key string) {
	v, ok := from.GetAnnotations()[key]
	if !ok {
		return
	}
	if _, set := to.GetAnnotations()[key]; set {
		return
	}
	a := map[string]string{}
	for k, x := range to.GetAnnotations() {
		a[k] = x
	}
	a[key] = v
	to.SetAnnotations(a)
}

func sameObject(a, b api.Object) bool {
	ja, err1 := encode(a.DeepCopyObject().(api.Object))
	jb, err2 := encode(b.DeepCopyObject().(api.Object))
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// DeleteOptions control Delete.
type DeleteOptions struct {
	// Force removes a pod at once instead of asking its node to stop it.
	Force bool
	// UID, if set, is a precondition: only that incarnation is deleted.
	UID types.UID
}

// Delete removes an object. A pod bound to a node is deleted gracefully:
// it is marked with a deletionTimestamp, and its node's agent removes the
// key once the pod's processes and network are gone. A namespace turns
// Terminating (nothing new can be created in it); the namespace controller
// deletes its content and then the namespace (RemoveNamespace). A kind's
// TxnHook (a Service's claims) commits in the same transaction. It returns
// true if the key is gone, false if the deletion is pending.
func (s *Store) Delete(ctx context.Context, k *api.Kind, namespace, name string, opts DeleteOptions) (bool, error) {
	key := Key(k, namespace, name)
	for attempt := 0; ; attempt++ {
		cur, err := s.Get(ctx, k, namespace, name)
		if err != nil {
			return false, err
		}
		if opts.UID != "" && cur.GetUID() != opts.UID {
			return false, apierrors.NewConflict(k.GroupResource(), name, fmt.Errorf("precondition failed: uid %s, found %s", opts.UID, cur.GetUID()))
		}
		rv, _ := strconv.ParseInt(cur.GetResourceVersion(), 10, 64)
		unchanged := clientv3.Compare(clientv3.ModRevision(key), "=", rv)
		if ns, ok := cur.(*corev1.Namespace); ok {
			if ns.DeletionTimestamp != nil && ns.Status.Phase == corev1.NamespaceTerminating {
				return false, nil
			}
			now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
			ns.DeletionTimestamp = &now
			ns.Status.Phase = corev1.NamespaceTerminating
			val, err := encode(ns)
			if err != nil {
				return false, err
			}
			resp, err := s.c.Txn(ctx).If(unchanged).Then(clientv3.OpPut(key, string(val)), clientv3.OpPut(terminatingKey(name), "")).Commit()
			if err != nil {
				return false, fmt.Errorf("delete %s %s: %w", k.Resource, name, err)
			}
			if resp.Succeeded {
				return false, nil
			}
		} else if p, ok := cur.(*corev1.Pod); ok && !opts.Force && p.Spec.NodeName != "" {
			if p.DeletionTimestamp != nil {
				return false, nil
			}
			now := metav1.NewTime(time.Now().UTC())
			p.DeletionTimestamp = &now
			p.DeletionGracePeriodSeconds = p.Spec.TerminationGracePeriodSeconds
			val, err := encode(p)
			if err != nil {
				return false, err
			}
			resp, err := s.c.Txn(ctx).If(unchanged).Then(clientv3.OpPut(key, string(val))).Commit()
			if err != nil {
				return false, fmt.Errorf("delete %s %s: %w", k.Resource, name, err)
			}
			if resp.Succeeded {
				return false, nil
			}
		} else {
			var parts TxnParts
			if h := hookOf(k); h.Delete != nil {
				if parts, err = h.Delete(ctx, s, cur); err != nil {
					return false, err
				}
			}
			resp, err := s.c.Txn(ctx).If(append([]clientv3.Cmp{unchanged}, parts.Cmps...)...).Then(append([]clientv3.Op{clientv3.OpDelete(key)}, parts.Ops...)...).Commit()
			if err != nil {
				return false, fmt.Errorf("delete %s %s: %w", k.Resource, name, err)
			}
			if resp.Succeeded {
				return true, nil
			}
		}
		if attempt > 10 {
			return false, conflict(k, name)
		}
	}
}

// TerminatingPrefix holds a marker per terminating namespace; creates in
// the namespace check its absence in their transaction.
const TerminatingPrefix = "/podnet/namespaces/terminating/"

func terminatingKey(ns string) string { return TerminatingPrefix + ns }

// RemoveNamespace deletes a terminating namespace once it holds nothing;
// it fails with a Conflict naming what is left otherwise.
func (s *Store) RemoveNamespace(ctx context.Context, name string) error {
	k := nsKind()
	cur, err := s.Get(ctx, k, "", name)
	if err != nil {
		return err
	}
	if cur.GetDeletionTimestamp() == nil {
		return apierrors.NewBadRequest(fmt.Sprintf("namespace %q is not being deleted", name))
	}
	if err := s.checkEmpty(ctx, name); err != nil {
		return err
	}
	rv, _ := strconv.ParseInt(cur.GetResourceVersion(), 10, 64)
	key := Key(k, "", name)
	resp, err := s.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rv)).
		Then(clientv3.OpDelete(key), clientv3.OpDelete(terminatingKey(name))).Commit()
	if err != nil {
		return fmt.Errorf("remove namespace %s: %w", name, err)
	}
	if !resp.Succeeded {
		return conflict(k, name)
	}
	return nil
}

func (s *Store) checkEmpty(ctx context.Context, ns string) error {
	for _, k := range api.Kinds() {
		if !k.Namespaced {
			continue
		}
		resp, err := s.c.Get(ctx, ListKey(k, ns), clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return err
		}
		if resp.Count > 0 {
			return apierrors.NewConflict(nsKind().GroupResource(), ns, fmt.Errorf("namespace still holds %d %s", resp.Count, k.Resource))
		}
	}
	return nil
}

// EventType is what happened to an object.
type EventType string

const (
	Added    EventType = "ADDED"
	Modified EventType = "MODIFIED"
	Deleted  EventType = "DELETED"
)

// Event is one change seen by Watch.
type Event struct {
	Type     EventType
	Object   api.Object // for Deleted, the last stored state
	Revision int64
	Err      error // set on a failed watch; the channel closes after it
}

// Watch streams changes to a kind after revision rev (0: from now). The
// channel closes when ctx ends or the watch fails (after an Err event, e.g.
// when rev was compacted); callers re-list and watch again.
func (s *Store) Watch(ctx context.Context, k *api.Kind, namespace string, rev int64) <-chan Event {
	out := make(chan Event, 64)
	opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithPrevKV()}
	if rev > 0 {
		opts = append(opts, clientv3.WithRev(rev+1))
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	wch := s.c.Watch(wctx, ListKey(k, namespace), opts...)
	go func() {
		defer close(out)
		defer cancel()
		for resp := range wch {
			if err := resp.Err(); err != nil {
				out <- Event{Err: fmt.Errorf("watch %s: %w", k.Resource, err)}
				return
			}
			for _, ev := range resp.Events {
				var e Event
				var err error
				e.Revision = ev.Kv.ModRevision
				switch {
				case ev.Type == clientv3.EventTypeDelete:
					e.Type = Deleted
					if ev.PrevKv != nil {
						e.Object, err = decode(k, ev.PrevKv)
					}
				case ev.IsCreate():
					e.Type = Added
					e.Object, err = decode(k, ev.Kv)
				default:
					e.Type = Modified
					e.Object, err = decode(k, ev.Kv)
				}
				if err != nil {
					e.Err = err
				}
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// EnsureNamespaces creates the given namespaces if missing.
func (s *Store) EnsureNamespaces(ctx context.Context, names ...string) error {
	for _, n := range names {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}
		if err := s.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("ensure namespace %s: %w", n, err)
		}
	}
	return nil
}
