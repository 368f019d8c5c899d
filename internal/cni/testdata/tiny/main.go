// Command tiny is the only binary of the image the containerd tests build:
// with no arguments it is the pod's pause process (it sleeps until
// SIGTERM or SIGINT), with "serve ADDR" it is a container that answers
// every TCP connection on ADDR with "hello <peer address>" and closes it.
// It is built static (CGO_ENABLED=0) so the image needs nothing else.
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	if len(os.Args) == 3 && os.Args[1] == "serve" {
		l, err := net.Listen("tcp", os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "tiny:", err)
			os.Exit(1)
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
				fmt.Fprintf(c, "hello %s\n", host)
				c.Close()
			}
		}()
	}
	<-sig
}
