// Command podnet is the CLI, server, node agent and shim. See internal/cli.
package main

import (
	"os"

	"github.com/podnet/podnet/internal/cli"
)

func main() { os.Exit(cli.Execute()) }
