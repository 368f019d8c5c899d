package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/store"
	corev1 "k8s.io/api/core/v1"
)

func init() { describers["ConfigMap"] = describeConfigMap }

// describeConfigMap prints a ConfigMap as kubectl does (each key, a
// dashed line, its value), then the nodes' DNS reload errors when the
// node DNS servers reported any on it (see internal/agent/nodedns.go).
func describeConfigMap(_ context.Context, _ *store.Store, o api.Object, w io.Writer) error {
	c := o.(*corev1.ConfigMap)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "Name:\t%s\n", c.Name)
	fmt.Fprintf(tw, "Namespace:\t%s\n", c.Namespace)
	fmt.Fprintf(tw, "Labels:\t%s\n", kv(c.Labels))
	fmt.Fprintf(tw, "Annotations:\t%s\n", annotations(c.Annotations))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nData\n====\n")
	for _, k := range sortedKeys(c.Data) {
		fmt.Fprintf(w, "%s:\n----\n%s\n", k, strings.TrimSuffix(c.Data[k], "\n"))
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "\nBinaryData\n====\n")
	bkeys := make([]string, 0, len(c.BinaryData))
	for k := range c.BinaryData {
		bkeys = append(bkeys, k)
	}
	sort.Strings(bkeys)
	for _, k := range bkeys {
		fmt.Fprintf(w, "%s: %d bytes\n", k, len(c.BinaryData[k]))
	}
	var errs []string
	for _, k := range sortedKeys(c.Annotations) {
		if node, ok := strings.CutPrefix(k, api.AnnotationDNSErrorPrefix); ok {
			errs = append(errs, fmt.Sprintf("  %s: %s", node, c.Annotations[k]))
		}
	}
	if len(errs) > 0 {
		fmt.Fprintf(w, "\nNode DNS errors (the previous Corefile keeps serving):\n%s\n", strings.Join(errs, "\n"))
	}
	fmt.Fprintf(w, "\nEvents:  <none>\n")
	return nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
