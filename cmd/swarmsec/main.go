// Command swarmsec is a declarative network-security controller for Docker
// Swarm: it reads NetworkPolicy manifests and makes the cluster match them.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code out of a command. Without err the
// command already said what it had to say; with it, main prints err, as it
// does any other error (which exits 1).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return fmt.Sprintf("exit status %d", e.code)
}

func (e exitError) Unwrap() error { return e.err }

// commands are registered by the files of this package from init, so each
// command lives in its own file.
var commands []func(*globalOptions) *cobra.Command

func register(f func(*globalOptions) *cobra.Command) { commands = append(commands, f) }

func newRootCmd() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:           "swarmsec",
		Short:         "Network policy for Docker Swarm: encrypted, segmented overlay networks from YAML manifests",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	g.addFlags(root)
	for _, f := range commands {
		root.AddCommand(f(g))
	}
	return root
}

func main() {
	err := newRootCmd().Execute()
	if err == nil {
		return
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "swarmsec:", ee.err)
		}
		os.Exit(ee.code)
	}
	fmt.Fprintln(os.Stderr, "swarmsec:", err)
	os.Exit(1)
}
