package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/podnet/podnet/internal/api"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// kindName is how kubectl names a kind in its messages: the lower-case
// kind, qualified by its API group unless it is the core group
// ("pod", "deployment.apps", "endpointslice.discovery.k8s.io").
func kindName(k *api.Kind) string {
	n := strings.ToLower(k.GVK.Kind)
	if k.GVK.Group != "" {
		n += "." + k.GVK.Group
	}
	return n
}

// objectName is an object's kubectl name: "deployment.apps/web".
func objectName(o api.Object) string {
	k, err := api.KindOf(o)
	if err != nil {
		return o.GetName()
	}
	return kindName(k) + "/" + o.GetName()
}

// resourceArgs reads what kubectl takes for "which objects": either
// `TYPE NAME...` or `TYPE/NAME...` (one or more, all of one type here).
func resourceArgs(args []string) (*api.Kind, []string, error) {
	if len(args) == 0 {
		return nil, nil, fmt.Errorf("you must specify the type of resource and a name, e.g. deployment/web or deployment web")
	}
	if t, n, ok := strings.Cut(args[0], "/"); ok {
		k, err := api.ResourceFor(t)
		if err != nil {
			return nil, nil, err
		}
		if n == "" {
			return nil, nil, fmt.Errorf("%q: the name after / is empty", args[0])
		}
		names := []string{n}
		for _, a := range args[1:] {
			t2, n2, ok := strings.Cut(a, "/")
			if !ok || n2 == "" {
				return nil, nil, fmt.Errorf("%q: when one argument is TYPE/NAME, all must be (mixed forms are not supported)", a)
			}
			k2, err := api.ResourceFor(t2)
			if err != nil {
				return nil, nil, err
			}
			if k2 != k {
				return nil, nil, fmt.Errorf("%q: all objects must be of one type (%s)", a, k.Resource)
			}
			names = append(names, n2)
		}
		return k, names, nil
	}
	k, err := api.ResourceFor(args[0])
	if err != nil {
		return nil, nil, err
	}
	if len(args) < 2 {
		return nil, nil, fmt.Errorf("you must specify the name of the %s, e.g. %s/NAME", strings.ToLower(k.GVK.Kind), strings.ToLower(k.GVK.Kind))
	}
	return k, args[1:], nil
}

// dryRun is kubectl's --dry-run: none, client (print, send nothing) or
// server (validate and default as the store would, store nothing).
type dryRun string

const (
	dryRunNone   dryRun = "none"
	dryRunClient dryRun = "client"
	dryRunServer dryRun = "server"
)

func addDryRunFlag(cmd *cobra.Command, v *string) {
	cmd.Flags().StringVar(v, "dry-run", string(dryRunNone), `"none", "server", or "client": with client or server, only print the object that would be sent`)
	cmd.Flags().Lookup("dry-run").NoOptDefVal = string(dryRunClient)
}

func parseDryRun(s string) (dryRun, error) {
	switch d := dryRun(s); d {
	case dryRunNone, dryRunClient, dryRunServer:
		return d, nil
	case "":
		return dryRunNone, nil
	}
	return "", fmt.Errorf(`invalid --dry-run value %q: must be "none", "server", or "client"`, s)
}

// checkObjectOutput accepts the -o of commands that print what they wrote.
func checkObjectOutput(output string) error {
	switch output {
	case "", "yaml", "json", "name":
		return nil
	}
	return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: json, name, yaml", output)
}

// printWritten reports an object a command created or changed, as kubectl:
// `deployment.apps/web created`, `... (dry run)`, or the object itself with
// -o yaml|json, or its name with -o name.
func printWritten(w io.Writer, o api.Object, verb, output string, dr dryRun) error {
	api.SetTypeMeta(o)
	switch output {
	case "name":
		_, err := fmt.Fprintln(w, objectName(o))
		return err
	case "yaml":
		b, err := yaml.Marshal(o)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case "json":
		b, err := json.MarshalIndent(o, "", "    ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	suffix := ""
	switch dr {
	case dryRunClient:
		suffix = " (dry run)"
	case dryRunServer:
		suffix = " (server dry run)"
	}
	_, err := fmt.Fprintf(w, "%s %s%s\n", objectName(o), verb, suffix)
	return err
}
