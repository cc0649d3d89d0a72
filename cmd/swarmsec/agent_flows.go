package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmsec/swarmsec/agent/flows"
)

// flowFlags are the agent's flags for observed flows.
type flowFlags struct {
	enabled      bool
	poll, report time.Duration
	window       time.Duration
	maxKeys      int
}

func (f *flowFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.enabled, "flows", true, "read the local tasks' connections (conntrack in each task's network namespace, needs CAP_SYS_ADMIN) and log them aggregated, for swarmsec flows")
	cmd.Flags().DurationVar(&f.poll, "flows-poll", 10*time.Second, "how often the tasks' conntrack is read")
	cmd.Flags().DurationVar(&f.report, "flows-report", time.Minute, "how often the aggregated flows are logged")
	cmd.Flags().DurationVar(&f.window, "flows-window", flows.DefaultWindow, "an aggregate idle this long is forgotten")
	cmd.Flags().IntVar(&f.maxKeys, "flows-max", flows.DefaultMaxKeys, "most distinct flows kept; connections beyond are counted as dropped")
}

func (f *flowFlags) check() error {
	if f.poll < time.Second || f.report < f.poll || f.window < f.report || f.maxKeys < 1 {
		return fmt.Errorf("--flows-poll %s, --flows-report %s, --flows-window %s, --flows-max %d: want 1s <= poll <= report <= window and a bound of at least 1", f.poll, f.report, f.window, f.maxKeys)
	}
	return nil
}

// watcher reads the tasks' namespaces as the per-task rules do: through
// proc (the agent's --proc) when set, by their sandbox keys otherwise.
func (f *flowFlags) watcher(d flows.Docker, node, proc string, log *slog.Logger) *flows.Watcher {
	return &flows.Watcher{
		Docker: d, ProcRoot: proc, Node: node, Log: log, Poll: f.poll, Report: f.report,
		Agg: &flows.Aggregator{MaxKeys: f.maxKeys, Window: f.window},
	}
}
