package cli

import (
	"os"

	"github.com/podnet/podnet/internal/shim"
	"github.com/spf13/cobra"
)

func newShim() *cobra.Command {
	return &cobra.Command{
		Use:                "shim --dir DIR",
		Short:              "Supervise one container (started by the agent; internal)",
		Hidden:             true,
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			os.Exit(shim.Main(args))
			return nil
		},
	}
}
