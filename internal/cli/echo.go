package cli

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
)

// newEchoServer is the sample app of the demo and tests: an HTTP server that
// answers with who it is and who asked, and optionally a UDP echo.
func newEchoServer(g *globals) *cobra.Command {
	var listen, udp, name string
	cmd := &cobra.Command{
		Use:   "echo-server [--listen :8080] [--udp :8081]",
		Short: "A sample app: HTTP server answering with its pod name and the client's address",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				// A pod's containers get HOSTNAME=<pod name> (they share
				// the node's UTS namespace, so os.Hostname is the node's).
				if name = os.Getenv("HOSTNAME"); name == "" {
					name, _ = os.Hostname()
				}
			}
			if udp != "" {
				pc, err := net.ListenPacket("udp", udp)
				if err != nil {
					return fmt.Errorf("echo-server: --udp %s: %w", udp, err)
				}
				go func() {
					buf := make([]byte, 65536)
					for {
						n, addr, err := pc.ReadFrom(buf)
						if err != nil {
							return
						}
						reply := fmt.Sprintf("%s from %s: %s", name, addr, buf[:n])
						pc.WriteTo([]byte(reply), addr)
					}
				}()
			}
			mux := http.NewServeMux()
			mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				host, _, _ := net.SplitHostPort(r.RemoteAddr)
				fmt.Fprintf(w, "hello from %s\nclient: %s\npath: %s\n", name, host, r.URL.Path)
			})
			mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
			srv := &http.Server{Addr: listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("echo-server: --listen %s: %w", listen, err)
			}
			fmt.Fprintf(g.errOut, "echo-server %s listening on %s\n", name, strings.TrimSpace(listen))
			// SIGTERM: finish the requests in flight, then exit 0, as a
			// well-behaved app does when its pod is deleted.
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ln) }()
			select {
			case err := <-served:
				return err
			case <-ctx.Done():
			}
			shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			fmt.Fprintf(g.errOut, "echo-server %s: terminating, finishing requests in flight\n", name)
			return srv.Shutdown(shut)
		},
	}
	cmd.Flags().StringVar(&listen, "listen", ":8080", "HTTP listen address")
	cmd.Flags().StringVar(&udp, "udp", "", "also echo UDP datagrams on this address")
	cmd.Flags().StringVar(&name, "name", os.Getenv("POD_NAME"), "name to answer with (default: env POD_NAME, else HOSTNAME, which podnet sets to the pod's name)")
	return cmd
}
