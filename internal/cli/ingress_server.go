package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/podnet/podnet/internal/api"
	"github.com/podnet/podnet/internal/ingress"
	"github.com/podnet/podnet/internal/ingress/proxy"
	"github.com/podnet/podnet/internal/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
)

type ingressFlags struct {
	httpAddr, httpsAddr, metricsAddr string
	pidfile, nodeName                string
	accessLog                        bool
}

// newIngressServer is `podnet ingress`, the node's ingress controller and
// proxy: a long-lived process (the agent starts it detached and adopts it
// across its own restarts) that serves the cluster's Ingresses on the
// node's HTTP and HTTPS ports.
func newIngressServer(g *globals) *cobra.Command {
	var f ingressFlags
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "ingress [--http-addr IP:80] [--https-addr IP:443] [--metrics-addr IP:10254]",
		Short: "Run the node's ingress controller: serve the cluster's Ingresses over HTTP and HTTPS",
		Long: `Run the node's ingress controller: an HTTP and HTTPS reverse proxy serving
the Ingresses of class podnet, read from the store (list + watch) and
swapped in atomically on every change. It starts serving once every kind
(Ingress, IngressClass, Service, EndpointSlice, Secret) has been listed;
until then connections wait in the listen queue. /metrics (Prometheus,
ingress-nginx's series) and /healthz are on --metrics-addr. SIGTERM or
SIGINT: in-flight requests finish (for at most 30s), then it exits.
One access log line per request goes to standard output as JSON; the
controller's own log to standard error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer cancel()
			proxy.TuneGC() // this process is the proxy
			return runIngress(ctx, g, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.httpAddr, "http-addr", ":80", "HTTP listen address (empty: no HTTP)")
	fl.StringVar(&f.httpsAddr, "https-addr", ":443", "HTTPS listen address (empty: no HTTPS)")
	fl.StringVar(&f.metricsAddr, "metrics-addr", ":10254", "listen address of /metrics and /healthz (empty: none)")
	fl.StringVar(&f.pidfile, "pidfile", "", "write the pid here once listening; removed on exit")
	fl.StringVar(&f.nodeName, "node-name", host, "this node's name (the metrics' controller_pod label)")
	fl.BoolVar(&f.accessLog, "access-log", true, "log every request (JSON, one line each, on standard output)")
	return cmd
}

func runIngress(ctx context.Context, g *globals, f *ingressFlags) error {
	if ctx == nil {
		ctx = context.Background()
	}
	log := g.logger().With("component", "ingress", "node", f.nodeName)
	if f.httpAddr == "" && f.httpsAddr == "" {
		return errors.New("ingress: --http-addr and --https-addr are both empty: nothing to serve")
	}
	// Listen first: a port taken is an error at once, and connections
	// arriving before the first table wait in the listen queue.
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	listen := func(flag, addr string) (net.Listener, error) {
		if addr == "" {
			return nil, nil
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("ingress: --%s: %w", flag, err)
		}
		lns = append(lns, ln)
		return ln, nil
	}
	httpLn, err := listen("http-addr", f.httpAddr)
	if err != nil {
		return err
	}
	httpsLn, err := listen("https-addr", f.httpsAddr)
	if err != nil {
		return err
	}
	metricsLn, err := listen("metrics-addr", f.metricsAddr)
	if err != nil {
		return err
	}
	if f.pidfile != "" {
		if err := writePidfile(f.pidfile); err != nil {
			return fmt.Errorf("ingress: %w", err)
		}
		defer removePidfile(f.pidfile)
	}
	cli, err := store.Connect(g.clientConfig())
	if err != nil {
		return fmt.Errorf("ingress: %w", err)
	}
	defer cli.Close()
	s := store.New(cli)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	accessLevel := slog.LevelInfo
	if !f.accessLog {
		accessLevel = slog.LevelWarn
	}
	plog := slog.New(slog.NewJSONHandler(g.out, &slog.HandlerOptions{Level: accessLevel}))
	p := proxy.New(proxy.Options{Logger: plog, Registry: reg, NodeName: f.nodeName, Namespace: api.DNSNamespace})

	var synced atomic.Bool
	ready := make(chan struct{})
	if metricsLn != nil {
		srv := metricsServer(reg, &synced)
		go func() {
			if err := srv.Serve(metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "err", err)
			}
		}()
		defer srv.Close()
	}
	cctx, stopController := context.WithCancel(ctx)
	defer stopController()
	ctlDone := make(chan error, 1)
	go func() {
		ctlDone <- ingress.Run(cctx, ingress.Config{
			Source: s, Proxy: p, Logger: log, Registry: reg, NodeName: f.nodeName, Namespace: api.DNSNamespace,
			OnSwap: func(ingress.Swap) {
				if synced.CompareAndSwap(false, true) {
					close(ready)
				}
			},
		})
	}()
	log.Info("listening; serving once the store has been read", "http", addrOf(httpLn), "https", addrOf(httpsLn), "metrics", addrOf(metricsLn), "pid", os.Getpid())
	select {
	case <-ctx.Done():
		return nil
	case err := <-ctlDone:
		return err
	case <-ready:
	}
	log.Info("serving")
	start := time.Now()
	err = p.Serve(ctx, httpLn, httpsLn)
	if ctx.Err() != nil {
		log.Info("stopped; in-flight requests finished", "shutdown", time.Since(start).Round(time.Millisecond))
	}
	return err
}

// metricsServer serves /metrics and /healthz (200 once serving, 503
// before the first table).
func metricsServer(reg *prometheus.Registry, synced *atomic.Bool) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !synced.Load() {
			http.Error(w, "not synced: the store has not been read yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// writePidfile writes our pid to file atomically.
func writePidfile(file string) error {
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	if err := os.Rename(tmp, file); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

// removePidfile removes file if it still names us (a successor may have
// written its own).
func removePidfile(file string) {
	b, err := os.ReadFile(file)
	if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		os.Remove(file)
	}
}
