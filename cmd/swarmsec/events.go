package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/spf13/cobra"

	"github.com/swarmsec/swarmsec/agent"
	"github.com/swarmsec/swarmsec/internal/loglines"
	"github.com/swarmsec/swarmsec/reconciler/agentrules"
)

func init() { register(newEventsCmd) }

// event is one aggregated line of an agent's log.
type event struct {
	Time     time.Time `json:"time"`
	Msg      string    `json:"msg"`
	Verdict  string    `json:"verdict"`
	Service  string    `json:"service"`
	Port     string    `json:"port"`
	Source   string    `json:"source"`
	Attempts int       `json:"attempts"`
	Node     string    `json:"node"`
	Window   string    `json:"window"`
}

func newEventsCmd(*globalOptions) *cobra.Command {
	var (
		service, since, output string
		follow                 bool
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show the connection attempts the node agents logged (published ports with log: blocked or all)",
		Long: `events reads the node agents' events through the Swarm manager (the agent
service's logs, from every node): per node, service, published port and source,
how many connection attempts each window (a minute) blocked or admitted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: must be table or json", output)
			}
			cli, err := newClient()
			if err != nil {
				return fmt.Errorf("docker client: %w", err)
			}
			defer cli.Close()
			rc, err := cli.ServiceLogs(cmd.Context(), service, container.LogsOptions{ShowStdout: true, ShowStderr: true, Since: since, Follow: follow})
			if err != nil {
				return fmt.Errorf("agent service %s: %w", service, err)
			}
			defer rc.Close()
			pr, pw := io.Pipe()
			go func() { _, err := stdcopy.StdCopy(pw, pw, rc); pw.CloseWithError(err) }()
			return printEvents(cmd.OutOrStdout(), pr, output, follow)
		},
	}
	cmd.Flags().StringVar(&service, "agent-service", agentrules.DefaultService, "the node agent's service")
	cmd.Flags().StringVar(&since, "since", "1h", "show events since this time (RFC 3339) or for this long (10m, 1h)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep showing new events")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output: table or json")
	return cmd
}

// printEvents writes the events of the agents' log lines in r.
func printEvents(w io.Writer, r io.Reader, output string, follow bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if output == "table" {
		fmt.Fprintln(tw, "TIME\tNODE\tSERVICE\tPORT\tSOURCE\tVERDICT\tATTEMPTS")
	}
	enc := json.NewEncoder(w)
	sc := loglines.New(r)
	for sc.Scan() {
		var e event
		line := sc.Text()
		if i := strings.IndexByte(line, '{'); i >= 0 {
			line = line[i:]
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Msg != agent.EventMessage {
			continue
		}
		if output == "json" {
			if err := enc.Encode(e); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\n", e.Time.UTC().Format(time.RFC3339),
			printable(e.Node), printable(e.Service), printable(e.Port), printable(e.Source), printable(e.Verdict), e.Attempts)
		if follow {
			tw.Flush()
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return sc.Err()
}

// printable keeps what logs said from steering the terminal: control
// characters and spaces come out quoted.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) || unicode.IsSpace(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}
