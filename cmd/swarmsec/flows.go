package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	agentdns "github.com/swarmsec/swarmsec/agent/dns"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/reconciler/traffic"
	"github.com/swarmsec/swarmsec/state"
)

func init() { register(newFlowsCmd) }

func newFlowsCmd(g *globalOptions) *cobra.Command {
	var (
		mf      manifestFlags
		lf      limitFlags
		output  string
		since   time.Duration
		verdict string
		service string
		follow  bool
		dns     bool
		records bool
	)
	cmd := &cobra.Command{
		Use:   "flows",
		Short: "Show the connections the node agents observed, each with its verdict under the manifests",
		Long: `flows reads the flows the node agents observed (conntrack in every task's network
namespace, aggregated on each node and logged each minute; the agent service's
logs, through the manager) for the last --since, sums them over nodes, and
judges each against the manifests: allowed, or would-block (the policies let
the two services share no network, publish no such port, or cut the way
outside). A flow is counted once: at its client when the client is a task, at
its server when the client is outside. The connection attempts the agents'
per-task rules dropped in the window (their flow records) are summed the same
way and shown as blocked, with the policy that decided; --verdict blocked
lists those records one by one instead. The agents also report, as flow
records, what an audit-mode policy's log-only rules would drop
(would-block: it makes the observed flow of the same source, destination
and port would-block, the data path judging by port and direction too) and
what a rule with log: all admitted (allowed); --records (or -f) with
--verdict would-block or allowed lists (or follows) those records one by
one, as --verdict blocked does, without reading the manifests.

With no --manifests and no ./manifests (before any manifest is written:
init --from-traffic comes next), the verdicts are against no policies, the
Swarm as it is.

--dns shows instead the lookups the agents saw the tasks make to Swarm's
embedded resolver (127.0.0.11), summed per source service, name, question type
and answer class: vip (a service's virtual IP), tasks (task addresses),
external (an address outside the Swarm), nxdomain, empty (no address), error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: must be table or json", output)
			}
			if dns {
				if verdict != "" || follow || records {
					return fmt.Errorf("--dns: not with --verdict, --follow or --records")
				}
				return runDNS(cmd, lf.agentService, since, output, service)
			}
			if verdict == traffic.Blocked || strings.EqualFold(verdict, "dropped") {
				// What the per-task rules dropped: the agents' flow
				// records, not the observed aggregates.
				return runDrops(cmd, lf.agentService, since.String(), traffic.Blocked, output, service, follow)
			}
			if (follow || records) && (verdict == traffic.WouldBlock || verdict == traffic.Allowed) {
				return runDrops(cmd, lf.agentService, since.String(), verdict, output, service, follow)
			}
			if follow || records {
				return fmt.Errorf("--follow, --records: only with --verdict blocked, would-block or allowed")
			}
			r, p, done, err := setupPlan(cmd, g, mf, lf)
			if err != nil {
				return err
			}
			defer done()
			obs, err := observedFlows(cmd, r, p, lf.agentService, since)
			if err != nil {
				return err
			}
			if verdict != "" {
				obs.Flows = slices.DeleteFunc(obs.Flows, func(f traffic.Flow) bool { return f.Verdict != verdict })
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(obs)
			}
			printFlows(cmd.OutOrStdout(), obs, time.Now())
			return nil
		},
	}
	mf.optional = true
	mf.add(cmd)
	lf.add(cmd, false)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table or json")
	cmd.Flags().DurationVar(&since, "since", time.Hour, "the window: flows seen in the last this long")
	cmd.Flags().StringVar(&verdict, "verdict", "", "only the flows of this verdict (allowed, would-block, unknown; blocked, or Hubble's dropped: the connections the agents' per-task rules dropped, as flow records; would-block and allowed include the agents' records of audit-mode policies and rules with log: all)")
	cmd.Flags().StringVar(&service, "service", "", "with --verdict blocked (or -f): only flows from or to this service; with --dns: only this service's lookups")
	cmd.Flags().BoolVar(&dns, "dns", false, "show the lookups to Swarm's embedded resolver instead (name, type, answer class, count per source service)")
	cmd.Flags().BoolVar(&records, "records", false, "with --verdict would-block or allowed: the agents' flow records one by one (as --verdict blocked lists them), not the aggregates judged against the manifests")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "with --verdict blocked, would-block or allowed: keep showing new flow records, one by one")
	return cmd
}

// observedFlows reads the agents' flows of the window and judges them
// against the plan's policies, with the drops the agents logged in the
// window as blocked flows (the policy that decided as their why).
func observedFlows(cmd *cobra.Command, r *reconcile.Reconciler, p *plan.Plan, agentService string, since time.Duration) (*traffic.Observed, error) {
	if agentService == "" {
		return nil, fmt.Errorf("--agent-service is empty: the flows come from the node agents' logs")
	}
	obs, drops, err := traffic.ReadWithDrops(cmd.Context(), r.Docker, agentService, time.Now().Add(-since), 0)
	if err != nil {
		return nil, err
	}
	r.Store.View(func(tx state.ReadTx) { err = traffic.Judge(tx, p.Desired, obs.Flows) })
	traffic.AddDrops(obs, drops)
	return obs, err
}

func printFlows(w io.Writer, obs *traffic.Observed, now time.Time) {
	if len(obs.Nodes) == 0 {
		fmt.Fprintf(w, "No node agent reported flows since %s (is the agent service running, with --flows?).\n", obs.Since.UTC().Format(time.RFC3339))
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tDESTINATION\tCONNECTIONS\tOPEN\tLAST SEEN\tNODES\tVERDICT")
	for _, f := range obs.Flows {
		conns := strconv.FormatUint(f.Connections, 10)
		if f.Unanswered > 0 {
			conns += fmt.Sprintf(" (%d unanswered)", f.Unanswered)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", printable(f.From()), printable(f.Target()), conns, f.Open,
			ago(now, f.LastSeen), printable(strings.Join(f.Nodes, ",")), f.Verdict)
	}
	tw.Flush()
	for _, node := range slices.Sorted(maps.Keys(obs.Dropped)) {
		n := obs.Dropped[node]
		fmt.Fprintf(w, "%s: %d connections not aggregated (its bound on distinct flows, --flows-max)\n", printable(node), n)
	}
	for _, f := range obs.Flows {
		if f.Verdict == traffic.WouldBlock || f.Verdict == traffic.Blocked {
			fmt.Fprintf(w, "%s: %s -> %s: %s\n", f.Verdict, printable(f.From()), printable(f.Target()), printableText(f.Why))
		}
	}
}

// printableText is s, quoted if it holds anything but printable
// characters and spaces (a blocked flow's why comes from the agents' logs).
func printableText(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r != ' ' && !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// ago writes how long before now t was, as people say it.
func ago(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d min ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h ago", int(d.Hours()))
	}
	return fmt.Sprintf("%d days ago", int(d.Hours()/24))
}

// runDNS prints the lookups the agents of agentService logged in the
// window, summed over nodes.
func runDNS(cmd *cobra.Command, agentService string, since time.Duration, output, service string) error {
	if agentService == "" {
		return fmt.Errorf("--agent-service is empty: the lookups come from the node agents' logs")
	}
	cli, err := newClient()
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	got, err := traffic.ReadDNS(cmd.Context(), cli, agentService, time.Now().Add(-since), 0)
	if err != nil {
		return err
	}
	if service != "" {
		got.Lookups = slices.DeleteFunc(got.Lookups, func(l traffic.Lookup) bool { return l.Source != service })
	}
	if got.Lookups == nil {
		got.Lookups = []traffic.Lookup{}
	}
	if output == "json" {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(got)
	}
	printDNS(cmd.OutOrStdout(), got, time.Now())
	return nil
}

func printDNS(w io.Writer, got *traffic.Lookups, now time.Time) {
	if len(got.Nodes) == 0 {
		fmt.Fprintf(w, "No node agent reported DNS lookups since %s (is the agent service running, with --dns?).\n", got.Since.UTC().Format(time.RFC3339))
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tNAME\tTYPE\tCLASS\tANSWER\tCOUNT\tFIRST SEEN\tLAST SEEN\tNODES")
	for _, l := range got.Lookups {
		answer := l.Service
		if answer == "" {
			answer = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", printable(l.Source), printable(l.Name), printable(l.Type), printable(l.Class),
			printable(answer), l.Count, ago(now, l.FirstSeen), ago(now, l.LastSeen), printable(strings.Join(l.Nodes, ",")))
	}
	tw.Flush()
	for _, node := range slices.Sorted(maps.Keys(got.Dropped)) {
		fmt.Fprintf(w, "%s: %d lookups not reported (its bound on distinct lookups, --dns-max, or a service's share of a report)\n", printable(node), got.Dropped[node])
	}
	for _, node := range slices.Sorted(maps.Keys(got.Unseen)) {
		fmt.Fprintf(w, "%s: %d answers not seen (over the kernel's limit of %d a second per task and protocol, or a full NFLOG queue)\n",
			printable(node), got.Unseen[node], agentdns.LogRate)
	}
}
