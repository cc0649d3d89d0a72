package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/agentrules"
	"github.com/swarmsec/swarmsec/reconciler/nodecheck"
	"github.com/swarmsec/swarmsec/reconciler/traffic"
	"github.com/swarmsec/swarmsec/tools/audit"
)

func init() { register(newAuditCmd) }

// exitCodeFindings is audit's exit status when it found something.
const exitCodeFindings = 2

func newAuditCmd(*globalOptions) *cobra.Command {
	var (
		manifests    string
		output       string
		list         bool
		agentService string
		dnsSince     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Inspect the Swarm, read-only, for network hardening problems (exit 0 clean, 2 findings, 1 error)",
		Long: `audit lists services and networks (DOCKER_HOST, a manager) and reports the
hardening problems that matter for Swarm networking: unencrypted or attachable
overlay networks, an unencrypted ingress network, ports published through the
routing mesh or below 1024, services on the host network, and services
swarmsec isolated that are back on shared networks. Given --manifests, it also
reports services that share a network although no policy lets them talk.
A name that resolves to more than one service on one network (an alias that
another service can claim) is reported from Swarm's state; a service that
keeps resolving names of services it may not reach (reconnaissance), from the
lookups the node agents saw in the last --dns-since.

It never writes to Docker. Each finding has a stable check id, a severity, the
object, a message, a fix and, where one exists, the docker-bench-security
(CIS Docker Benchmark v1.6.0) id.

Exit status: 0 no findings, 2 findings, 1 error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: must be text or json", output)
			}
			if list {
				return printChecks(cmd.OutOrStdout(), output)
			}
			var policies []*v1.Policy
			if manifests != "" {
				var err error
				if policies, err = loadManifests(cmd.ErrOrStderr(), manifests); err != nil {
					return err
				}
			}
			api, done, err := connect(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			var lookups []agentv1.DNSLookup
			if agentService != "" && dnsSince > 0 {
				lookups = auditLookups(cmd.Context(), cmd.ErrOrStderr(), api, agentService, time.Now().Add(-dnsSince))
			}
			r, err := audit.RunWithDNS(cmd.Context(), api, policies, lookups)
			if err != nil {
				return err
			}
			if agentService != "" {
				// The nodes as their agents see them; none without agents.
				reports, err := (&nodecheck.Reader{Docker: api, Service: agentService}).Reports(cmd.Context())
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "audit: node checks not read: %v\n", err)
				}
				r.AddNodes(reports)
			}
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				err = enc.Encode(r)
			} else {
				err = printFindings(cmd.OutOrStdout(), r, manifests)
			}
			if err != nil {
				return err
			}
			if len(r.Findings) > 0 {
				return exitError{code: exitCodeFindings}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&manifests, "manifests", "", "directory (or file) of manifests to check drift against (default: none)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().BoolVar(&list, "list-checks", false, "list the checks and exit")
	cmd.Flags().StringVar(&agentService, "agent-service", agentrules.DefaultService, "the node agent's service, whose node checks and DNS lookups the audit reads (empty: none)")
	cmd.Flags().DurationVar(&dnsSince, "dns-since", time.Hour, "the window of the agents' DNS lookups checked for reconnaissance (0: none)")
	return cmd
}

func printFindings(w io.Writer, r *audit.Report, manifests string) error {
	for _, f := range r.Findings {
		bench := ""
		if f.DockerBench != "" {
			bench = " (docker-bench " + f.DockerBench + ")"
		}
		fmt.Fprintf(w, "[%s] %s %s/%s%s\n", strings.ToUpper(string(f.Severity)), f.Check, f.Kind, f.Name, bench)
		fmt.Fprintf(w, "  %s\n  fix: %s\n\n", f.Message, f.Fix)
	}
	c := r.Counts()
	scope := fmt.Sprintf("%d networks and %d services", r.Networks, r.Services)
	if r.Ignored > 0 {
		scope += fmt.Sprintf(" (%d ignored)", r.Ignored)
	}
	if manifests != "" {
		scope += fmt.Sprintf(", against %d policies in %s", r.Policies, manifests)
	}
	var err error
	if len(r.Findings) == 0 {
		_, err = fmt.Fprintf(w, "No findings in %s.\n", scope)
	} else {
		_, err = fmt.Fprintf(w, "%s (%d high, %d medium, %d low) in %s.\n", plural(len(r.Findings), "finding"),
			c[audit.SeverityHigh], c[audit.SeverityMedium], c[audit.SeverityLow], scope)
	}
	return err
}

func printChecks(w io.Writer, output string) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(audit.Checks())
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CHECK\tSEVERITY\tKIND\tDOCKER-BENCH\tWHAT")
	for _, c := range audit.Checks() {
		bench := c.DockerBench
		if bench == "" {
			bench = "-"
		}
		title := c.Title
		if c.NeedsPolicies {
			title += " (with --manifests)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.ID, c.Severity, c.Kind, bench, title)
	}
	return tw.Flush()
}

// dnsGaps says which nodes reported fewer lookups than they saw (their
// bound's evictions, the kernel's limit): a flood of names there may hide
// auditLookups reads the lookups as the agents of service saw them since
// then: none without the service (the engine's 404, as no node checks),
// none and a warning on w on another error.
func auditLookups(ctx context.Context, w io.Writer, api traffic.Logs, service string, since time.Time) []agentv1.DNSLookup {
	got, err := traffic.ReadDNS(ctx, api, service, since, 0)
	switch {
	case dockerapi.IsNotFound(err):
		return nil
	case err != nil:
		fmt.Fprintf(w, "audit: DNS lookups not read: %v\n", err)
		return nil
	}
	var lookups []agentv1.DNSLookup
	for _, l := range got.Lookups {
		lookups = append(lookups, l.DNSLookup)
	}
	fmt.Fprint(w, dnsGaps(got))
	return lookups
}

// a probe from dns-reconnaissance. Empty when none did.
func dnsGaps(got *traffic.Lookups) string {
	var parts []string
	nodes := maps.Clone(got.Dropped)
	if nodes == nil {
		nodes = map[string]uint64{}
	}
	maps.Copy(nodes, got.Unseen)
	for _, node := range slices.Sorted(maps.Keys(nodes)) {
		var what []string
		if n := got.Dropped[node]; n > 0 {
			what = append(what, fmt.Sprintf("%d not reported (--dns-max, a service's share)", n))
		}
		if n := got.Unseen[node]; n > 0 {
			what = append(what, fmt.Sprintf("%d unseen (the kernel's limit)", n))
		}
		if len(what) > 0 {
			parts = append(parts, printable(node)+" "+strings.Join(what, ", "))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "audit: some DNS lookups in the window were not reported, so dns-reconnaissance may miss some: " + strings.Join(parts, "; ") + "\n"
}
