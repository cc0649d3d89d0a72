package main

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmsec/swarmsec/internal/server"
)

// Stamped at build time (make build, make image): -ldflags -X.
var (
	version = "dev"
	commit  = "unknown"
	date    = "unknown"
)

func init() {
	register(newVersionCmd)
	register(newHealthCmd)
}

func newVersionCmd(*globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and build date",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "swarmsec %s (commit %s, built %s, %s)\n", version, commit, date, runtime.Version())
			return err
		},
	}
}

// newHealthCmd is the container's health check: the image has no shell.
func newHealthCmd(*globalOptions) *cobra.Command {
	var (
		addr    string
		ready   bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Exit 0 when a running controller answers /healthz (or /readyz with --ready), 1 otherwise",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/healthz"
			if ready {
				path = "/readyz"
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %s", path, resp.Status)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "listen", server.DefaultAddr, "the controller's --listen address")
	cmd.Flags().BoolVar(&ready, "ready", false, "check /readyz instead of /healthz")
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for an answer")
	return cmd
}
