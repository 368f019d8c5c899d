package controller

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
)

// Deployment condition reasons, as Kubernetes.
const (
	ReasonNewRSAvailable       = "NewReplicaSetAvailable"
	ReasonRSUpdated            = "ReplicaSetUpdated"
	ReasonDeadlineExceeded     = "ProgressDeadlineExceeded"
	ReasonPaused               = "DeploymentPaused"
	ReasonMinimumAvailable     = "MinimumReplicasAvailable"
	ReasonMinimumUnavailable   = "MinimumReplicasUnavailable"
	msgMinimumAvailable        = "Deployment has minimum availability."
	msgMinimumUnavailable      = "Deployment does not have minimum availability."
	maxRevisionHistoryDeletion = 50
	maxSurgePods               = 1 << 24
)

var deployKind, _ = api.KindOf(&appsv1.Deployment{})

// Deployments rolls Deployments out through ReplicaSets, as Kubernetes'
// deployment controller:
//
//   - the ReplicaSet of the current template is <deploy>-<hash>, hash a
//     function of the template (and status.collisionCount), also the
//     pod-template-hash label of its selector, template and so its pods;
//     the revision annotation is one more than the highest so far,
//     also when an old template comes back (rollout undo reuses its
//     ReplicaSet);
//   - RollingUpdate: the new ReplicaSet grows while the pods of all
//     ReplicaSets stay within replicas+maxSurge (rounded up), old ones
//     shrink while available pods stay at least replicas-maxUnavailable
//     (rounded down), unavailable old pods first; availability is Ready
//     for minReadySeconds, counted from the pods themselves (not the
//     ReplicaSets' status, which lags), and a ReplicaSet's pods count as
//     max(spec.replicas, pods) until its surplus is deleted;
//   - Recreate: old ReplicaSets go to 0, and the new one is scaled up only
//     once no old pod exists any more;
//   - scaling changes the new ReplicaSet (old ones drain by the rollout
//     rules; there is no proportional scaling of a rollout in flight);
//   - old ReplicaSets with no replicas and no pods beyond
//     revisionHistoryLimit are deleted, oldest revision first;
//   - status: observedGeneration, replicas, updatedReplicas,
//     readyReplicas, availableReplicas, unavailableReplicas, and the
//     conditions Available and Progressing (NewReplicaSetAvailable,
//     ReplicaSetUpdated, ProgressDeadlineExceeded), written on change.
//
// A paused Deployment is not rolled out (no new ReplicaSet, no change to
// old ones); when one ReplicaSet alone has replicas it is still scaled.
type Deployments struct {
	s      *store.Store
	log    *slog.Logger
	resync time.Duration
	now    func() time.Time
}

// NewDeployments returns the Deployment controller.
func NewDeployments(s *store.Store, log *slog.Logger, resync time.Duration) *Deployments {
	return &Deployments{s: s, log: log.With("controller", "deployment"), resync: resync, now: time.Now}
}

func (c *Deployments) Name() string { return "deployment" }

// Run reconciles every resync and at once when a Deployment, ReplicaSet
// or pod changes.
func (c *Deployments) Run(ctx context.Context) error {
	runLoop(ctx, c.s.Client(), c.log, c.resync, c.pass, store.ListKey(deployKind, ""), store.ListKey(rsKind, ""), store.ListKey(podKind, ""))
	return nil
}

// Reconcile runs one pass over all Deployments.
func (c *Deployments) Reconcile(ctx context.Context) error {
	_, err := c.pass(ctx)
	return err
}

func (c *Deployments) pass(ctx context.Context) (time.Time, error) {
	lists, err := listKinds(ctx, c.s, deployKind, rsKind, podKind)
	if err != nil {
		return time.Time{}, err
	}
	rsByOwner := map[types.UID][]*appsv1.ReplicaSet{}
	for _, o := range lists[1] {
		rs := o.(*appsv1.ReplicaSet)
		if ref := metav1.GetControllerOf(rs); ref != nil && rs.DeletionTimestamp == nil {
			rsByOwner[ref.UID] = append(rsByOwner[ref.UID], rs)
		}
	}
	pods := podsByController(lists[2])
	return reconcileEach(lists[0], c.log, "reconcile deployment", "deployment", func(d *appsv1.Deployment) (time.Time, error) {
		return c.deployment(ctx, d, rsByOwner[d.UID], pods)
	})
}

// TemplateHash is the pod-template-hash of a template: FNV-1a of its JSON
// (without the hash label) and the collision count, in Kubernetes' safe
// alphabet.
func TemplateHash(t *corev1.PodTemplateSpec, collisions *int32) string {
	h := fnv.New32a()
	h.Write(templateJSON(t))
	if collisions != nil {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], uint32(*collisions))
		h.Write(b[:])
	}
	return utilrand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// templateJSON is a template's JSON without the pod-template-hash label,
// for comparing a Deployment's template with its ReplicaSets'.
func templateJSON(t *corev1.PodTemplateSpec) []byte {
	c := t.DeepCopy()
	delete(c.Labels, api.LabelPodTemplateHash)
	if len(c.Labels) == 0 {
		c.Labels = nil
	}
	b, _ := json.Marshal(c)
	return b
}

func revisionOf(rs *appsv1.ReplicaSet) int64 {
	v, _ := strconv.ParseInt(rs.Annotations[api.AnnotationRevision], 10, 64)
	return v
}

func replicasOf(rs *appsv1.ReplicaSet) int32 {
	if rs.Spec.Replicas == nil {
		return 1
	}
	return *rs.Spec.Replicas
}

// Fenceposts resolves maxSurge (rounded up) and maxUnavailable (rounded
// down) of a rolling update against replicas; both 0 becomes
// maxUnavailable 1, as Kubernetes.
func Fenceposts(ru *appsv1.RollingUpdateDeployment, replicas int32) (surge, unavailable int32) {
	if ru == nil {
		return 0, 0
	}
	surge = min(scaledValue(ru.MaxSurge, replicas, true), maxSurgePods) // no int32 overflow
	unavailable = scaledValue(ru.MaxUnavailable, replicas, false)
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	return surge, min(unavailable, replicas)
}

func scaledValue(v *intstr.IntOrString, total int32, up bool) int32 {
	if v == nil {
		return 0
	}
	if v.Type == intstr.Int {
		return v.IntVal
	}
	s := v.StrVal
	if len(s) > 0 && s[len(s)-1] == '%' {
		s = s[:len(s)-1]
	}
	pct, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	f := min(float64(pct)*float64(total)/100, maxSurgePods)
	if up {
		return int32(math.Ceil(f))
	}
	return int32(math.Floor(f))
}

// rsState is a ReplicaSet of a Deployment and its pods' counts.
type rsState struct {
	rs     *appsv1.ReplicaSet
	spec   int32
	n      podCounts
	exists int // pods not finished, terminating ones included
}

// running counts the pods that may still have processes: not Succeeded
// or Failed, marked for deletion or not.
func running(pods []*corev1.Pod) int {
	n := 0
	for _, p := range pods {
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			n++
		}
	}
	return n
}

// load is what a ReplicaSet weighs in a rollout: its pods until its
// surplus is deleted, its spec until its missing pods exist.
func (r *rsState) load() int32 { return max(r.spec, r.n.active) }

// avail is what a ReplicaSet will keep available once it has converged.
func (r *rsState) avail() int32 { return min(r.spec, r.n.available) }

func (c *Deployments) deployment(ctx context.Context, d *appsv1.Deployment, owned []*appsv1.ReplicaSet, pods map[types.UID][]*corev1.Pod) (time.Time, error) {
	now := c.now()
	name := d.Namespace + "/" + d.Name
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	want := templateJSON(&d.Spec.Template)
	var newRS *rsState
	var olds []*rsState
	var due time.Time
	var maxOldRev int64
	hash := TemplateHash(&d.Spec.Template, d.Status.CollisionCount)
	sort.Slice(owned, func(i, j int) bool {
		if !owned[i].CreationTimestamp.Equal(&owned[j].CreationTimestamp) {
			return owned[i].CreationTimestamp.Before(&owned[j].CreationTimestamp)
		}
		return owned[i].Name < owned[j].Name
	})
	for _, rs := range owned {
		st := &rsState{rs: rs, spec: replicasOf(rs), n: countPods(pods[rs.UID], d.Spec.MinReadySeconds, now), exists: running(pods[rs.UID])}
		due = soonest(due, st.n.due)
		if string(templateJSON(&rs.Spec.Template)) == string(want) && (newRS == nil || rs.Name == d.Name+"-"+hash) {
			if newRS != nil {
				olds = append(olds, newRS)
			}
			newRS = st
			continue
		}
		olds = append(olds, st)
	}
	for _, o := range olds {
		maxOldRev = max(maxOldRev, revisionOf(o.rs))
	}
	sort.SliceStable(olds, func(i, j int) bool { return revisionOf(olds[i].rs) < revisionOf(olds[j].rs) })

	if !d.Spec.Paused {
		var err error
		recreate := d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType
		if newRS == nil && (!recreate || oldsGone(olds)) {
			newRS, err = c.createRS(ctx, d, hash, maxOldRev+1, replicas, olds, recreate)
			if err != nil || newRS == nil {
				return due, err
			}
		} else if newRS != nil && revisionOf(newRS.rs) <= maxOldRev {
			if err := c.setRevision(ctx, newRS, maxOldRev+1); err != nil {
				return due, err
			}
		}
		if recreate {
			err = c.recreate(ctx, d, newRS, olds, replicas)
		} else {
			err = c.rolling(ctx, d, newRS, olds, replicas)
		}
		if err != nil {
			return due, fmt.Errorf("deployment %s: %w", name, err)
		}
		if err := c.cleanup(ctx, d, olds); err != nil {
			return due, fmt.Errorf("deployment %s: %w", name, err)
		}
	} else if r := activeOrLatest(newRS, olds); r != nil {
		// Paused: no rollout, but scaling applies to the one ReplicaSet
		// that has replicas (or the newest if none has).
		if err := c.scale(ctx, d, r, replicas); err != nil {
			return due, fmt.Errorf("deployment %s: %w", name, err)
		}
	}
	next, err := c.writeStatus(ctx, d, newRS, olds, replicas, now)
	return soonest(due, next), err
}

// activeOrLatest returns the only ReplicaSet with replicas, or if none
// has any the new one or else the newest old one; nil when several have
// replicas (a rollout in flight).
func activeOrLatest(newRS *rsState, olds []*rsState) *rsState {
	all := olds // by revision
	if newRS != nil {
		all = append(append([]*rsState(nil), olds...), newRS)
	}
	var active []*rsState
	for _, r := range all {
		if r.spec > 0 {
			active = append(active, r)
		}
	}
	switch {
	case len(active) == 1:
		return active[0]
	case len(active) == 0 && len(all) > 0:
		return all[len(all)-1]
	}
	return nil
}

// oldsGone reports whether no old ReplicaSet wants or runs a pod.
func oldsGone(olds []*rsState) bool {
	for _, o := range olds {
		if o.spec > 0 || o.exists > 0 {
			return false
		}
	}
	return true
}

// createRS creates the ReplicaSet of d's template, with its first
// replicas; it returns nil (and bumps status.collisionCount) if the name
// is taken by a ReplicaSet of another template.
func (c *Deployments) createRS(ctx context.Context, d *appsv1.Deployment, hash string, rev int64, replicas int32, olds []*rsState, recreate bool) (*rsState, error) {
	t := d.Spec.Template.DeepCopy()
	if t.Labels == nil {
		t.Labels = map[string]string{}
	}
	t.Labels[api.LabelPodTemplateHash] = hash
	sel := d.Spec.Selector.DeepCopy()
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[api.LabelPodTemplateHash] = hash
	first := replicas
	if !recreate {
		surge, _ := Fenceposts(d.Spec.Strategy.RollingUpdate, replicas)
		total := int32(0)
		for _, o := range olds {
			total += o.load()
		}
		first = max(0, min(replicas, replicas+surge-total))
	}
	labels := map[string]string{}
	for k, v := range t.Labels {
		labels[k] = v
	}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:   d.Namespace,
			Name:        d.Name + "-" + hash,
			Labels:      labels,
			Annotations: map[string]string{api.AnnotationRevision: strconv.FormatInt(rev, 10)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID,
				Controller: ptr(true), BlockOwnerDeletion: ptr(true)}},
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: &first, MinReadySeconds: d.Spec.MinReadySeconds, Selector: sel, Template: *t},
	}
	err := c.s.Create(ctx, rs)
	if apierrors.IsAlreadyExists(err) {
		o, gerr := c.s.Get(ctx, rsKind, rs.Namespace, rs.Name)
		if apierrors.IsNotFound(gerr) {
			// Deleted between the create and this read (the garbage
			// collector finishing an earlier Deployment's): the name is
			// free now; the next pass creates it.
			return nil, nil
		}
		if gerr == nil {
			if ref := metav1.GetControllerOf(o); ref != nil && ref.Kind == "Deployment" && ref.Name == d.Name && ref.UID != d.UID {
				// Left by an earlier Deployment of this name: the garbage
				// collector is deleting it; the name is free soon.
				c.log.Info("replica set name held by an earlier deployment's replica set; waiting for its collection", "deployment", d.Namespace+"/"+d.Name, "replicaset", rs.Name)
				return nil, nil
			}
		}
		// Taken by a ReplicaSet this Deployment does not own, or of another
		// template (a hash collision): hash again with a higher count.
		cnt := int32(1)
		if d.Status.CollisionCount != nil {
			cnt = *d.Status.CollisionCount + 1
		}
		_, err := c.s.Mutate(ctx, deployKind, d.Namespace, d.Name, func(o api.Object) error {
			cur := o.(*appsv1.Deployment)
			if cur.UID == d.UID {
				cur.Status.CollisionCount = &cnt
			}
			return nil
		})
		c.log.Warn("replica set name taken: hashing again", "deployment", d.Namespace+"/"+d.Name, "replicaset", rs.Name, "collisionCount", cnt)
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("write status.collisionCount: %w", err)
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("create replica set %s: %w", rs.Name, err)
	}
	c.log.Info("replica set created", "deployment", d.Namespace+"/"+d.Name, "replicaset", rs.Name, "revision", rev, "replicas", first)
	return &rsState{rs: rs, spec: first}, nil
}

func (c *Deployments) setRevision(ctx context.Context, r *rsState, rev int64) error {
	o, err := c.s.Mutate(ctx, rsKind, r.rs.Namespace, r.rs.Name, func(o api.Object) error {
		cur := o.(*appsv1.ReplicaSet)
		if cur.UID != r.rs.UID {
			return nil
		}
		if cur.Annotations == nil {
			cur.Annotations = map[string]string{}
		}
		cur.Annotations[api.AnnotationRevision] = strconv.FormatInt(rev, 10)
		return nil
	})
	if err != nil {
		return fmt.Errorf("replica set %s: set revision: %w", r.rs.Name, err)
	}
	r.rs = o.(*appsv1.ReplicaSet)
	c.log.Info("replica set back as the current revision", "replicaset", r.rs.Namespace+"/"+r.rs.Name, "revision", rev)
	return nil
}

// scale sets a ReplicaSet's replicas (and the Deployment's minReadySeconds).
func (c *Deployments) scale(ctx context.Context, d *appsv1.Deployment, r *rsState, to int32) error {
	if to == r.spec && r.rs.Spec.MinReadySeconds == d.Spec.MinReadySeconds {
		return nil
	}
	o, err := c.s.Mutate(ctx, rsKind, r.rs.Namespace, r.rs.Name, func(o api.Object) error {
		cur := o.(*appsv1.ReplicaSet)
		if cur.UID != r.rs.UID {
			return nil
		}
		cur.Spec.Replicas = &to
		cur.Spec.MinReadySeconds = d.Spec.MinReadySeconds
		return nil
	})
	if err != nil {
		return fmt.Errorf("scale replica set %s to %d: %w", r.rs.Name, to, err)
	}
	if to != r.spec {
		c.log.Info("replica set scaled", "deployment", d.Namespace+"/"+d.Name, "replicaset", r.rs.Name, "from", r.spec, "to", to)
	}
	r.rs, r.spec = o.(*appsv1.ReplicaSet), to
	return nil
}

// rolling runs one step of a rolling update.
func (c *Deployments) rolling(ctx context.Context, d *appsv1.Deployment, newRS *rsState, olds []*rsState, replicas int32) error {
	surge, unavailable := Fenceposts(d.Spec.Strategy.RollingUpdate, replicas)
	total := newRS.load()
	for _, o := range olds {
		total += o.load()
	}
	// Grow (or cap, after a scale-down) the new ReplicaSet.
	switch to := newRS.spec; {
	case to > replicas:
		to = replicas
		if err := c.scale(ctx, d, newRS, to); err != nil {
			return err
		}
	case to < replicas && total < replicas+surge:
		to += min(replicas+surge-total, replicas-to)
		if err := c.scale(ctx, d, newRS, to); err != nil {
			return err
		}
	default:
		if err := c.scale(ctx, d, newRS, to); err != nil { // minReadySeconds
			return err
		}
	}
	// Shrink the old ones, keeping replicas-maxUnavailable available.
	minAvailable := replicas - unavailable
	all := newRS.load()
	for _, o := range olds {
		all += o.load()
	}
	newUnavailable := max(0, newRS.spec-newRS.n.available)
	budget := all - minAvailable - newUnavailable
	if budget <= 0 {
		return nil
	}
	// First the old pods that are not available anyway.
	for _, o := range olds {
		if budget <= 0 {
			break
		}
		bad := o.spec - o.avail()
		if bad <= 0 {
			continue
		}
		k := min(bad, budget)
		if err := c.scale(ctx, d, o, o.spec-k); err != nil {
			return err
		}
		budget -= k
	}
	// Then available ones, oldest revision first, as long as enough stay.
	available := newRS.avail()
	for _, o := range olds {
		available += o.avail()
	}
	excess := available - minAvailable
	for _, o := range olds {
		if excess <= 0 {
			break
		}
		k := min(o.spec, excess)
		if k <= 0 {
			continue
		}
		if err := c.scale(ctx, d, o, o.spec-k); err != nil {
			return err
		}
		excess -= k
	}
	return nil
}

// recreate scales the old ReplicaSets to 0 and, once their pods are gone,
// the new one to replicas.
func (c *Deployments) recreate(ctx context.Context, d *appsv1.Deployment, newRS *rsState, olds []*rsState, replicas int32) error {
	for _, o := range olds {
		if err := c.scale(ctx, d, o, 0); err != nil {
			return err
		}
	}
	if newRS == nil {
		return nil // created once the old pods are gone
	}
	if !oldsGone(olds) {
		return c.scale(ctx, d, newRS, min(newRS.spec, 0))
	}
	return c.scale(ctx, d, newRS, replicas)
}

// cleanup deletes old ReplicaSets beyond revisionHistoryLimit that have no
// replicas and no pods, oldest revision first.
func (c *Deployments) cleanup(ctx context.Context, d *appsv1.Deployment, olds []*rsState) error {
	limit := int(api.DefaultRevisionHistoryLimit)
	if d.Spec.RevisionHistoryLimit != nil {
		limit = int(*d.Spec.RevisionHistoryLimit)
	}
	var idle []*rsState
	for _, o := range olds { // sorted by revision
		if o.spec == 0 && o.exists == 0 {
			idle = append(idle, o)
		}
	}
	for i := 0; i < len(idle)-limit && i < maxRevisionHistoryDeletion; i++ {
		rs := idle[i].rs
		_, err := c.s.Delete(ctx, rsKind, rs.Namespace, rs.Name, store.DeleteOptions{UID: rs.UID})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete old replica set %s: %w", rs.Name, err)
		}
		c.log.Info("old replica set deleted (revision history limit)", "deployment", d.Namespace+"/"+d.Name, "replicaset", rs.Name, "revision", revisionOf(rs))
	}
	return nil
}

// writeStatus computes and writes the status and the revision annotation;
// it returns when the progress deadline falls due.
func (c *Deployments) writeStatus(ctx context.Context, d *appsv1.Deployment, newRS *rsState, olds []*rsState, replicas int32, now time.Time) (time.Time, error) {
	st := appsv1.DeploymentStatus{ObservedGeneration: d.Generation, CollisionCount: d.Status.CollisionCount}
	var specTotal int32
	all := olds
	if newRS != nil {
		all = append([]*rsState{newRS}, olds...)
		st.UpdatedReplicas = newRS.n.active
	}
	for _, r := range all {
		st.Replicas += r.n.active
		st.ReadyReplicas += r.n.ready
		st.AvailableReplicas += r.n.available
		specTotal += r.spec
	}
	st.UnavailableReplicas = max(0, specTotal-st.AvailableReplicas)
	st.UnavailableReplicas = max(st.UnavailableReplicas, replicas-st.AvailableReplicas)

	ts := metav1.NewTime(now.UTC().Truncate(time.Second))
	_, unavailable := Fenceposts(d.Spec.Strategy.RollingUpdate, replicas)
	if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		unavailable = 0
	}
	conds := append([]appsv1.DeploymentCondition(nil), d.Status.Conditions...)
	if st.AvailableReplicas >= replicas-unavailable {
		conds = setDeployCondition(conds, appsv1.DeploymentAvailable, corev1.ConditionTrue, ReasonMinimumAvailable, msgMinimumAvailable, ts, false)
	} else {
		conds = setDeployCondition(conds, appsv1.DeploymentAvailable, corev1.ConditionFalse, ReasonMinimumUnavailable, msgMinimumUnavailable, ts, false)
	}
	var due time.Time
	rsName := ""
	if newRS != nil {
		rsName = newRS.rs.Name
	}
	prog := deployCondition(conds, appsv1.DeploymentProgressing)
	old := d.Status
	complete := newRS != nil && st.UpdatedReplicas == replicas && st.Replicas == replicas && st.AvailableReplicas == replicas
	progressed := d.Generation != old.ObservedGeneration || st.UpdatedReplicas > old.UpdatedReplicas || st.ReadyReplicas > old.ReadyReplicas ||
		st.AvailableReplicas > old.AvailableReplicas || st.Replicas-st.UpdatedReplicas < old.Replicas-old.UpdatedReplicas
	deadline := time.Duration(api.DefaultProgressDeadlineSeconds) * time.Second
	if d.Spec.ProgressDeadlineSeconds != nil {
		deadline = time.Duration(*d.Spec.ProgressDeadlineSeconds) * time.Second
	}
	switch {
	case d.Spec.Paused:
		conds = setDeployCondition(conds, appsv1.DeploymentProgressing, corev1.ConditionUnknown, ReasonPaused, "Deployment is paused", ts, false)
	case complete:
		conds = setDeployCondition(conds, appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonNewRSAvailable, fmt.Sprintf("ReplicaSet %q has successfully progressed.", rsName), ts, prog == nil || prog.Reason != ReasonNewRSAvailable)
	case progressed || prog == nil || prog.Reason == ReasonNewRSAvailable || prog.Reason == ReasonPaused:
		conds = setDeployCondition(conds, appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonRSUpdated, fmt.Sprintf("ReplicaSet %q is progressing.", rsName), ts, true)
		due = ts.Add(deadline + time.Second)
	case prog.Reason == ReasonRSUpdated:
		if at := prog.LastUpdateTime.Add(deadline); now.Before(at) {
			due = at.Add(time.Second)
		} else {
			conds = setDeployCondition(conds, appsv1.DeploymentProgressing, corev1.ConditionFalse, ReasonDeadlineExceeded, fmt.Sprintf("ReplicaSet %q has timed out progressing.", rsName), ts, true)
		}
	}
	st.Conditions = conds
	rev := ""
	if newRS != nil {
		rev = newRS.rs.Annotations[api.AnnotationRevision]
	}
	if sameJSON(d.Status, st) && (rev == "" || d.Annotations[api.AnnotationRevision] == rev) {
		return due, nil
	}
	_, err := c.s.Mutate(ctx, deployKind, d.Namespace, d.Name, func(o api.Object) error {
		cur := o.(*appsv1.Deployment)
		if cur.UID != d.UID || cur.Generation != d.Generation {
			return nil // changed meanwhile: the next pass computes afresh
		}
		cur.Status = st
		if rev != "" {
			if cur.Annotations == nil {
				cur.Annotations = map[string]string{}
			}
			cur.Annotations[api.AnnotationRevision] = rev
		}
		return nil
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return due, fmt.Errorf("deployment %s/%s: write status: %w", d.Namespace, d.Name, err)
	}
	return due, nil
}

func deployCondition(conds []appsv1.DeploymentCondition, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// setDeployCondition sets a condition; lastTransitionTime moves when the
// status changes, lastUpdateTime when touch is set or anything changes.
func setDeployCondition(conds []appsv1.DeploymentCondition, t appsv1.DeploymentConditionType, status corev1.ConditionStatus, reason, msg string, now metav1.Time, touch bool) []appsv1.DeploymentCondition {
	c := appsv1.DeploymentCondition{Type: t, Status: status, Reason: reason, Message: msg, LastUpdateTime: now, LastTransitionTime: now}
	if old := deployCondition(conds, t); old != nil {
		if old.Status == status {
			c.LastTransitionTime = old.LastTransitionTime
			if !touch && old.Reason == reason && old.Message == msg {
				c.LastUpdateTime = old.LastUpdateTime
			}
		}
		*old = c
		return conds
	}
	return append(conds, c)
}
