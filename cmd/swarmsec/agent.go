package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/swarmsec/swarmsec/agent"
	"github.com/swarmsec/swarmsec/agent/datapath"
	"github.com/swarmsec/swarmsec/agent/firewall"
	"github.com/swarmsec/swarmsec/agent/nodeprobe"
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
theirs. When it stops the rules stay: the last delivered state stays enforced.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if interval < time.Second || window < time.Second {
				return fmt.Errorf("--interval %s, --events-window %s: each must be at least 1s", interval, window)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			tables := map[firewall.Family]agent.Table{}
			var v4err error
			for _, f := range []firewall.Family{firewall.IPv4, firewall.IPv6} {
				t, path, err := agent.Detect(f)
				if err != nil {
					// The node checks say so; the agent stays up to say
					// it, and to enforce once Docker's chains appear.
					log.Warn("published ports are not filtered", "family", f.String(), "reason", err)
					if f == firewall.IPv4 {
						v4err = err
					}
					continue
				}
				log.Info("iptables backend", "family", f.String(), "command", path)
				tables[f] = t
			}
			reg := prometheus.NewRegistry()
			packets := agent.NewPackets()
			reg.MustRegister(packets)
			a := &agent.Agent{RulesFile: rules, Tables: tables, Interval: interval, Log: log, Packets: packets, Detect: agent.Detect}
			var wg sync.WaitGroup
			defer wg.Wait()
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if listen != "" {
				// The endpoints are for people; the rules must not wait
				// for them (a local process holding the port).
				if srv, err := server.Listen(server.Config{
					Addr: listen, Log: log,
					Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
					Status:  func() any { return a.Status() },
				}); err != nil {
					log.Error("agent endpoints not served; enforcing all the same", "err", err)
				} else {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := srv.Serve(ctx); err != nil {
							log.Error("agent server stopped", "error", err)
						}
					}()
				}
			}
			node, _ := os.Hostname() // the node's: the agent shares its namespaces
			prober := &nodeprobe.Prober{Hostname: node, ProcNet: "/proc/net",
				Exec: func(ctx context.Context, name string, args ...string) ([]byte, error) {
					return exec.CommandContext(ctx, name, args...).CombinedOutput()
				},
				Tables: func() (firewall.Table, error) {
					if t := a.Table(firewall.IPv4); t != nil {
						return t, nil
					}
					return nil, v4err
				}}
			if cli, err := newClient(); err == nil {
				defer cli.Close()
				prober.Docker = cli
				flows := datapath.NewFlows()
				reg.MustRegister(flows)
				enf := &datapath.Enforcer{Engine: cli, Group: NFLOGTaskGroup, Node: node, Log: log, Flows: flows, ProcDir: procDir}
				a.Datapath = enf
				wg.Add(1)
				go func() {
					defer wg.Done()
					enf.Run(ctx)
				}()
			} else {
				log.Warn("no engine: per-task rules are not enforced", "err", err)
			}
			a.Checks = prober
			wg.Add(1)
			go func() {
				defer wg.Done()
				a.RunChecks(ctx, time.Minute)
			}()
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Without NFLOG the rules and counters still work; only
				// the per-source events are missing.
				if err := agent.ListenEvents(ctx, log, node, window, 0); err != nil {
					log.Warn("connection attempts are counted but not reported per source", "reason", err)
				}
			}()
			log.Info("agent started", "rules", rules, "interval", interval.String(), "node", node)
			err = a.Run(ctx)
			log.Info("agent stopped; its rules stay in place")
			return err
		},
	}
	cmd.Flags().StringVar(&rules, "rules", agentv1.RulesPath, "the delivered rules file")
	cmd.Flags().DurationVar(&interval, "interval", 5*time.Second, "how often to check and repair the rules")
	cmd.Flags().DurationVar(&window, "events-window", time.Minute, "how long connection attempts are counted before each count is logged as an event")
	cmd.Flags().StringVar(&procDir, "proc", "", "where the node's /proc is seen, to open tasks' namespaces as <proc>/<pid>/ns/net (the stack file: /host/proc); empty: by their sandbox keys")
	cmd.Flags().StringVar(&listen, "listen", agentAddr, "address of /healthz, /metrics and /status (empty: do not serve)")
	return cmd
}
