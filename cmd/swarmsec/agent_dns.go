package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmsec/swarmsec/agent/dns"
	"github.com/swarmsec/swarmsec/agent/tasks"
)

// dnsFlags are the agent's flags for the lookups to the embedded resolver.
type dnsFlags struct {
	enabled bool
	report  time.Duration
	window  time.Duration
	maxKeys int
}

func (f *dnsFlags) add(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&f.enabled, "dns", true, "record the local tasks' lookups to Swarm's embedded resolver (an nftables table and NFLOG in each task's network namespace, needs CAP_NET_ADMIN and CAP_SYS_ADMIN) and log them aggregated, for swarmsec flows --dns and audit")
	cmd.Flags().DurationVar(&f.report, "dns-report", time.Minute, "how often the aggregated lookups are logged")
	cmd.Flags().DurationVar(&f.window, "dns-window", dns.DefaultWindow, "a lookup aggregate idle this long is forgotten")
	cmd.Flags().IntVar(&f.maxKeys, "dns-max", dns.DefaultMaxKeys, "most distinct lookups (service, name, type, answer class) kept; a new one beyond evicts the least recently seen")
}

func (f *dnsFlags) check() error {
	if f.report < time.Second || f.window < f.report || f.maxKeys < 1 {
		return fmt.Errorf("--dns-report %s, --dns-window %s, --dns-max %d: want 1s <= report <= window and a bound of at least 1", f.report, f.window, f.maxKeys)
	}
	return nil
}

func (f *dnsFlags) watcher(e tasks.Engine, node, proc string, log *slog.Logger) *dns.Watcher {
	return &dns.Watcher{
		Engine: e, ProcDir: proc, Node: node, Log: log, Report: f.report, Group: dns.DefaultGroup,
		Agg: &dns.Aggregator{MaxKeys: f.maxKeys, Window: f.window},
	}
}
