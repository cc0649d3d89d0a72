package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmsec/swarmsec/reconciler/agentrules"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/reconciler/traffic"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/tools/adopt"
)

func init() { register(newInitCmd) }

func newInitCmd(*globalOptions) *cobra.Command {
	var (
		fromCluster, fromTraffic bool
		stack, dir               string
		since                    time.Duration
		agentService             string
	)
	cmd := &cobra.Command{
		Use:   "init --from-cluster | --from-traffic",
		Short: "Write manifests that keep today's connectivity of the Swarm exactly: the safe first step",
		Long: `init --from-cluster reads the Swarm (DOCKER_HOST) and writes, one file per stack,
commented manifests that keep today's declared connectivity exactly: every service
may reach those it shares a network with now, keeps its published ports and modes
and its outside access; an EncryptionPolicy covers the stack networks that are not
encrypted. Applying them changes no reachability, only encryption and network
placement. Then tighten them, one change at a time, with swarmsec plan.

init --from-traffic writes, from the flows the node agents observed in the last
--since (see swarmsec flows), one commented NetworkPolicy per service that admits
exactly those flows: ingress from the services seen connecting to it, egress to
those it connected to, each rule with the ports seen; outside, the /24 (or /64)
blocks seen with their ports; the published ports seen used. Comments give each
flow's port, count and last time.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fromCluster == fromTraffic {
				return errors.New("say where from: --from-cluster or --from-traffic")
			}
			api, done, err := connect(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			st := state.New()
			if err := observe.Observe(cmd.Context(), api, st); err != nil {
				return err
			}
			var files map[string][]byte
			if fromTraffic {
				obs, err := traffic.Read(cmd.Context(), api, agentService, time.Now().Add(-since), 0)
				if err != nil {
					return err
				}
				if len(obs.Nodes) == 0 {
					return fmt.Errorf("no node agent of service %s reported flows in the last %s", agentService, since)
				}
				st.View(func(tx state.ReadTx) { files, err = adopt.FromTraffic(tx, obs.Flows, stack, since) })
			} else {
				st.View(func(tx state.ReadTx) { files, err = adopt.Files(tx, stack) })
			}
			if err != nil {
				return err
			}
			if len(files) == 0 {
				return fmt.Errorf("no services%s to write policies for", map[bool]string{true: " in stack " + stack, false: ""}[stack != ""])
			}
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
			names := slices.Sorted(func(yield func(string) bool) {
				for n := range files {
					if !yield(n) {
						return
					}
				}
			})
			for _, name := range names {
				p := filepath.Join(dir, name)
				if _, err := os.Stat(p); err == nil {
					return fmt.Errorf("%s exists: init writes new files only (choose another -o)", p)
				}
			}
			for _, name := range names {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, files[name], 0o644); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "wrote", p)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Next: swarmsec validate %s && swarmsec plan --manifests %s\n", dir, dir)
			return nil
		},
	}
	cmd.Flags().BoolVar(&fromCluster, "from-cluster", false, "write policies from what the Swarm runs now")
	cmd.Flags().BoolVar(&fromTraffic, "from-traffic", false, "write policies from the flows the node agents observed")
	cmd.Flags().DurationVar(&since, "since", time.Hour, "with --from-traffic: the window of flows to keep")
	cmd.Flags().StringVar(&agentService, "agent-service", agentrules.DefaultService, "with --from-traffic: the node agent's service, whose logs hold the flows")
	cmd.Flags().StringVar(&stack, "stack", "", "only this stack")
	cmd.Flags().StringVarP(&dir, "output", "o", "manifests", "directory to write into")
	return cmd
}
