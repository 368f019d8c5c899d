package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AnnotationChangeCause is what `rollout history` shows per revision.
const AnnotationChangeCause = "kubernetes.io/change-cause"

func newRollout(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout (status|restart|undo|history|pause|resume) deployment/NAME",
		Short: "Follow, restart, undo, list, pause or resume a deployment's rollout",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return fmt.Errorf("usage: podnet rollout status|restart|undo|history|pause|resume deployment/NAME")
		},
	}
	cmd.AddCommand(newRolloutStatus(g), newRolloutRestart(g), newRolloutUndo(g), newRolloutHistory(g),
		newRolloutPause(g, true), newRolloutPause(g, false))
	return cmd
}

// deploymentArg resolves the one deployment a rollout command works on.
func deploymentArg(args []string) (*api.Kind, string, error) {
	k, names, err := resourceArgs(args)
	if err != nil {
		return nil, "", err
	}
	if _, ok := k.New().(*appsv1.Deployment); !ok {
		return nil, "", fmt.Errorf("rollout works on deployments, not %s", k.Resource)
	}
	if len(names) != 1 {
		return nil, "", fmt.Errorf("rollout takes one deployment, got %d", len(names))
	}
	return k, names[0], nil
}

// rolloutBody is what a rollout subcommand does once its deployment is
// resolved and the store is open.
type rolloutBody func(ctx context.Context, s *store.Store, k *api.Kind, name string) error

// rolloutRunE is the RunE of a rollout subcommand: it resolves the one
// deployment of args, runs check on the flags (nil: none), opens the
// store, and runs body with them.
func (g *globals) rolloutRunE(check func() error, body rolloutBody) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		k, name, err := deploymentArg(args)
		if err != nil {
			return err
		}
		if check != nil {
			if err := check(); err != nil {
				return err
			}
		}
		ctx := cmd.Context()
		s, done, err := g.store(ctx)
		if err != nil {
			return err
		}
		defer done()
		return body(ctx, s, k, name)
	}
}

// rolloutStatus says where a deployment's rollout is, judged from its
// status and observedGeneration as kubectl judges it: done only once the
// controller has seen the latest spec, every replica is updated, no old
// replica is left and every updated one is available.
func rolloutStatus(d *appsv1.Deployment) (msg string, done bool, err error) {
	if d.Generation > d.Status.ObservedGeneration {
		return "Waiting for deployment spec update to be observed...", false, nil
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return "", false, fmt.Errorf("deployment %q exceeded its progress deadline", d.Name)
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	switch {
	case st.UpdatedReplicas < want:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d out of %d new replicas have been updated...", d.Name, st.UpdatedReplicas, want), false, nil
	case st.Replicas > st.UpdatedReplicas:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d old replicas are pending termination...", d.Name, st.Replicas-st.UpdatedReplicas), false, nil
	case st.AvailableReplicas < st.UpdatedReplicas:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d of %d updated replicas are available...", d.Name, st.AvailableReplicas, st.UpdatedReplicas), false, nil
	}
	return fmt.Sprintf("deployment %q successfully rolled out", d.Name), true, nil
}

func newRolloutStatus(g *globals) *cobra.Command {
	var watch bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "status deployment/NAME [--watch=false] [--timeout D]",
		Short: "Follow a deployment's rollout until it is done",
		RunE: g.rolloutRunE(nil, func(ctx context.Context, s *store.Store, k *api.Kind, name string) error {
			if timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, timeout)
				defer cancel()
			}
			return followRollout(ctx, g, s, k, name, watch)
		}),
	}
	cmd.Flags().BoolVarP(&watch, "watch", "w", true, "keep watching until the rollout is done")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (0: never)")
	return cmd
}

// followRollout prints the rollout's state on every change of the
// deployment until it is done (each message once in a row).
func followRollout(ctx context.Context, g *globals, s *store.Store, k *api.Kind, name string, watch bool) error {
	last := ""
	for {
		o, err := s.Get(ctx, k, g.namespace, name)
		if err != nil {
			if ctx.Err() != nil {
				return errors.New("timed out waiting for the condition")
			}
			return friendly(err)
		}
		rev, _ := strconv.ParseInt(o.GetResourceVersion(), 10, 64)
		check := func(d *appsv1.Deployment) (bool, error) {
			msg, ok, err := rolloutStatus(d)
			if err != nil {
				return true, err
			}
			if msg != last {
				fmt.Fprintln(g.out, msg)
				last = msg
			}
			return ok || !watch, nil
		}
		if stop, err := check(o.(*appsv1.Deployment)); stop || err != nil {
			return err
		}
		for ev := range s.Watch(ctx, k, g.namespace, rev) {
			if ev.Err != nil {
				break // re-get and watch again
			}
			if ev.Object == nil || ev.Object.GetName() != name {
				continue
			}
			if ev.Type == store.Deleted {
				return fmt.Errorf("deployment %q was deleted", name)
			}
			if stop, err := check(ev.Object.(*appsv1.Deployment)); stop || err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return errors.New("timed out waiting for the condition")
		}
	}
}

func newRolloutRestart(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "restart deployment/NAME",
		Short: "Replace a deployment's pods by a rolling update (sets " + api.AnnotationRestartedAt + ")",
		RunE: g.rolloutRunE(nil, func(ctx context.Context, s *store.Store, k *api.Kind, name string) error {
			return g.mutateDeployment(ctx, s, k, name, "restarted", func(d *appsv1.Deployment) error {
				if d.Spec.Paused {
					return fmt.Errorf("%s can't restart paused deployment (run rollout resume first)", objectName(d))
				}
				if d.Spec.Template.Annotations == nil {
					d.Spec.Template.Annotations = map[string]string{}
				}
				d.Spec.Template.Annotations[api.AnnotationRestartedAt] = time.Now().Format(time.RFC3339)
				return nil
			})
		}),
	}
}

func newRolloutPause(g *globals, pause bool) *cobra.Command {
	verb, use, short := "paused", "pause", "Stop a deployment's rollouts until resumed"
	if !pause {
		verb, use, short = "resumed", "resume", "Let a paused deployment roll out again"
	}
	return &cobra.Command{
		Use:   use + " deployment/NAME",
		Short: short,
		RunE: g.rolloutRunE(nil, func(ctx context.Context, s *store.Store, k *api.Kind, name string) error {
			return g.mutateDeployment(ctx, s, k, name, verb, func(d *appsv1.Deployment) error {
				if d.Spec.Paused == pause {
					if pause {
						return fmt.Errorf("%s %q is already paused", kindsName(k), name)
					}
					return fmt.Errorf("%s %q is not paused", kindsName(k), name)
				}
				d.Spec.Paused = pause
				return nil
			})
		}),
	}
}

// kindsName is the plural kubectl uses in errors: "deployments.apps".
func kindsName(k *api.Kind) string { return k.GroupResource().String() }

// mutateDeployment changes a deployment (retrying on conflicts) and
// prints `deployment.apps/NAME <verb>`.
func (g *globals) mutateDeployment(ctx context.Context, s *store.Store, k *api.Kind, name, verb string, fn func(*appsv1.Deployment) error) error {
	o, err := s.Mutate(ctx, k, g.namespace, name, func(o api.Object) error { return fn(o.(*appsv1.Deployment)) })
	if err != nil {
		return friendly(err)
	}
	fmt.Fprintf(g.out, "%s %s\n", objectName(o), verb)
	return nil
}

// revision is a ReplicaSet's deployment revision (0 if it has none).
func revision(rs *appsv1.ReplicaSet) int64 {
	n, err := strconv.ParseInt(rs.Annotations[api.AnnotationRevision], 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// ownedReplicaSets are the ReplicaSets a deployment controls, oldest
// revision first.
func ownedReplicaSets(ctx context.Context, s *store.Store, d *appsv1.Deployment) ([]*appsv1.ReplicaSet, error) {
	rsKind, err := api.KindOf(&appsv1.ReplicaSet{})
	if err != nil {
		return nil, err
	}
	list, _, err := s.List(ctx, rsKind, d.Namespace)
	if err != nil {
		return nil, err
	}
	var out []*appsv1.ReplicaSet
	for _, o := range list {
		rs := o.(*appsv1.ReplicaSet)
		if ref := metav1.GetControllerOf(rs); ref != nil && ref.Kind == "Deployment" && ref.Name == d.Name && (ref.UID == "" || ref.UID == d.UID) {
			out = append(out, rs)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if ri, rj := revision(out[i]), revision(out[j]); ri != rj {
			return ri < rj
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// templateOf is a ReplicaSet's pod template as its deployment would carry
// it: without the pod-template-hash label the controller added.
func templateOf(rs *appsv1.ReplicaSet) corev1.PodTemplateSpec {
	t := *rs.Spec.Template.DeepCopy()
	delete(t.Labels, api.LabelPodTemplateHash)
	if len(t.Labels) == 0 {
		t.Labels = nil
	}
	return t
}

// sameTemplate says whether a ReplicaSet runs a deployment's template.
func sameTemplate(rs *appsv1.ReplicaSet, d *appsv1.Deployment) bool {
	return apiequality.Semantic.DeepEqual(templateOf(rs), d.Spec.Template)
}

// rollbackTarget picks the ReplicaSet `rollout undo` goes back to: the
// one of toRevision, or (0) the latest revision before the newest.
func rollbackTarget(d *appsv1.Deployment, rss []*appsv1.ReplicaSet, toRevision int64) (*appsv1.ReplicaSet, error) {
	if toRevision > 0 {
		for _, rs := range rss {
			if revision(rs) == toRevision {
				return rs, nil
			}
		}
		return nil, fmt.Errorf("unable to find specified revision %d in history", toRevision)
	}
	var newest, prev *appsv1.ReplicaSet
	for _, rs := range rss {
		r := revision(rs)
		switch {
		case newest == nil || r > revision(newest):
			prev, newest = newest, rs
		case r < revision(newest) && (prev == nil || r > revision(prev)):
			prev = rs
		}
	}
	if prev == nil || revision(prev) == 0 {
		return nil, fmt.Errorf("no rollout history found for deployment %q", d.Name)
	}
	return prev, nil
}

func newRolloutUndo(g *globals) *cobra.Command {
	var toRevision int64
	cmd := &cobra.Command{
		Use:   "undo deployment/NAME [--to-revision N]",
		Short: "Roll a deployment back to its previous (or a given) revision",
		RunE: g.rolloutRunE(func() error {
			if toRevision < 0 {
				return fmt.Errorf("--to-revision %d: must be 0 (the previous revision) or a revision number", toRevision)
			}
			return nil
		}, func(ctx context.Context, s *store.Store, k *api.Kind, name string) error {
			for attempt := 0; ; attempt++ {
				o, err := s.Get(ctx, k, g.namespace, name)
				if err != nil {
					return friendly(err)
				}
				d := o.(*appsv1.Deployment)
				if d.Spec.Paused {
					return fmt.Errorf("you cannot rollback a paused deployment; resume it first with 'podnet rollout resume deployment/%s' and try again", d.Name)
				}
				rss, err := ownedReplicaSets(ctx, s, d)
				if err != nil {
					return err
				}
				target, err := rollbackTarget(d, rss, toRevision)
				if err != nil {
					return err
				}
				if sameTemplate(target, d) {
					fmt.Fprintf(g.out, "%s skipped rollback (current template already matches revision %d)\n", objectName(d), revision(target))
					return nil
				}
				d.Spec.Template = templateOf(target)
				err = s.Update(ctx, d)
				if apierrors.IsConflict(err) && attempt < 10 {
					continue
				}
				if err != nil {
					return friendly(err)
				}
				fmt.Fprintf(g.out, "%s rolled back\n", objectName(d))
				return nil
			}
		}),
	}
	cmd.Flags().Int64Var(&toRevision, "to-revision", 0, "the revision to roll back to (0: the previous one)")
	return cmd
}

func newRolloutHistory(g *globals) *cobra.Command {
	var rev int64
	cmd := &cobra.Command{
		Use:   "history deployment/NAME [--revision N]",
		Short: "List a deployment's revisions, or show one's pod template",
		RunE: g.rolloutRunE(nil, func(ctx context.Context, s *store.Store, k *api.Kind, name string) error {
			o, err := s.Get(ctx, k, g.namespace, name)
			if err != nil {
				return friendly(err)
			}
			d := o.(*appsv1.Deployment)
			rss, err := ownedReplicaSets(ctx, s, d)
			if err != nil {
				return err
			}
			if rev > 0 {
				for _, rs := range rss {
					if revision(rs) == rev {
						fmt.Fprintf(g.out, "%s with revision #%d\n", objectName(d), rev)
						pw := newPrefixWriter(g.out)
						describePodTemplate(pw, templateOf(rs))
						return pw.Flush()
					}
				}
				return fmt.Errorf("unable to find the specified revision")
			}
			if len(rss) == 0 {
				fmt.Fprintf(g.out, "No rollout history found in deployment %q\n", d.Name)
				return nil
			}
			fmt.Fprintf(g.out, "%s \n", objectName(d))
			tw := tabwriter.NewWriter(g.out, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "REVISION\tCHANGE-CAUSE")
			seen := map[int64]bool{}
			for _, rs := range rss {
				r := revision(rs)
				if r == 0 || seen[r] {
					continue
				}
				seen[r] = true
				fmt.Fprintf(tw, "%d\t%s\n", r, orNone(strings.TrimSpace(rs.Annotations[AnnotationChangeCause])))
			}
			tw.Flush()
			fmt.Fprintln(g.out)
			return nil
		}),
	}
	cmd.Flags().Int64Var(&rev, "revision", 0, "show the pod template of this revision")
	return cmd
}
