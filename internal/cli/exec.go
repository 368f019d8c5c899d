package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/sandbox"
	"github.com/podnet/podnet/internal/shim"
	"github.com/podnet/podnet/internal/store"
	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// exitError carries a command's exit code out of `podnet exec`.
type exitError struct{ code int }

func (e *exitError) Error() string {
	return fmt.Sprintf("command terminated with exit code %d", e.code)
}

// getPod resolves what exec and logs take: a pod's name, pod/NAME, or
// (as kubectl) deployment/NAME, replicaset/NAME or service/NAME, which
// mean one of the pods its selector picks (a running one first).
func getPod(cmd *cobra.Command, g *globals, name string) (*corev1.Pod, error) {
	ctx := cmd.Context()
	s, done, err := g.store(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	k, _ := api.KindOf(&corev1.Pod{})
	if strings.Contains(name, "/") {
		ok, names, err := resourceArgs([]string{name})
		if err != nil {
			return nil, err
		}
		name = names[0]
		if ok != k {
			return podOf(ctx, g, s, ok, name)
		}
	}
	o, err := s.Get(ctx, k, g.namespace, name)
	if err != nil {
		return nil, friendly(err)
	}
	return o.(*corev1.Pod), nil
}

// podOf picks a pod of a deployment, replicaset or service by its
// selector: a running one if any, else the first by name.
func podOf(ctx context.Context, g *globals, s *store.Store, k *api.Kind, name string) (*corev1.Pod, error) {
	switch k.New().(type) {
	case *appsv1.Deployment, *appsv1.ReplicaSet, *corev1.Service:
	default:
		return nil, fmt.Errorf("cannot pick a pod of %s: give a pod, deployment, replicaset or service", k.Resource)
	}
	o, err := s.Get(ctx, k, g.namespace, name)
	if err != nil {
		return nil, friendly(err)
	}
	var sel labels.Selector
	switch v := o.(type) {
	case *appsv1.Deployment:
		sel, err = metav1.LabelSelectorAsSelector(v.Spec.Selector)
	case *appsv1.ReplicaSet:
		sel, err = metav1.LabelSelectorAsSelector(v.Spec.Selector)
	case *corev1.Service:
		if len(v.Spec.Selector) == 0 {
			return nil, fmt.Errorf("service %q has no selector, so no pods of its own", name)
		}
		sel = labels.SelectorFromSet(v.Spec.Selector)
	default:
		return nil, fmt.Errorf("cannot pick a pod of %s: give a pod, deployment, replicaset or service", k.Resource)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %q: selector: %w", strings.ToLower(k.GVK.Kind), name, err)
	}
	list, _, err := s.List(ctx, podKindOf(), g.namespace)
	if err != nil {
		return nil, err
	}
	var pods []*corev1.Pod
	for _, o := range list {
		if p := o.(*corev1.Pod); p.DeletionTimestamp == nil && sel.Matches(labels.Set(p.Labels)) {
			pods = append(pods, p)
		}
	}
	if len(pods) == 0 {
		return nil, fmt.Errorf("%s/%s has no pods", kindName(k), name)
	}
	sort.SliceStable(pods, func(i, j int) bool {
		ri, rj := pods[i].Status.Phase == corev1.PodRunning, pods[j].Status.Phase == corev1.PodRunning
		if ri != rj {
			return ri
		}
		return pods[i].Name < pods[j].Name
	})
	if len(pods) > 1 {
		fmt.Fprintf(g.errOut, "Found %d pods, using pod/%s\n", len(pods), pods[0].Name)
	}
	return pods[0], nil
}

func newExec(g *globals) *cobra.Command {
	var container string
	cmd := &cobra.Command{
		Use:   "exec (POD | TYPE/NAME) -- CMD [ARGS...]",
		Short: "Run a command in a pod's network namespace (with its resolv.conf and hosts)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return fmt.Errorf("usage: podnet exec POD -- CMD [ARGS...]")
			}
			p, err := getPod(cmd, g, args[0])
			if err != nil {
				return err
			}
			if p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("pod %s is %s, not Running", p.Name, podStatus(p))
			}
			rec := &sandbox.Record{UID: p.UID, Mode: sandbox.Mode(api.NetworkMode(p))}
			if rec.Mode != sandbox.ModeHost {
				rec.NetNS = sandbox.NetNSName(p.UID)
			} else if p.Spec.NodeName != "" {
				// A host-network pod's own resolv.conf, when the sandbox
				// gave it one (ClusterFirstWithHostNet, None).
				nodeDir := g.nodeStateDir(cmd.Context(), p.Spec.NodeName, DefaultAgentStateDir, false)
				if f := sandbox.HostResolvConfPath(nodeDir, p.UID); fileExists(f) {
					rec.ResolvConf = f
				}
			}
			c := sandbox.ExecCommand("", rec, args[1:])
			c.Stdin, c.Stdout, c.Stderr = cmd.InOrStdin(), g.out, g.errOut
			hostNS := ""
			if rec.Mode == sandbox.ModeHost {
				hostNS = g.nodeNetNS(cmd.Context(), p.Spec.NodeName)
			}
			err = runIn(hostNS, c)
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				os.Exit(ee.ExitCode())
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&container, "container", "c", "", "container (all of a pod's containers share its network)")
	return cmd
}

func newLogs(g *globals) *cobra.Command {
	var container, stateDir string
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs (POD | TYPE/NAME) [-c CONTAINER] [-f]",
		Short: "Print a container's output (on the machine running the pod's node)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := getPod(cmd, g, args[0])
			if err != nil {
				return err
			}
			if container == "" {
				if len(p.Spec.Containers) > 1 {
					return fmt.Errorf("pod %s has %d containers; choose one with -c", p.Name, len(p.Spec.Containers))
				}
				container = p.Spec.Containers[0].Name
			}
			if p.Spec.NodeName == "" {
				return fmt.Errorf("pod %s is not on a node yet", p.Name)
			}
			nodeDir := g.nodeStateDir(cmd.Context(), p.Spec.NodeName, stateDir, cmd.Flags().Changed("state-dir"))
			path := filepath.Join(sandbox.ContainerDir(nodeDir, p.UID, container), shim.LogFile)
			f, err := os.Open(path)
			if err != nil {
				return fmt.Errorf("logs of %s/%s: %w (is the pod's node on this machine? see --state-dir)", p.Name, container, err)
			}
			defer f.Close()
			for {
				if _, err := io.Copy(g.out, f); err != nil {
					return err
				}
				if !follow {
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(200 * time.Millisecond):
				}
			}
		},
	}
	cmd.Flags().StringVarP(&container, "container", "c", "", "container name")
	cmd.Flags().StringVar(&stateDir, "state-dir", DefaultAgentStateDir, "the agent's state directory")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output")
	return cmd
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
