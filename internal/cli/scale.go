package cli

import (
	"errors"
	"fmt"

	"github.com/podnet/podnet/internal/api"
	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
)

// replicasOf returns the spec.replicas field of a scalable object
// (Deployment, ReplicaSet), or nil for any other kind.
func replicasOf(o api.Object) **int32 {
	switch v := o.(type) {
	case *appsv1.Deployment:
		return &v.Spec.Replicas
	case *appsv1.ReplicaSet:
		return &v.Spec.Replicas
	}
	return nil
}

func newScale(g *globals) *cobra.Command {
	var replicas, current int32
	cmd := &cobra.Command{
		Use:   "scale (deployment|replicaset) NAME --replicas N   (or TYPE/NAME)",
		Short: "Set the number of replicas of a deployment or replicaset",
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("replicas") || replicas < 0 {
				return fmt.Errorf("the --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0")
			}
			k, names, err := resourceArgs(args)
			if err != nil {
				return err
			}
			if replicasOf(k.New()) == nil {
				return fmt.Errorf("cannot scale %s: only deployments and replicasets have replicas", k.Resource)
			}
			ctx := cmd.Context()
			s, done, err := g.store(ctx)
			if err != nil {
				return err
			}
			defer done()
			var errs []error
			for _, name := range names {
				o, err := s.Mutate(ctx, k, g.namespace, name, func(o api.Object) error {
					r := replicasOf(o)
					if cmd.Flags().Changed("current-replicas") {
						have := int32(1)
						if *r != nil {
							have = **r
						}
						if have != current {
							return fmt.Errorf("%s %q: expected replicas to be %d, was %d", kindName(k), name, current, have)
						}
					}
					n := replicas
					*r = &n
					return nil
				})
				if err != nil {
					errs = append(errs, friendly(err))
					continue
				}
				fmt.Fprintf(g.out, "%s scaled\n", objectName(o))
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().Int32Var(&replicas, "replicas", -1, "the new number of replicas")
	cmd.Flags().Int32Var(&current, "current-replicas", -1, "precondition: scale only if the replicas are now this")
	return cmd
}
