package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	pdns "github.com/podnet/podnet/internal/dns"
	_ "github.com/podnet/podnet/internal/dns/plugin/all" // every plugin
	"github.com/podnet/podnet/internal/dns/server"
	"github.com/spf13/cobra"
)

// dnsVersion is the CoreDNS release whose Corefile language and plugins
// `podnet dns` follows.
const dnsVersion = "1.15.0"

// newDNS is `podnet dns`, a Corefile-driven DNS server. Its flags are
// CoreDNS's (-conf, -dns.port, -plugins, -version, -quiet, -pidfile) and
// take one dash or two, as Go's flag package does, so scripts written for
// the coredns binary work unchanged: cobra's own parsing is off.
func newDNS(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:                "dns [-conf FILE] [-dns.port N] [-plugins] [-version]",
		Short:              "run a DNS server configured by a Corefile, as CoreDNS",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDNS(cmd.Context(), g, args)
		},
	}
}

func runDNS(ctx context.Context, g *globals, args []string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	fs := flag.NewFlagSet("podnet dns", flag.ContinueOnError)
	fs.SetOutput(g.errOut)
	conf := fs.String("conf", "", "Corefile to load (default \"Corefile\")")
	port := fs.String("dns.port", "53", "Default port")
	plugins := fs.Bool("plugins", false, "List installed plugins")
	version := fs.Bool("version", false, "Show version")
	quiet := fs.Bool("quiet", false, "Quiet mode (no initialization output)")
	pidfile := fs.String("pidfile", "", "Path to write pid file")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("dns: unexpected arguments %q", fs.Args())
	}
	if *version {
		printDNSVersion(g.out)
		return nil
	}
	if *plugins {
		fmt.Fprint(g.out, listDNSPlugins())
		return nil
	}
	file := *conf
	if file == "" {
		file = "Corefile"
	}
	var contents []byte
	var err error
	if file == "stdin" {
		contents, err = io.ReadAll(os.Stdin)
	} else {
		contents, err = os.ReadFile(file)
	}
	if err != nil {
		return fmt.Errorf("dns: reading the Corefile: %w", err)
	}
	log := g.logger().With("component", "dns")
	r, err := server.Start(pdns.Input{File: file, Contents: contents}, server.Options{Port: *port, Log: log})
	if err != nil {
		return err
	}
	if *pidfile != "" {
		if err := os.WriteFile(*pidfile, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
			r.Stop()
			return fmt.Errorf("dns: writing the pid file: %w", err)
		}
		defer os.Remove(*pidfile)
	}
	if !*quiet {
		for _, cfg := range r.Instance().Configs {
			for _, k := range cfg.Keys {
				fmt.Fprintf(g.out, "%s:%s\n", k.Zone, k.Port)
			}
		}
		printDNSVersion(g.out)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1)
	defer signal.Stop(sig)
	for {
		var s os.Signal
		select {
		case <-ctx.Done():
			return r.Stop()
		case s = <-sig:
		}
		if s == syscall.SIGUSR1 {
			in, err := readCorefile(file)
			if err == nil {
				err = r.Reload(in)
			}
			if err != nil {
				log.Error("reload failed; the previous Corefile keeps serving", "err", err)
			} else {
				log.Info("reloaded the Corefile", "file", file)
			}
			continue
		}
		return r.Stop()
	}
}

func readCorefile(file string) (pdns.Input, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return pdns.Input{}, fmt.Errorf("reading the Corefile: %w", err)
	}
	return pdns.Input{File: file, Contents: b}, nil
}

func printDNSVersion(w io.Writer) {
	rev := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 7 {
				rev = s.Value[:7]
			}
		}
	}
	fmt.Fprintf(w, "podnet-dns-%s\n%s/%s, %s, %s\n", dnsVersion, runtime.GOOS, runtime.GOARCH, runtime.Version(), rev)
}

// listDNSPlugins prints what `coredns -plugins` prints.
func listDNSPlugins() string {
	var b strings.Builder
	b.WriteString("Server types:\n  dns\n\nCaddyfile loaders:\n  flag\n  default\n\nOther plugins:\n")
	for _, p := range pdns.Plugins() {
		fmt.Fprintf(&b, "  dns.%s\n", p)
	}
	return b.String()
}
