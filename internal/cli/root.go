// Package cli is podnet's command line, in kubectl's habits: get, apply -f,
// delete, describe, run, exec, logs, with -o wide|yaml|json. It also hosts
// the long-running modes (server, agent, up) and the internal shim.
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

	root.AddCommand(
		newApply(g), newGet(g), newDescribe(g), newDelete(g),
		newRun(g), newExec(g), newLogs(g),
		newServer(g), newAgent(g), newUp(g),
		newShim(), newEchoServer(g),
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
	return store.ClientConfig{Endpoints: g.endpoints, CAFile: g.caFile, CertFile: g.certFile, KeyFile: g.keyFile}
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
