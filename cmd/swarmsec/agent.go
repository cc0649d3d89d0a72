package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmsec/swarmsec/agent"
	"github.com/swarmsec/swarmsec/agent/firewall"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/internal/server"
)

func init() { register(newAgentCmd) }

// NFLOGTaskGroup is the NFLOG group of the per-task tables' drops, in each
// task's namespace (NFLOG groups are per namespace).
const NFLOGTaskGroup = 7332

// agentAddr is where the agent's endpoints listen: on the node's loopback
// (the agent runs in the host's network namespace).
const agentAddr = "127.0.0.1:9478"

func newAgentCmd(g *globalOptions) *cobra.Command {
	var (
		rules    string
		interval time.Duration
		listen   string
		window   time.Duration
		fl       flowFlags
		df       dnsFlags
		procDir  string
	)
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: keep the delivered published-port rules in this node's iptables",
		Long: `agent runs on every node (the stack file's global "agent" service, in the
host's network namespace with NET_ADMIN, SYS_ADMIN and SYS_PTRACE, the node's
/proc at /host/proc). It reads the rules the
leader delivers as a Swarm config (` + agentv1.RulesPath + `) and keeps the
published-port rules in chains of its own (` + firewall.Chain + `-A/-B) jumped
from the top of DOCKER-USER, in the iptables backend Docker uses (nf_tables or
legacy), IPv4 and IPv6, and the per-service rules (ports, directions, egress
blocks) as an nftables table in the network namespace of every local task,
with addresses from this node's engine. It resyncs every --interval and when
the engine says a task started, so rules removed come back and new tasks get
theirs. When it stops the rules stay: the last delivered state stays enforced.
It also logs, aggregated, the connections its tasks open (--flows) and the
lookups they make to Swarm's embedded resolver (--dns).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if interval < time.Second || window < time.Second {
				return fmt.Errorf("--interval %s, --events-window %s: each must be at least 1s", interval, window)
			}
			if err := fl.check(); err != nil {
				return err
			}
			if err := df.check(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			cfg := agent.Config{ProcDir: procDir, NFLOGGroup: NFLOGTaskGroup, RulesFile: rules, Interval: interval, EventsWindow: window, Log: log}
			if listen != "" {
				cfg.Listen = func(metrics http.Handler, status func() any) (agent.Server, error) {
					srv, err := server.Listen(server.Config{Addr: listen, Log: log, Metrics: metrics, Status: status})
					if err != nil {
						return nil, err
					}
					return srv, nil
				}
			}
			if cli, err := newClient(); err == nil {
				defer cli.Close()
				cfg.Docker, cfg.Tasks = cli, cli
				if fl.enabled {
					node, _ := os.Hostname() // the node's: the agent shares its namespaces
					w := fl.watcher(cli, node, procDir, log)
					cfg.Beside = append(cfg.Beside, func(ctx context.Context) { _ = w.Run(ctx) })
				}
				if df.enabled {
					node, _ := os.Hostname()
					w := df.watcher(cli, node, procDir, log)
					cfg.Beside = append(cfg.Beside, w.Run)
				}
			}
			return agent.Run(ctx, cfg)
		},
	}
	cmd.Flags().StringVar(&rules, "rules", agentv1.RulesPath, "the delivered rules file")
	cmd.Flags().DurationVar(&interval, "interval", 5*time.Second, "how often to check and repair the rules")
	cmd.Flags().DurationVar(&window, "events-window", time.Minute, "how long connection attempts are counted before each count is logged as an event")
	fl.add(cmd)
	df.add(cmd)
	cmd.Flags().StringVar(&procDir, "proc", "", "where the node's /proc is seen, to open tasks' namespaces as <proc>/<pid>/ns/net (the stack file: /host/proc); empty: by their sandbox keys")
	cmd.Flags().StringVar(&listen, "listen", agentAddr, "address of /healthz, /metrics and /status (empty: do not serve)")
	return cmd
}
