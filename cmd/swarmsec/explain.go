package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/spf13/cobra"

	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/tools/explain"
	"github.com/swarmsec/swarmsec/tools/graph"
)

func init() {
	register(newExplainCmd)
	register(newGraphCmd)
}

// Exit codes of explain, as kubectl auth can-i: a script asks with it.
const (
	exitCodeMayReach    = 0
	exitCodeMayNotReach = 1
	exitCodeExplainErr  = 2
)

func newExplainCmd(g *globalOptions) *cobra.Command {
	var (
		mf     manifestFlags
		lf     limitFlags
		output string
	)
	cmd := &cobra.Command{
		Use:   "explain FROM TO",
		Short: "Say whether service FROM may reach service TO under the manifests, why, and what carries it now (exit 0 may, 1 may not, 2 error)",
		Long: `explain answers for two services (by name): may they talk, which policies and
rules allow it (or that neither is isolated), which network carries it now, and
what the cluster still lacks. "explain outside SERVICE" says which ports of the
service are published, in which mode, and by which policies.

The answer is the controller's own: explain asks the compile of the manifests
(enforced policies, held ones only where they already isolate), never matching
selectors itself.

Exit status, like kubectl auth can-i: 0 may reach (outside: the service keeps a
published port), 1 may not, 2 error.`,
		Args:              explainArgs,
		ValidArgsFunction: serviceNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return exitError{code: exitCodeExplainErr, err: fmt.Errorf("-o %q: must be text or json", output)}
			}
			r, p, done, err := setupPlan(cmd, g, mf, lf)
			if err != nil {
				return exitError{code: exitCodeExplainErr, err: err}
			}
			defer done()
			return explainPair(cmd.OutOrStdout(), r, p, args[0], args[1], output)
		},
	}
	// A usage error is an error too, not a "may not".
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return exitError{code: exitCodeExplainErr, err: err} })
	mf.add(cmd)
	lf.add(cmd, false)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func explainArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.ExactArgs(2)(cmd, args); err != nil {
		return exitError{code: exitCodeExplainErr, err: err}
	}
	return nil
}

// explainPair prints the answer for from and to under the plan's compile
// and returns explain's exit status: nil when from may reach to.
func explainPair(w io.Writer, r *reconcile.Reconciler, p *plan.Plan, from, to, output string) error {
	var (
		ans *explain.Answer
		err error
	)
	r.Store.View(func(tx state.ReadTx) { ans, err = explain.Services(tx, p.Desired, from, to) })
	if err != nil {
		return exitError{code: exitCodeExplainErr, err: err}
	}
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(ans); err != nil {
			return exitError{code: exitCodeExplainErr, err: err}
		}
	} else {
		ans.WriteText(w)
	}
	if !ans.Allowed {
		return exitError{code: exitCodeMayNotReach}
	}
	return nil
}

// printPlanGraph draws the plan: the allowed connectivity, with the pairs
// it connects green and those it separates red.
func printPlanGraph(w io.Writer, r *reconcile.Reconciler, p *plan.Plan, svg bool) error {
	var (
		gr  *graph.Graph
		err error
	)
	r.Store.View(func(tx state.ReadTx) {
		var (
			services []*state.Service
			nets     *plan.Networks
		)
		if services, err = state.FindServices(tx, state.All()); err != nil {
			return
		}
		if nets, err = plan.LoadNetworks(tx); err != nil {
			return
		}
		gr = graph.Build(p.Desired, services)
		gr.Diff(p.Desired, services, func(a, b *state.Service) bool { return len(explain.Shared(nets, a, b)) > 0 })
	})
	if err != nil {
		return fmt.Errorf("graph: %w", err)
	}
	if svg {
		return gr.SVG(w)
	}
	return gr.DOT(w)
}

// serviceNames completes service names from the Swarm, when it answers.
func serviceNames(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) >= 2 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	api, done, err := connect(cmd.Context())
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer done()
	svcs, err := api.ServiceList(cmd.Context(), swarm.ServiceListOptions{})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	names := []string{explain.Outside}
	for _, s := range svcs {
		names = append(names, s.Spec.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

func newGraphCmd(g *globalOptions) *cobra.Command {
	var (
		mf       manifestFlags
		lf       limitFlags
		output   string
		observed bool
		since    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "graph",
		Short: "Draw who may reach whom under the manifests (DOT, Mermaid or SVG)",
		Long: `graph draws the allowed connectivity of the manifests against the cluster:
services grouped by stack, an edge for every pair a policy lets talk, published
ports and outside access marked, services no policy isolates dashed.
-o dot is Graphviz (swarmsec graph | dot -Tsvg for its layout); -o mermaid
renders on GitHub and most wikis; -o svg is a picture drawn by swarmsec itself,
one column per stack (swarmsec graph -o svg > policies.svg).

--observed draws the flows the node agents saw in the last --since over it
(see swarmsec flows): each allowed edge used (blue, with its ports and
connections) or never used (grey, dashed), and what the policies block or
would block attempted (red).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "dot" && output != "mermaid" && output != "svg" {
				return fmt.Errorf("-o %q: must be dot, mermaid or svg", output)
			}
			r, p, done, err := setupPlan(cmd, g, mf, lf)
			if err != nil {
				return err
			}
			defer done()
			var services []*state.Service
			r.Store.View(func(tx state.ReadTx) { services, err = state.FindServices(tx, state.All()) })
			if err != nil {
				return fmt.Errorf("services: %w", err)
			}
			gr := graph.Build(p.Desired, services)
			if observed {
				obs, err := observedFlows(cmd, r, p, lf.agentService, since)
				if err != nil {
					return err
				}
				gr.Observe(obs.Flows)
			}
			switch output {
			case "mermaid":
				return gr.Mermaid(cmd.OutOrStdout())
			case "svg":
				return gr.SVG(cmd.OutOrStdout())
			}
			return gr.DOT(cmd.OutOrStdout())
		},
	}
	mf.add(cmd)
	lf.add(cmd, false)
	cmd.Flags().StringVarP(&output, "output", "o", "dot", "dot, mermaid or svg")
	cmd.Flags().BoolVar(&observed, "observed", false, "draw the flows the node agents observed: used, allowed and never used, attempted and blocked")
	cmd.Flags().DurationVar(&since, "since", time.Hour, "with --observed: the window of flows")
	return cmd
}
