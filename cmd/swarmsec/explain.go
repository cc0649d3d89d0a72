package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/spf13/cobra"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/tools/graph"
)

func init() {
	register(newExplainCmd)
	register(newGraphCmd)
}

func newExplainCmd(g *globalOptions) *cobra.Command {
	var (
		mf manifestFlags
		lf limitFlags
	)
	cmd := &cobra.Command{
		Use:   "explain FROM TO",
		Short: "Say whether service FROM may reach service TO under the manifests, why, and what carries it now",
		Long: `explain answers for two services (by name): may they talk, which policies and
rules allow it (or that neither is isolated), which network carries it now, and
what the cluster still lacks. "explain outside SERVICE" says which ports of the
service are published, in which mode, and by which policies.`,
		Args:              cobra.ExactArgs(2),
		ValidArgsFunction: serviceNames,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, p, done, err := setupPlan(cmd, g, mf, lf)
			if err != nil {
				return err
			}
			defer done()
			var out error
			r.Store.View(func(tx state.ReadTx) { out = explain(cmd.OutOrStdout(), tx, p, args[0], args[1]) })
			return out
		},
	}
	mf.add(cmd)
	lf.add(cmd, false)
	return cmd
}

func explain(w io.Writer, tx state.ReadTx, p *plan.Plan, from, to string) error {
	d := p.Desired
	if from == "outside" {
		s := state.GetServiceByName(tx, to)
		if s == nil {
			return fmt.Errorf("no service %s", to)
		}
		ds := d.Services[s.ID]
		if ds == nil || !ds.Isolated {
			fmt.Fprintf(w, "%s is not isolated: it keeps the ports it publishes:", to)
			for _, port := range s.Ports {
				fmt.Fprintf(w, " %d/%s (%s)", port.PublishedPort, port.Protocol, port.PublishMode)
			}
			fmt.Fprintln(w)
			return nil
		}
		if len(ds.Publish) == 0 {
			fmt.Fprintf(w, "%s publishes no port: no policy selecting it (%s) lists one in publish\n", to, strings.Join(ds.Policies, ", "))
			return nil
		}
		for _, key := range slices.Sorted(func(yield func(string) bool) {
			for k := range ds.Publish {
				if !yield(k) {
					return
				}
			}
		}) {
			who := "any source may connect"
			if a := ds.Admit[key]; a != nil {
				who = fmt.Sprintf("the policies admit %s, logging %s, but until a node agent enforces it any source still connects", a.Sources(), a.Log)
			}
			fmt.Fprintf(w, "%s publishes %s in %s mode (policies %s); %s\n", to, key, ds.Publish[key], strings.Join(ds.Policies, ", "), who)
		}
		return nil
	}
	a, b := state.GetServiceByName(tx, from), state.GetServiceByName(tx, to)
	switch {
	case a == nil:
		return fmt.Errorf("no service %s", from)
	case b == nil:
		return fmt.Errorf("no service %s", to)
	}
	allowed := d.Allowed(a.ID, b.ID)
	isolated := func(s *state.Service) []string {
		if ds := d.Services[s.ID]; ds != nil && ds.Isolated {
			return ds.Policies
		}
		return nil
	}
	pa, pb := isolated(a), isolated(b)
	switch {
	case len(pa) == 0 && len(pb) == 0:
		fmt.Fprintf(w, "%s may reach %s: neither is isolated by any policy, so they talk wherever they share a network\n", from, to)
	case allowed:
		fmt.Fprintf(w, "%s may reach %s (and back: overlay networks carry both ways):\n", from, to)
		for _, why := range reasons(tx, a, b) {
			fmt.Fprintln(w, "  - "+why)
		}
	default:
		fmt.Fprintf(w, "%s may not reach %s:", from, to)
		if len(pa) > 0 {
			fmt.Fprintf(w, " %s is isolated by %s", from, strings.Join(pa, ", "))
		}
		if len(pb) > 0 {
			if len(pa) > 0 {
				fmt.Fprint(w, ";")
			}
			fmt.Fprintf(w, " %s is isolated by %s", to, strings.Join(pb, ", "))
		}
		fmt.Fprintln(w, ", and no rule of theirs names the other")
	}
	shared := sharedNetworks(tx, a, b)
	switch {
	case len(shared) > 0 && allowed:
		fmt.Fprintf(w, "Now: they share %s.\n", strings.Join(shared, ", "))
	case len(shared) > 0:
		fmt.Fprintf(w, "Now: they still share %s; `swarmsec apply` (or a running controller) takes them apart.\n", strings.Join(shared, ", "))
	case allowed && (len(pa) > 0 || len(pb) > 0):
		fmt.Fprintln(w, "Now: they share no network yet; `swarmsec apply` (or a running controller) connects them.")
	case allowed:
		fmt.Fprintln(w, "Now: they share no network, so they cannot talk.")
	default:
		fmt.Fprintln(w, "Now: they share no network.")
	}
	return nil
}

// reasons lists the policy rules that let a and b talk.
func reasons(tx state.ReadTx, a, b *state.Service) []string {
	policies, _ := state.FindPolicies(tx, state.ByKind(v1.KindNetworkPolicy))
	var out []string
	for _, p := range policies {
		spec := &p.Network.Spec
		for _, pair := range [][2]*state.Service{{a, b}, {b, a}} {
			sel, peer := pair[0], pair[1]
			if !spec.ServiceSelector.Matches(sel.SelectorLabels) {
				continue
			}
			for i, r := range spec.Ingress {
				for _, pr := range r.From {
					if pr.ServiceSelector != nil && pr.ServiceSelector.Matches(peer.SelectorLabels) {
						out = append(out, fmt.Sprintf("policy %s (%s:%d) selects %s; ingress[%d] admits %s", p.Name, p.File, p.Line, sel.Name, i, peer.Name))
					}
				}
			}
			for i, r := range spec.Egress {
				for _, pr := range r.To {
					if pr.ServiceSelector != nil && pr.ServiceSelector.Matches(peer.SelectorLabels) {
						out = append(out, fmt.Sprintf("policy %s (%s:%d) selects %s; egress[%d] lets it reach %s", p.Name, p.File, p.Line, sel.Name, i, peer.Name))
					}
				}
			}
		}
	}
	return slices.Compact(out)
}

// printPlanGraph draws the plan: the allowed connectivity, with the pairs
// it connects green and those it separates red.
func printPlanGraph(w io.Writer, r *reconcile.Reconciler, p *plan.Plan, svg bool) error {
	var gr *graph.Graph
	r.Store.View(func(tx state.ReadTx) {
		services, _ := state.FindServices(tx, state.All())
		gr = graph.Build(p.Desired, services)
		gr.Diff(p.Desired, services, func(a, b *state.Service) bool { return len(sharedNetworks(tx, a, b)) > 0 })
	})
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
	names := []string{"outside"}
	for _, s := range svcs {
		names = append(names, s.Spec.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// sharedNetworks names the networks both services are on now.
func sharedNetworks(tx state.ReadTx, a, b *state.Service) []string {
	nets, _ := plan.LoadNetworks(tx)
	on := map[string]bool{}
	for _, at := range a.Networks {
		if n := nets.Resolve(at.Target); n != nil {
			on[n.Name] = true
		}
	}
	var out []string
	for _, at := range b.Networks {
		if n := nets.Resolve(at.Target); n != nil && on[n.Name] {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return out
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
			var gr *graph.Graph
			r.Store.View(func(tx state.ReadTx) {
				services, _ := state.FindServices(tx, state.All())
				gr = graph.Build(p.Desired, services)
			})
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
