package cli

import (
	"fmt"
	"strings"

	"github.com/podnet/podnet/internal/api"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/validation"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// metaChange is one argument of `label`/`annotate`: KEY=VALUE sets, KEY- removes.
type metaChange struct {
	key, value string
	remove     bool
}

// parseMetaChanges reads label or annotation changes; labels (isLabel)
// have their keys and values checked as Kubernetes checks them.
func parseMetaChanges(args []string, isLabel bool) ([]metaChange, error) {
	var out []metaChange
	seen := map[string]bool{}
	for _, a := range args {
		var c metaChange
		if k, ok := strings.CutSuffix(a, "-"); ok && !strings.Contains(a, "=") {
			c = metaChange{key: k, remove: true}
		} else {
			k, v, ok := strings.Cut(a, "=")
			if !ok {
				return nil, fmt.Errorf("%q: want KEY=VALUE to set or KEY- to remove", a)
			}
			c = metaChange{key: k, value: v}
		}
		if msgs := utilvalidation.IsQualifiedName(c.key); len(msgs) > 0 {
			return nil, fmt.Errorf("%q: invalid key %q: %s", a, c.key, strings.Join(msgs, "; "))
		}
		if isLabel && !c.remove {
			if msgs := utilvalidation.IsValidLabelValue(c.value); len(msgs) > 0 {
				return nil, fmt.Errorf("%q: invalid label value %q: %s", a, c.value, strings.Join(msgs, "; "))
			}
		}
		if seen[c.key] {
			return nil, fmt.Errorf("%q: key %q given twice", a, c.key)
		}
		seen[c.key] = true
		out = append(out, c)
	}
	if !isLabel {
		m := map[string]string{}
		for _, c := range out {
			m[c.key] = c.value
		}
		if errs := validation.ValidateAnnotations(m, field.NewPath("metadata", "annotations")); len(errs) > 0 {
			return nil, errs.ToAggregate()
		}
	}
	return out, nil
}

func newLabel(g *globals, isLabel bool) *cobra.Command {
	what, verb := "label", "labeled"
	if !isLabel {
		what, verb = "annotate", "annotated"
	}
	var overwrite bool
	cmd := &cobra.Command{
		Use:   what + " (TYPE NAME | TYPE/NAME) KEY=VALUE... [KEY-...] [--overwrite]",
		Short: "Set or remove " + map[bool]string{true: "labels", false: "annotations"}[isLabel] + " of an object",
		RunE: func(cmd *cobra.Command, args []string) error {
			// The object is TYPE/NAME or TYPE NAME; the rest are changes.
			n := 2
			if len(args) > 0 && strings.Contains(args[0], "/") {
				n = 1
			}
			if len(args) <= n {
				return fmt.Errorf("usage: podnet %s TYPE NAME KEY=VALUE... (or KEY- to remove)", what)
			}
			k, names, err := resourceArgs(args[:n])
			if err != nil {
				return err
			}
			changes, err := parseMetaChanges(args[n:], isLabel)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, done, err := g.store(ctx)
			if err != nil {
				return err
			}
			defer done()
			o, err := s.Mutate(ctx, k, g.namespace, names[0], func(o api.Object) error {
				m := o.GetLabels()
				if !isLabel {
					m = o.GetAnnotations()
				}
				if m == nil {
					m = map[string]string{}
				}
				for _, c := range changes {
					old, has := m[c.key]
					switch {
					case c.remove:
						delete(m, c.key)
					case has && old != c.value && !overwrite:
						return fmt.Errorf("'%s' already has a value (%s), and --overwrite is false", c.key, old)
					default:
						m[c.key] = c.value
					}
				}
				if isLabel {
					o.SetLabels(m)
				} else {
					o.SetAnnotations(m)
				}
				return nil
			})
			if err != nil {
				return friendly(err)
			}
			fmt.Fprintf(g.out, "%s %s\n", objectName(o), verb)
			return nil
		},
	}
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "allow changing a key that already has a value")
	return cmd
}
