package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/internal/server"
	"github.com/swarmsec/swarmsec/reconciler/status"
)

func init() { register(newStatusCmd) }

func newStatusCmd(*globalOptions) *cobra.Command {
	var (
		serverURL string
		output    string
		timeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show whether each policy is in force, from a running controller",
		Long: `status asks a running controller (swarmsec run) for its /status and prints
each policy's Ready condition (status, reason, message), the services it
selects, the changes still pending, and the manifest files that fail to load.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: must be table or json", output)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			raw, err := fetchStatus(ctx, serverURL)
			if err != nil {
				return err
			}
			if output == "json" {
				_, err = cmd.OutOrStdout().Write(raw)
				return err
			}
			var r status.Report
			if err := json.Unmarshal(raw, &r); err != nil {
				return fmt.Errorf("status from %s: %w", serverURL, err)
			}
			return printStatusTable(cmd.OutOrStdout(), &r, time.Now())
		},
	}
	cmd.Flags().StringVar(&serverURL, "server", "http://"+server.DefaultAddr, "URL of the controller's endpoints (swarmsec run --listen)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the controller")
	return cmd
}

func fetchStatus(ctx context.Context, base string) ([]byte, error) {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	url := strings.TrimRight(base, "/") + "/status"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("status %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("status %s: %w (is swarmsec run serving there? see --server)", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("status %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

func printStatusTable(w io.Writer, r *status.Report, now time.Time) error {
	ready := "ready"
	if !r.Ready {
		var why []string
		for _, c := range r.Checks {
			if !c.OK {
				why = append(why, c.Name+": "+c.Message)
			}
		}
		ready = "not ready (" + strings.Join(why, "; ") + ")"
	}
	fmt.Fprintf(w, "Controller: %s, mode %s", ready, r.Mode)
	if r.LastSuccessfulPass != nil {
		fmt.Fprintf(w, ", last successful pass %s ago", age(now.Sub(*r.LastSuccessfulPass)))
	}
	fmt.Fprintln(w)
	if p := r.LastPass; p != nil && p.Error != "" {
		fmt.Fprintf(w, "Last pass failed: %s\n", p.Error)
	}
	if p := r.LastPass; p != nil && p.RemainingUpdates > 0 {
		fmt.Fprintf(w, "Service updates remaining: %d (the next waves make them: --max-service-updates first, doubling after each wave that ends healthy)\n", p.RemainingUpdates)
	}
	if r.Held != "" {
		fmt.Fprintf(w, "Manifests held: %s\n", r.Held)
	}
	fmt.Fprintln(w)

	if len(r.Policies) == 0 {
		fmt.Fprintln(w, "No policies.")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tKIND\tREADY\tREASON\tSELECTS\tPENDING\tSINCE\tMESSAGE")
		for i := range r.Policies {
			p := &r.Policies[i]
			st, reason, since, msg := "-", "-", "-", ""
			if c := p.Ready(); c != nil {
				st, reason, msg = string(c.Status), c.Reason, c.Message
				since = age(now.Sub(c.LastTransitionTime))
			}
			selects := len(p.Services)
			if p.Kind != "NetworkPolicy" {
				selects = len(p.Networks)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", p.Name, p.Kind, st, reason, selects, len(p.PendingActions), since, msg)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	var unenforced []string
	for i := range r.Policies {
		for _, c := range r.Policies[i].Conditions {
			if c.Type == v1.ConditionEnforced && c.Status == v1.ConditionFalse {
				unenforced = append(unenforced, fmt.Sprintf("  - %s: %s", r.Policies[i].Name, printableText(c.Message)))
			}
		}
	}
	if len(unenforced) > 0 {
		fmt.Fprintln(w, "\nNot enforced on every node (Enforced=False):")
		fmt.Fprintln(w, strings.Join(unenforced, "\n"))
	}
	if len(r.Encryption) > 0 {
		fmt.Fprintln(w, "\nEncryption unavailable on some nodes:")
		for _, h := range r.Encryption {
			fmt.Fprintln(w, "  - "+h.Message)
		}
	}
	if err := printNodes(w, r); err != nil {
		return err
	}
	if len(r.ManifestErrors) > 0 {
		fmt.Fprintf(w, "\nManifest errors (the last good policies of these files stay in force):\n")
		for _, e := range r.ManifestErrors {
			fmt.Fprintln(w, "  "+e.Error())
		}
	}
	return nil
}

// printNodes shows the node agents' checks: every one not ok, with its
// fix, and how many are.
func printNodes(w io.Writer, r *status.Report) error {
	switch {
	case r.Agent != nil && !r.Agent.Agent:
		fmt.Fprintln(w, "\nNode agents: none running (published-port sources are not enforced; no node checks)")
	case r.Agent != nil:
		fmt.Fprintf(w, "\nNode agents: rules %s delivered\n", r.Agent.Config)
	}
	if r.NodesError != "" {
		fmt.Fprintf(w, "Node checks could not be read: %s\n", r.NodesError)
	}
	if err := printEnforcement(w, r.Enforcement); err != nil {
		return err
	}
	if len(r.Nodes) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nNode checks (the node agents'):")
	for _, n := range r.Nodes {
		ok := 0
		for _, c := range n.Checks {
			if c.Result == agentv1.OK {
				ok++
				continue
			}
			fmt.Fprintf(w, "  %s: %s %s: %s\n", n.Node, c.ID, c.Result, c.Message)
			if c.Fix != "" {
				fmt.Fprintf(w, "    fix: %s\n", c.Fix)
			}
		}
		fmt.Fprintf(w, "  %s: %d more checks ok\n", n.Node, ok)
	}
	return nil
}

// printEnforcement shows each node's Enforced condition: whether its
// agent holds the rules delivered in force.
func printEnforcement(w io.Writer, nodes []status.NodeEnforcement) error {
	if len(nodes) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nData path per node (the node agents' rules):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tENFORCED\tREASON\tMESSAGE")
	for _, n := range nodes {
		for _, c := range n.Conditions {
			if c.Type != v1.ConditionEnforced {
				continue
			}
			msg := ""
			if c.Status != v1.ConditionTrue {
				msg = c.Message
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", printable(n.Node), c.Status, c.Reason, printableText(msg))
		}
	}
	return tw.Flush()
}

// age renders a duration the way kubectl does: 45s, 12m, 3h, 2d.
func age(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
