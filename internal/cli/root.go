// Package cli is podnet's command line, in kubectl's habits: get, apply -f,
// delete, describe, run, exec, logs, with -o wide|yaml|json. It also hosts
// the long-running modes (server, agent, up, dns, ingress) and the internal
// shim.
//
// Commands talk to the store directly; validation and defaulting come from
// internal/api, the same code the agents use.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/podnet/podnet/internal/cluster"
	"github.com/podnet/podnet/internal/store"
	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// globals are the flags every command shares.
type globals struct {
	endpoints []string
	caFile    string
	certFile  string
	keyFile   string
	namespace string
	logLevel  string
	out       io.Writer
	errOut    io.Writer

	// clusterName is --cluster (or $PODNET_CLUSTER): a cluster of the
	// context file.
	clusterName string
	// dialNetNS is the namespace the store is dialled from (a local
	// cluster's control plane), "" for our own.
	dialNetNS string
	// cluster is the context entry in use, if any.
	cluster *cluster.Entry
}

// Execute runs the command line and returns the process exit code.
func Execute() int {
	root := NewRoot(os.Stdout, os.Stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	return 0
}

// NewRoot builds the command tree writing to out and errOut.
func NewRoot(out, errOut io.Writer) *cobra.Command {
	g := &globals{out: out, errOut: errOut}
	root := &cobra.Command{
		Use:           "podnet",
		Short:         "podnet: a real cluster network for Linux",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(out)
	root.SetErr(errOut)
	pf := root.PersistentFlags()
	defEndpoints := []string{store.DefaultClientURL}
	if e := os.Getenv("PODNET_ETCD_ENDPOINTS"); e != "" {
		defEndpoints = strings.Split(e, ",")
	}
	pf.StringSliceVar(&g.endpoints, "etcd-endpoints", defEndpoints, "etcd endpoints of the podnet store (env PODNET_ETCD_ENDPOINTS)")
	pf.StringVar(&g.caFile, "etcd-cafile", os.Getenv("PODNET_ETCD_CAFILE"), "CA bundle to verify the etcd servers")
	pf.StringVar(&g.certFile, "etcd-certfile", os.Getenv("PODNET_ETCD_CERTFILE"), "client certificate for etcd")
	pf.StringVar(&g.keyFile, "etcd-keyfile", os.Getenv("PODNET_ETCD_KEYFILE"), "client key for etcd")
	pf.StringVarP(&g.namespace, "namespace", "n", "default", "namespace of the objects")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	pf.StringVar(&g.clusterName, "cluster", os.Getenv(cluster.ClusterEnv), "cluster of the context file to use (env "+cluster.ClusterEnv+"; default: the current one; file: $"+cluster.ConfigEnv+" or ~/.podnet/config)")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error { return g.resolveCluster(cmd) }

	root.AddCommand(
		newApply(g), newGet(g), newDescribe(g), newDelete(g),
		newRun(g), newExec(g), newLogs(g),
		newServer(g), newAgent(g), newUp(g),
		newShim(), newEchoServer(g), newCluster(g),
		newCreate(g), newScale(g), newExpose(g), newRollout(g),
		newLabel(g, true), newLabel(g, false),
		newDNS(g), newIngressServer(g),
	)
	return root
}

func (g *globals) logger() *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(g.errOut, &slog.HandlerOptions{Level: lvl}))
}

func (g *globals) clientConfig() store.ClientConfig {
	return store.ClientConfig{Endpoints: g.endpoints, CAFile: g.caFile, CertFile: g.certFile, KeyFile: g.keyFile, NetNS: g.dialNetNS}
}

// resolveCluster picks the store a client command talks to: explicit
// --etcd-endpoints (or $PODNET_ETCD_ENDPOINTS) win; else the cluster named
// by --cluster (or $PODNET_CLUSTER); else the context file's current
// cluster; else the single-machine default. The long-running modes and
// `podnet cluster` (which reads the context file itself) are left alone.
func (g *globals) resolveCluster(cmd *cobra.Command) error {
	top := cmd
	for top.HasParent() && top.Parent().HasParent() {
		top = top.Parent()
	}
	switch top.Name() {
	case "server", "agent", "up", "shim", "echo-server", "cluster", "help", "completion", "dns", "ingress":
		return nil
	}
	explicit := cmd.Flags().Changed("etcd-endpoints") || envSet("PODNET_ETCD_ENDPOINTS")
	path := cluster.ConfigPath()
	if explicit && g.clusterName == "" {
		return nil
	}
	cfg, err := cluster.LoadConfig(path)
	if err != nil {
		return err
	}
	e, err := cfg.Select(g.clusterName, path)
	if err != nil || e == nil {
		return err
	}
	g.cluster = e
	if explicit {
		return nil
	}
	g.endpoints, g.dialNetNS = e.EtcdEndpoints, e.NetNS
	if g.caFile == "" && g.certFile == "" && g.keyFile == "" {
		g.caFile, g.certFile, g.keyFile = e.CAFile, e.CertFile, e.KeyFile
	}
	return nil
}

// store connects to the store and checks that it answers, so a missing
// server is one clear error instead of a timeout deep in a command.
func (g *globals) store(ctx context.Context) (*store.Store, func(), error) {
	cli, err := store.Connect(g.clientConfig())
	if err != nil {
		return nil, nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := cli.Get(cctx, store.Prefix, store.CountOnly()...); err != nil {
		cli.Close()
		if g.cluster != nil {
			return nil, nil, fmt.Errorf("cannot reach the store of cluster %q at %s (see `podnet cluster list`): %w", g.cluster.Name, strings.Join(g.endpoints, ","), err)
		}
		return nil, nil, fmt.Errorf("cannot reach the podnet store at %s (is `podnet up` or `podnet server` running? see --etcd-endpoints): %w", strings.Join(g.endpoints, ","), err)
	}
	return store.New(cli), func() { cli.Close() }, nil
}

// friendly strips the API error wrapper kubectl users don't see.
func friendly(err error) error {
	var se apierrors.APIStatus
	if errors.As(err, &se) {
		return errors.New(se.Status().Message)
	}
	return err
}
