package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/duration"
)

// readManifests decodes every file named by -f: a file, a directory (its
// .yaml, .yml and .json files, sorted) or "-" for stdin. All documents are
// decoded and validated before any is stored.
func readManifests(files []string, namespace string, stdin io.Reader) ([]api.Doc, error) {
	var docs []api.Doc
	for _, f := range files {
		if f == "-" {
			d, err := api.Decode("-", namespace, stdin)
			if err != nil {
				return nil, err
			}
			docs = append(docs, d...)
			continue
		}
		st, err := os.Stat(f)
		if err != nil {
			return nil, err
		}
		paths := []string{f}
		if st.IsDir() {
			paths = nil
			entries, err := os.ReadDir(f)
			if err != nil {
				return nil, err
			}
			for _, e := range entries {
				switch filepath.Ext(e.Name()) {
				case ".yaml", ".yml", ".json":
					paths = append(paths, filepath.Join(f, e.Name()))
				}
			}
			sort.Strings(paths)
			if len(paths) == 0 {
				return nil, fmt.Errorf("%s: no .yaml, .yml or .json files", f)
			}
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			d, err := api.Decode(p, namespace, bytes.NewReader(b))
			if err != nil {
				return nil, err
			}
			docs = append(docs, d...)
		}
	}
	return docs, nil
}

func newApply(g *globals) *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR|-",
		Short: "Create or update objects from manifests",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return fmt.Errorf("must specify -f")
			}
			docs, err := readManifests(files, g.namespace, cmd.InOrStdin())
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			s, done, err := g.store(ctx)
			if err != nil {
				return err
			}
			defer done()
			// Namespaces first, so pods in a namespace created by the same
			// apply find it.
			sort.SliceStable(docs, func(i, j int) bool {
				return !docs[i].Kind.Namespaced && docs[j].Kind.Namespaced
			})
			for _, d := range docs {
				g.printWarnings(d.Kind, d.Object)
				res, err := s.Apply(ctx, d.Object)
				if err != nil {
					return fmt.Errorf("%s: %w", d.Where(), friendly(err))
				}
				fmt.Fprintf(g.out, "%s/%s %s\n", kindName(d.Kind), d.Object.GetName(), res)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "manifest file, directory, or - for stdin")
	return cmd
}

// printWarnings prints the warnings of writing o (its kind's Warnings:
// unknown Ingress annotations, an unusable TLS pair) on stderr, as kubectl
// prints the API server's warnings.
func (g *globals) printWarnings(k *api.Kind, o api.Object) {
	for _, w := range k.WarningsFor(o) {
		fmt.Fprintf(g.errOut, "Warning: %s\n", w)
	}
}

func newGet(g *globals) *cobra.Command {
	var output, selector string
	var all, showLabels, watch, watchOnly, watchEvents bool
	cmd := &cobra.Command{
		Use:   "get RESOURCE [NAME...]",
		Short: "List objects: pods, nodes, namespaces, svc, endpointslices, deploy, rs, cm, secrets, ing, ingressclass",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if strings.EqualFold(args[0], "all") {
				// kubectl's "all": the workloads and their services.
				args = append([]string{"pods,services,deployments,replicasets"}, args[1:]...)
			}
			if strings.Contains(args[0], ",") && !strings.Contains(args[0], "/") {
				if watch || watchOnly {
					return fmt.Errorf("watch is only supported on one resource type, not %q", args[0])
				}
				return g.getKinds(cmd, strings.Split(args[0], ","), args[1:], output, selector, all, showLabels)
			}
			k, names, err := getArgs(args)
			if err != nil {
				return err
			}
			sel, err := labels.Parse(selector)
			if err != nil {
				return fmt.Errorf("-l %q: %w", selector, err)
			}
			p, err := newObjPrinter(k, output)
			if err != nil {
				return err
			}
			p.showNS = all && k.Namespaced
			p.showLabels = showLabels
			p.events = watchEvents && (watch || watchOnly)
			ctx := cmd.Context()
			s, done, err := g.store(ctx)
			if err != nil {
				return err
			}
			defer done()
			ns := g.namespace
			if all || !k.Namespaced {
				ns = ""
			}
			match := func(o api.Object) bool {
				if len(names) > 0 && !slices.Contains(names, o.GetName()) {
					return false
				}
				return sel.Matches(labels.Set(o.GetLabels()))
			}
			var objs []api.Object
			var rev int64
			if len(names) > 0 && !watch && !watchOnly {
				for _, name := range names {
					o, err := s.Get(ctx, k, ns, name)
					if err != nil {
						return friendly(err)
					}
					objs = append(objs, o)
				}
			} else {
				list, r, err := s.List(ctx, k, ns)
				if err != nil {
					return err
				}
				rev = r
				for _, o := range list {
					if match(o) {
						objs = append(objs, o)
					}
				}
				if len(names) > 0 && len(objs) == 0 && !watchOnly {
					return friendly(apierrors.NewNotFound(k.GroupResource(), names[0]))
				}
			}
			single := len(names) == 1
			if !watch && !watchOnly {
				if len(objs) == 0 && (p.format == "table" || p.format == "custom-columns") {
					if ns != "" {
						fmt.Fprintf(g.out, "No resources found in %s namespace.\n", ns)
					} else {
						fmt.Fprintln(g.out, "No resources found")
					}
					return nil
				}
				return p.print(g.out, objs, single, nil)
			}
			if !watchOnly && len(objs) > 0 {
				evs := make([]string, len(objs))
				for i := range evs {
					evs[i] = string(store.Added)
				}
				if err := p.printEach(g.out, objs, evs); err != nil {
					return err
				}
			}
			return watchObjects(ctx, g.out, s, k, ns, rev, match, p)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "", "output format: wide, yaml, json, name, jsonpath=TEMPLATE, jsonpath-file=FILE, custom-columns=HEADER:PATH,..., custom-columns-file=FILE")
	f.StringVarP(&selector, "selector", "l", "", "label selector, e.g. app=web, 'tier in (a,b)', '!canary'")
	f.BoolVarP(&all, "all-namespaces", "A", false, "list across all namespaces")
	f.BoolVar(&showLabels, "show-labels", false, "show each object's labels as the last column")
	f.BoolVarP(&watch, "watch", "w", false, "after listing, print each change (until interrupted)")
	f.BoolVar(&watchOnly, "watch-only", false, "print only the changes, not the list first")
	f.BoolVar(&watchEvents, "output-watch-events", false, "with --watch, show the event type (ADDED, MODIFIED, DELETED) of each row")
	return cmd
}

// getKinds is `get a,b,c [NAME...]`: a table per kind, names prefixed
// with their kind, as kubectl; other formats print one list of all.
func (g *globals) getKinds(cmd *cobra.Command, types, names []string, output, selector string, all, showLabels bool) error {
	var kinds []*api.Kind
	var printers []*objPrinter
	for _, t := range types {
		k, err := api.ResourceFor(t)
		if err != nil {
			return err
		}
		p, err := newObjPrinter(k, output)
		if err != nil {
			return err
		}
		p.showNS, p.showLabels, p.prefixNames = all && k.Namespaced, showLabels, true
		kinds, printers = append(kinds, k), append(printers, p)
	}
	sel, err := labels.Parse(selector)
	if err != nil {
		return fmt.Errorf("-l %q: %w", selector, err)
	}
	ctx := cmd.Context()
	s, done, err := g.store(ctx)
	if err != nil {
		return err
	}
	defer done()
	var every []api.Object
	printed := false
	for i, k := range kinds {
		ns := g.namespace
		if all || !k.Namespaced {
			ns = ""
		}
		list, _, err := s.List(ctx, k, ns)
		if err != nil {
			return err
		}
		var objs []api.Object
		for _, o := range list {
			if (len(names) == 0 || slices.Contains(names, o.GetName())) && sel.Matches(labels.Set(o.GetLabels())) {
				objs = append(objs, o)
			}
		}
		p := printers[i]
		if p.format != "table" && p.format != "custom-columns" {
			every = append(every, objs...)
			continue
		}
		if len(objs) == 0 {
			continue
		}
		if printed {
			fmt.Fprintln(g.out)
		}
		if err := p.print(g.out, objs, false, nil); err != nil {
			return err
		}
		printed = true
	}
	if p := printers[0]; p.format != "table" && p.format != "custom-columns" {
		return p.print(g.out, every, false, nil)
	}
	if !printed {
		if !all {
			fmt.Fprintf(g.out, "No resources found in %s namespace.\n", g.namespace)
		} else {
			fmt.Fprintln(g.out, "No resources found")
		}
	}
	return nil
}

// getArgs reads `get`'s arguments: RESOURCE [NAME...] or TYPE/NAME...
func getArgs(args []string) (*api.Kind, []string, error) {
	if strings.Contains(args[0], "/") {
		return resourceArgs(args)
	}
	k, err := api.ResourceFor(args[0])
	if err != nil {
		return nil, nil, err
	}
	return k, args[1:], nil
}

// watchObjects prints a row (or document) per change of the matching
// objects after rev, as `kubectl get -w`, until ctx ends. A watch that
// fails (e.g. its revision was compacted) is resumed from a new list.
func watchObjects(ctx context.Context, w io.Writer, s *store.Store, k *api.Kind, ns string, rev int64, match func(api.Object) bool, p *objPrinter) error {
	for {
		for ev := range s.Watch(ctx, k, ns, rev) {
			if ev.Err != nil {
				break
			}
			rev = ev.Revision
			if ev.Object == nil || !match(ev.Object) {
				continue
			}
			if err := p.print(w, []api.Object{ev.Object}, true, []string{string(ev.Type)}); err != nil {
				return err
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		list, r, err := s.List(ctx, k, ns)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		rev = r
		var objs []api.Object
		var evs []string
		for _, o := range list {
			if match(o) {
				objs = append(objs, o)
				evs = append(evs, string(store.Modified))
			}
		}
		if err := p.printEach(w, objs, evs); err != nil {
			return err
		}
	}
}

// podStatus is the STATUS column, as kubectl shows it.
func podStatus(p *corev1.Pod) string { return api.PodStatus(p) }

func age(t time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t))
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func newDelete(g *globals) *cobra.Command {
	var files []string
	var force, wait, all bool
	var selector string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "delete (RESOURCE NAME... | TYPE/NAME... | RESOURCE -l SELECTOR | RESOURCE --all | -f FILE)",
		Short: "Delete objects by name or from manifests",
		RunE: func(cmd *cobra.Command, args []string) error {
			type target struct {
				k        *api.Kind
				ns, name string
			}
			var targets []target
			var byLabel *api.Kind // RESOURCE -l SELECTOR or --all: targets listed below
			var sel labels.Selector
			switch {
			case (selector != "" || all) && len(args) == 1 && !strings.Contains(args[0], "/"):
				k, err := api.ResourceFor(args[0])
				if err != nil {
					return err
				}
				if sel, err = labels.Parse(selector); err != nil {
					return fmt.Errorf("-l %q: %w", selector, err)
				}
				byLabel = k
			case selector != "" || all:
				return fmt.Errorf("-l and --all take one RESOURCE and no names, e.g. podnet delete pods -l app=web")
			case len(files) > 0 && len(args) > 0:
				return fmt.Errorf("give either -f or RESOURCE NAME, not both")
			case len(files) > 0:
				docs, err := readManifests(files, g.namespace, cmd.InOrStdin())
				if err != nil {
					return err
				}
				for _, d := range docs {
					targets = append(targets, target{d.Kind, d.Object.GetNamespace(), d.Object.GetName()})
				}
			case len(args) >= 2 || len(args) == 1 && strings.Contains(args[0], "/"):
				k, names, err := resourceArgs(args)
				if err != nil {
					return err
				}
				for _, n := range names {
					targets = append(targets, target{k, g.namespace, n})
				}
			default:
				return fmt.Errorf("usage: podnet delete RESOURCE NAME... or podnet delete -f FILE")
			}
			ctx := cmd.Context()
			s, done, err := g.store(ctx)
			if err != nil {
				return err
			}
			defer done()
			if byLabel != nil {
				ns := g.namespace
				if !byLabel.Namespaced {
					ns = ""
				}
				list, _, err := s.List(ctx, byLabel, ns)
				if err != nil {
					return err
				}
				for _, o := range list {
					if sel.Matches(labels.Set(o.GetLabels())) {
						targets = append(targets, target{byLabel, o.GetNamespace(), o.GetName()})
					}
				}
				if len(targets) == 0 {
					fmt.Fprintln(g.errOut, "No resources found")
					return nil
				}
			}
			// Pods before namespaces, the reverse of apply.
			sort.SliceStable(targets, func(i, j int) bool { return targets[i].k.Namespaced && !targets[j].k.Namespaced })
			var firstErr error
			for _, t := range targets {
				gone, err := s.Delete(ctx, t.k, t.ns, t.name, store.DeleteOptions{Force: force})
				if err != nil {
					err = friendly(err)
					fmt.Fprintf(g.errOut, "Error: %v\n", err)
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				fmt.Fprintf(g.out, "%s \"%s\" deleted\n", kindName(t.k), t.name)
				if !gone && wait {
					if err := waitGone(ctx, s, t.k, t.ns, t.name, timeout); err != nil {
						return err
					}
				}
			}
			return firstErr
		},
	}
	cmd.Flags().StringSliceVarP(&files, "filename", "f", nil, "manifest file, directory, or - for stdin")
	cmd.Flags().StringVarP(&selector, "selector", "l", "", "delete the objects of RESOURCE matching this label selector")
	cmd.Flags().BoolVar(&all, "all", false, "delete every object of RESOURCE in the namespace")
	cmd.Flags().BoolVar(&force, "force", false, "remove the object at once without waiting for its node")
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the node has removed the pod")
	cmd.Flags().DurationVar(&timeout, "timeout", 60*time.Second, "how long --wait waits")
	return cmd
}

func waitGone(ctx context.Context, s *store.Store, k *api.Kind, ns, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := s.Get(ctx, k, ns, name)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s %q still terminating after %s: is its node's agent running? (--force removes it from the store)", strings.ToLower(k.GVK.Kind), name, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
