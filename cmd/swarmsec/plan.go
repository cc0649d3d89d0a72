package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/traffic"
)

func init() { register(newPlanCmd) }

// Exit codes of plan, as terraform plan -detailed-exitcode.
const (
	exitCodeInSync  = 0
	exitCodeError   = 1
	exitCodeChanges = 2
)

func newPlanCmd(g *globalOptions) *cobra.Command {
	var (
		mf         manifestFlags
		lf         limitFlags
		output     string
		asGraph    bool
		trafficWin time.Duration
	)
	cmd := &cobra.Command{
		Use:   "plan",
		Short: "Show what swarmsec would change and why (exit 0 in sync, 2 changes pending, 1 error)",
		Long: `plan reads the manifests and the Swarm (DOCKER_HOST) and prints the actions
that would make the cluster match, with the reason for each. It writes nothing.

Exit status: 0 in sync, 2 changes pending, 1 error (like terraform plan -detailed-exitcode).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case asGraph && output != "table" && output != "dot" && output != "svg":
				return fmt.Errorf("-o %q: with --graph, must be dot or svg", output)
			case !asGraph && output != "table" && output != "json":
				return fmt.Errorf("-o %q: must be table or json", output)
			}
			r, p, done, err := setupPlan(cmd, g, mf, lf)
			if err != nil {
				return err
			}
			defer done()
			var cuts []traffic.Cut
			if !asGraph {
				cuts = planCuts(cmd.Context(), cmd.ErrOrStderr(), r, p, lf.agentService, trafficWin)
			}
			switch {
			case asGraph:
				err = printPlanGraph(cmd.OutOrStdout(), r, p, output == "svg")
			case output == "json":
				err = printPlanJSON(cmd.OutOrStdout(), p, r.Limits.MaxServiceUpdates, cuts)
			default:
				printPlanTableWaves(cmd.OutOrStdout(), p, r.Limits.MaxServiceUpdates)
				printCuts(cmd.OutOrStdout(), cuts, trafficWin, time.Now())
			}
			if err != nil {
				return err
			}
			if len(p.Pending()) > 0 || len(p.Held) > 0 {
				return exitError{code: exitCodeChanges}
			}
			return nil
		},
	}
	mf.add(cmd)
	lf.add(cmd, false)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json; with --graph, dot or svg")
	cmd.Flags().DurationVar(&trafficWin, "traffic-window", time.Hour, "list the flows the node agents observed in this window that the change would block (0: do not read them)")
	cmd.Flags().BoolVar(&asGraph, "graph", false, "draw the allowed connectivity, what the plan adds green and what it takes away red (DOT, or SVG with -o svg)")
	return cmd
}

// updatesOf counts the service updates a plan writes (audit-only ones
// are not written).
func updatesOf(p *plan.Plan) int {
	n := 0
	for _, a := range p.Actions {
		if a.Kind == plan.ActionUpdateService && !a.Audit {
			n++
		}
	}
	return n
}

func printPlanJSON(w io.Writer, p *plan.Plan, limit int, cuts []traffic.Cut) error {
	out := struct {
		InSync  bool          `json:"inSync"`
		Actions []plan.Action `json:"actions"`
		// Waves is how many waves of service updates the change takes
		// at the fewest (plan.Waves: the cap, then doubling).
		Waves int      `json:"waves"`
		Notes []string `json:"notes"`
		Holds []string `json:"holds,omitempty"`
		// Encryption: changes held where a node cannot carry encrypted
		// traffic, and networks already so.
		Encryption []plan.EncryptionHold `json:"encryptionHolds,omitempty"`
		Ports      []plan.PortRule       `json:"ports,omitempty"`
		// TrafficCuts are the observed flows the change would block.
		TrafficCuts []traffic.Cut `json:"trafficCuts,omitempty"`
	}{InSync: len(p.Pending()) == 0, Actions: p.Actions, Notes: p.Notes, Holds: p.Holds, Encryption: p.EncryptionHolds, Ports: p.Ports, TrafficCuts: cuts, Waves: plan.Waves(updatesOf(p), limit)}
	if out.Actions == nil {
		out.Actions = []plan.Action{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

var actionWords = map[plan.ActionKind]string{
	plan.ActionCreateNetwork:  "+ create network",
	plan.ActionUpdateService:  "~ update service",
	plan.ActionRemoveNetwork:  "- remove network",
	plan.ActionMigrateNetwork: "* migrate network",
	plan.ActionCreateRecord:   "+ create record",
	plan.ActionRemoveRecord:   "- remove record",
}

func printPlanTable(w io.Writer, p *plan.Plan) { printPlanTableWaves(w, p, 0) }

// printPlanTableWaves prints the plan and, with a cap (limit > 0), the
// waves its service updates take.
func printPlanTableWaves(w io.Writer, p *plan.Plan, limit int) {
	if len(p.Actions) == 0 {
		fmt.Fprintln(w, "No changes: the cluster matches the policies.")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ACTION\tOBJECT\tPOLICIES\tWHY")
		for _, a := range p.Actions {
			word := actionWords[a.Kind]
			switch {
			case a.Audit:
				word += " (audit only)"
			case a.Waits != "":
				word += " (waits)"
			}
			policies := strings.Join(a.Policies, ",")
			if policies == "" {
				policies = "-"
			}
			for i, r := range a.Why() {
				if i == 0 {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", word, a.Name, policies, r)
				} else {
					fmt.Fprintf(tw, "\t\t\t%s\n", r)
				}
			}
		}
		tw.Flush()
		counts := map[plan.ActionKind]int{}
		audit := 0
		for _, a := range p.Actions {
			if a.Audit {
				audit++
				continue
			}
			counts[a.Kind]++
		}
		fmt.Fprintf(w, "\nPlan: %d networks to create, %d services to update, %d networks to remove",
			counts[plan.ActionCreateNetwork], counts[plan.ActionUpdateService], counts[plan.ActionRemoveNetwork])
		if n := counts[plan.ActionMigrateNetwork]; n > 0 {
			fmt.Fprintf(w, ", %d networks to migrate to encryption", n)
		}
		if audit > 0 {
			fmt.Fprintf(w, "; %d more only reported (audit)", audit)
		}
		fmt.Fprintln(w, ".")
		if n := counts[plan.ActionUpdateService]; n > 0 {
			fmt.Fprintln(w, "Each service update replaces the service's tasks (a rolling update).")
			printWaves(w, n, limit)
		}
	}
	if len(p.Held) > 0 {
		fmt.Fprintln(w, "\nHeld policies (not in force; the plan above leaves them out):")
		for _, h := range p.Held {
			fmt.Fprintln(w, "  - "+h.Message)
		}
	}
	if len(p.EncryptionHolds) > 0 {
		fmt.Fprintln(w, "\nEncryption unavailable on some nodes (the node agents' checks):")
		for _, h := range p.EncryptionHolds {
			fmt.Fprintln(w, "  - "+h.Message)
		}
	}
	if len(p.Holds) > 0 {
		fmt.Fprintln(w, "\nHeld: the safety limits stop this plan; apply needs --force because")
		for _, h := range p.Holds {
			fmt.Fprintln(w, "  - "+h)
		}
	}
	if len(p.Ports) > 0 {
		fmt.Fprintln(w, "\nPublished ports the policies restrict (node agent rules):")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  SERVICE\tPORT\tMODE\tFROM\tLOG")
		for _, r := range p.Ports {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", r.Service, r.Port, r.Mode, r.Sources(), r.Log)
		}
		tw.Flush()
	}
	if len(p.Notes) > 0 {
		fmt.Fprintln(w, "\nNotes:")
		for _, n := range p.Notes {
			fmt.Fprintln(w, "  - "+n)
		}
	}
}

// printWaves says in how many waves apply and run write n service updates
// under --max-service-updates limit.
func printWaves(w io.Writer, n, limit int) {
	waves := plan.Waves(n, limit)
	switch {
	case limit <= 0:
		return
	case waves == 1:
		fmt.Fprintf(w, "The updates go in 1 wave (--max-service-updates %d).\n", limit)
		return
	}
	sizes := make([]string, 0, waves)
	left := n
	for k := range waves {
		size := min(plan.WaveSize(limit, k), left)
		sizes = append(sizes, fmt.Sprint(size))
		left -= size
	}
	fmt.Fprintf(w, "The updates go in %d waves of %s (--max-service-updates %d, doubled after each wave whose rolling updates finish healthy; at least: an update that must wait for another goes a wave later).\n",
		waves, strings.Join(sizes, ", "), limit)
}
