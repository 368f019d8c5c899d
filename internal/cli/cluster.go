package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/cluster"
	"github.com/podnet/podnet/internal/netns"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
)

func newCluster(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "A whole cluster on this machine: nodes as network namespaces on an underlay switch",
	}
	cmd.AddCommand(newClusterCreate(g), newClusterList(g), newClusterDelete(g), newClusterExec(g), newClusterUse(g),
		newClusterAddNode(g), newClusterRemoveNode(g))
	return cmd
}

func newClusterCreate(g *globals) *cobra.Command {
	var spec cluster.Spec
	var dir string
	var timeout time.Duration
	var externalEtcd bool
	cmd := &cobra.Command{
		Use:   "create [--name N] [--nodes 3] [--backend vxlan|host-gw] [--two-subnets] [--external-etcd|--etcd-members N]",
		Short: "Create a local cluster and make it the current one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireRoot("cluster create"); err != nil {
				return err
			}
			if externalEtcd && !cmd.Flags().Changed("etcd-members") {
				spec.EtcdMembers = 3
			}
			ctx, cancel := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer cancel()
			self, err := os.Executable()
			if err != nil {
				return err
			}
			if self, err = filepath.EvalSymlinks(self); err != nil {
				return err
			}
			r, err := cluster.NewRecord(spec, dir, self)
			if err != nil {
				return err
			}
			path := cluster.ConfigPath()
			if err := cluster.Create(ctx, r, cluster.CreateOptions{Progress: g.out, Logger: g.logger(), Timeout: timeout}); err != nil {
				return fmt.Errorf("cluster %s: %w", r.Topology.Spec.Name, err)
			}
			if err := cluster.UpdateConfig(path, func(c *cluster.Config) error {
				c.Put(r.Entry())
				c.CurrentCluster = r.Topology.Spec.Name
				return nil
			}); err != nil {
				return err
			}
			name := r.Topology.Spec.Name
			n1 := r.Topology.Nodes()[0]
			fmt.Fprintf(g.out, " ✓ context %q is now current (%s)\n\n", name, path)
			fmt.Fprintf(g.out, "Use it:\n")
			fmt.Fprintf(g.out, "  podnet get nodes -o wide\n")
			fmt.Fprintf(g.out, "  podnet run web --node %s -p 8080:8080 --wait -- podnet echo-server --listen :8080\n", n1.Name)
			fmt.Fprintf(g.out, "  podnet cluster exec outside -- curl -s http://%s:8080/\n", n1.IP())
			fmt.Fprintf(g.out, "  podnet cluster exec %s -- ip route\n", n1.Name)
			fmt.Fprintf(g.out, "  podnet cluster delete --name %s\n", name)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Name, "name", "podnet", "cluster name")
	f.IntVar(&spec.Nodes, "nodes", 3, "number of nodes")
	f.StringVar(&spec.Backend, "backend", "vxlan", "overlay backend: vxlan or host-gw")
	f.BoolVar(&spec.TwoSubnets, "two-subnets", false, "put even nodes on a second subnet (192.168.251.0/24) behind a router")
	f.StringVar(&spec.ClusterCIDR, "cluster-cidr", "10.244.0.0/16", "the pod network, split into per-node ranges")
	f.BoolVar(&externalEtcd, "external-etcd", false, "keep the store in an external 3-member etcd cluster (Debian's etcd, hosts etcd1..3 on the underlay) instead of the server's embedded etcd")
	f.StringVar(&spec.ServiceCIDR, "service-cluster-ip-range", "", "the server's Service cluster IP range (default 10.96.0.0/12)")
	f.StringVar(&spec.NodePortRange, "service-node-port-range", "", "the server's nodePort range (default 30000-32767)")
	f.DurationVar(&spec.PodEvictionTimeout, "pod-eviction-timeout", 0, "how long a node may be NotReady before its pods are deleted (default 5m)")
	f.StringVar(&spec.LBRange, "lb-range", cluster.DefaultLBRange, "the load-balancer pool (first-last or a CIDR) on the outside host's segment 192.168.250.0/24")
	f.DurationVar(&spec.NodeLeaseTTL, "node-lease-ttl", 0, "each agent's --node-lease-ttl: how long after an agent dies its node turns NotReady and its load-balancer addresses move (default: the agent's, 10s)")
	f.StringVar(&spec.CNIVersion, "cni-version", "", "cniVersion of each node's conflist, passed to every agent (default: the agent's, 1.0.0)")
	f.IntVar(&spec.EtcdMembers, "etcd-members", 0, "members of the external etcd cluster (implies --external-etcd; 0: the server's embedded etcd)")
	f.StringVar(&dir, "dir", "", "parent of the cluster's directory (env "+cluster.DirEnv+", default "+cluster.DefaultDir+")")
	f.DurationVar(&timeout, "timeout", 2*time.Minute, "give up (and remove what was made) after this long")
	return cmd
}

// selectedName is the cluster a cluster subcommand acts on: --name, else
// --cluster or $PODNET_CLUSTER, else the current one, else "podnet".
func selectedName(g *globals, name string) (string, *cluster.Config, error) {
	cfg, err := cluster.LoadConfig(cluster.ConfigPath())
	if err != nil {
		return "", nil, err
	}
	for _, n := range []string{name, g.clusterName, cfg.CurrentCluster} {
		if n != "" {
			return n, cfg, nil
		}
	}
	return "podnet", cfg, nil
}

// findRecord locates a cluster's record: through its context entry, else
// in the clusters directory.
func findRecord(cfg *cluster.Config, name string) (*cluster.Record, error) {
	if e := cfg.Get(name); e != nil && e.Dir != "" {
		return cluster.LoadRecord(e.Dir)
	}
	return cluster.LoadRecord(filepath.Join(cluster.ClustersDir(), name))
}

func newClusterList(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the clusters of the context file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cluster.LoadConfig(cluster.ConfigPath())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.out, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tNODES\tBACKEND\tSTATUS\tCURRENT")
			for _, e := range cfg.Clusters {
				nodes, backend, status := "-", e.Backend, "external"
				if e.Dir != "" {
					if r, err := cluster.LoadRecord(e.Dir); err != nil {
						status = "Missing"
					} else {
						nodes = fmt.Sprint(len(r.Agents))
						backend = r.Topology.Spec.Backend
						status = cluster.Status(r)
					}
				}
				cur := ""
				if e.Name == cfg.CurrentCluster {
					cur = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Name, nodes, orNone(backend), status, cur)
			}
			return tw.Flush()
		},
	}
}

func newClusterDelete(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "delete [--name N]",
		Short: "Remove a local cluster: processes, pods, namespaces, links, files and its context entry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireRoot("cluster delete"); err != nil {
				return err
			}
			name, cfg, err := selectedName(g, name)
			if err != nil {
				return err
			}
			r, err := findRecord(cfg, name)
			if err != nil {
				// No record: remove what carries the cluster's names.
				spec := cluster.Spec{Name: name}
				spec.Default()
				if err := spec.Validate(); err != nil {
					return err
				}
				r = &cluster.Record{Topology: cluster.Topology{Spec: spec}}
				if d := filepath.Join(cluster.ClustersDir(), name); exists(d) {
					r.Dir = d
				}
			}
			fmt.Fprintf(g.out, "Deleting cluster %q\n", name)
			derr := cluster.Delete(r, nil)
			cerr := cluster.UpdateConfig(cluster.ConfigPath(), func(c *cluster.Config) error {
				c.Remove(name)
				return nil
			})
			if err := errors.Join(derr, cerr); err != nil {
				return fmt.Errorf("cluster %s: %w", name, err)
			}
			fmt.Fprintf(g.out, " ✓ cluster %q deleted\n", name)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "cluster name (default: --cluster, $PODNET_CLUSTER, the current cluster, else podnet)")
	return cmd
}

func newClusterUse(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "use NAME",
		Short: "Make a cluster of the context file the current one",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := cluster.ConfigPath()
			return cluster.UpdateConfig(path, func(c *cluster.Config) error {
				if c.Get(args[0]) == nil {
					return fmt.Errorf("cluster %q is not in the context file %s", args[0], path)
				}
				c.CurrentCluster = args[0]
				return nil
			})
		},
	}
}

func newClusterExec(g *globals) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "exec outside|cp|router|etcdN|NODE -- CMD [ARGS...]",
		Short: "Run a command in one of the cluster's hosts (its network namespace only, like nsenter --net)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return fmt.Errorf("usage: podnet cluster exec outside|cp|router|etcdN|NODE -- CMD [ARGS...]")
			}
			name, cfg, err := selectedName(g, name)
			if err != nil {
				return err
			}
			r, err := findRecord(cfg, name)
			if err != nil {
				return fmt.Errorf("cluster %s: %w", name, err)
			}
			ns, ok := r.Topology.Lookup(args[0])
			if !ok {
				return fmt.Errorf("cluster %s has no host %q (try outside, cp, router or a node name)", name, args[0])
			}
			c := exec.Command(args[1], args[2:]...)
			c.Stdin, c.Stdout, c.Stderr = cmd.InOrStdin(), g.out, g.errOut
			if err := netns.Do(netns.Path(ns), c.Start); err != nil {
				return err
			}
			err = c.Wait()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				os.Exit(ee.ExitCode())
			}
			return err
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "cluster name (default: --cluster, $PODNET_CLUSTER, the current cluster)")
	return cmd
}

// localRecordDir is the directory of the selected local cluster (through
// --cluster, $PODNET_CLUSTER or the current one).
func localRecordDir(g *globals) (string, string, error) {
	name, cfg, err := selectedName(g, "")
	if err != nil {
		return "", "", err
	}
	r, err := findRecord(cfg, name)
	if err != nil {
		return name, "", fmt.Errorf("cluster %s: not a local cluster of this machine: %w", name, err)
	}
	return name, r.Dir, nil
}

// putEntry rewrites the cluster's context entry (its node list).
func putEntry(r *cluster.Record) error {
	return cluster.UpdateConfig(cluster.ConfigPath(), func(c *cluster.Config) error {
		if c.Get(r.Topology.Spec.Name) != nil {
			c.Put(r.Entry())
		}
		return nil
	})
}

func newClusterAddNode(g *globals) *cobra.Command {
	var o cluster.NodeOptions
	cmd := &cobra.Command{
		Use:   "add-node [--cluster NAME] [--name N]",
		Short: "Add a node to a running local cluster: its namespace on the underlay and its agent, waited for until Ready",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireRoot("cluster add-node"); err != nil {
				return err
			}
			name, dir, err := localRecordDir(g)
			if err != nil {
				return err
			}
			o.Progress, o.Logger = g.out, g.logger()
			r, h, err := cluster.AddNode(cmd.Context(), dir, o)
			if r != nil {
				if perr := putEntry(r); perr != nil {
					err = errors.Join(err, perr)
				}
			}
			if err != nil {
				return fmt.Errorf("cluster %s: add-node: %w", name, err)
			}
			fmt.Fprintf(g.out, " ✓ node %s (%s) added; try: podnet cluster exec %s -- nft list table inet podnet\n", h.Name, h.IP(), h.Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&o.Name, "name", "", "the node's name (default <cluster>-n<i>, i after the highest in use)")
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 2*time.Minute, "give up (and remove what was made) after this long")
	return cmd
}

func newClusterRemoveNode(g *globals) *cobra.Command {
	var o cluster.NodeOptions
	cmd := &cobra.Command{
		Use:   "remove-node NAME [--cluster NAME]",
		Short: "Remove a node from a local cluster: drain its pods, stop its agent, delete its Node and namespace",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot("cluster remove-node"); err != nil {
				return err
			}
			name, dir, err := localRecordDir(g)
			if err != nil {
				return err
			}
			o.Progress, o.Logger = g.out, g.logger()
			r, err := cluster.RemoveNode(cmd.Context(), dir, args[0], o)
			if r != nil {
				if perr := putEntry(r); perr != nil {
					err = errors.Join(err, perr)
				}
			}
			if err != nil {
				return fmt.Errorf("cluster %s: remove-node: %w", name, err)
			}
			fmt.Fprintf(g.out, " ✓ node %s removed\n", args[0])
			return nil
		},
	}
	cmd.Flags().DurationVar(&o.Timeout, "timeout", 2*time.Minute, "bound on the whole removal; the node's pods get half of it to stop gracefully")
	return cmd
}

// requireRoot: namespaces and their processes need root.
func requireRoot(what string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("podnet %s needs root: it creates and removes network namespaces", what)
	}
	return nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// node reads a Node, or nil if it cannot.
func (g *globals) node(ctx context.Context, name string) *corev1.Node {
	if name == "" {
		return nil
	}
	s, done, err := g.store(ctx)
	if err != nil {
		return nil
	}
	defer done()
	k, _ := api.KindOf(&corev1.Node{})
	o, err := s.Get(ctx, k, "", name)
	if err != nil {
		return nil
	}
	return o.(*corev1.Node)
}

// nodeNetNS is the named namespace a node runs in (a local cluster's
// node), from the Node's annotation or the context file; "" for a node
// that is a machine of its own.
func (g *globals) nodeNetNS(ctx context.Context, node string) string {
	if n := g.node(ctx, node); n != nil && n.Annotations[api.AnnotationNetNS] != "" {
		return n.Annotations[api.AnnotationNetNS]
	}
	if g.cluster != nil {
		return g.cluster.NodeNetNS(node)
	}
	return ""
}

// nodeStateDir is where a node's agent keeps its pods: <flag>/<node> if
// --state-dir was given, else the Node's annotation, else a local
// cluster's layout, else the default.
func (g *globals) nodeStateDir(ctx context.Context, node, flag string, changed bool) string {
	if !changed {
		if n := g.node(ctx, node); n != nil && n.Annotations[api.AnnotationStateDir] != "" {
			return n.Annotations[api.AnnotationStateDir]
		}
		if g.cluster != nil && g.cluster.Dir != "" {
			if r, err := cluster.LoadRecord(g.cluster.Dir); err == nil {
				return filepath.Join(r.AgentStateDir(), node)
			}
		}
	}
	return filepath.Join(flag, node)
}

// runIn runs c in the named namespace (entered by the child only, like
// nsenter --net), or where we are if ns is "".
func runIn(ns string, c *exec.Cmd) error {
	if ns == "" {
		return c.Run()
	}
	if err := netns.Do(netns.Path(ns), c.Start); err != nil {
		return err
	}
	return c.Wait()
}
