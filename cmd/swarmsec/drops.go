package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"
	"github.com/spf13/cobra"

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/internal/loglines"
)

// flowLine is one flow record line of an agent's log.
type flowLine struct {
	Msg        string             `json:"msg"`
	Flow       agentv1.FlowRecord `json:"flow"`
	Suppressed int                `json:"suppressed"`
}

// flowRecord is a flow as flows prints it: the agent's record, with the
// node Swarm says logged it (an agent speaks only for its own node).
type flowRecord struct {
	agentv1.FlowRecord
	NodeID string `json:"nodeID,omitempty"`
	// Suppressed counts the records the agent's rate limit dropped just
	// before this one.
	Suppressed int `json:"suppressed,omitempty"`
}

// runDrops prints the flow records of one verdict (blocked: the
// connections the agents' per-task rules dropped; would-block, allowed):
// the agent service's logs from every node, through the manager, since
// the given time (RFC 3339 or a duration).
func runDrops(cmd *cobra.Command, agentService, since, verdict, output, service string, follow bool) error {
	cli, err := newClient()
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	rc, err := cli.ServiceLogs(cmd.Context(), agentService, container.LogsOptions{ShowStdout: true, ShowStderr: true, Since: since, Follow: follow, Details: true})
	if err != nil {
		return fmt.Errorf("agent service %s: %w", agentService, err)
	}
	defer rc.Close()
	pr, pw := io.Pipe()
	go func() { _, err := stdcopy.StdCopy(pw, pw, rc); pw.CloseWithError(err) }()
	return printDrops(cmd.OutOrStdout(), pr, verdict, output, service, follow)
}

func printDrops(w io.Writer, r io.Reader, verdict, output, service string, follow bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if output == "table" {
		fmt.Fprintln(tw, "TIME\tNODE\tSOURCE\tDESTINATION\tPROTO\tVERDICT\tPOLICY")
	}
	enc := json.NewEncoder(w)
	sc := loglines.New(r)
	for sc.Scan() {
		line := sc.Text()
		i := strings.IndexByte(line, '{')
		if i < 0 {
			continue
		}
		var fl flowLine
		if json.Unmarshal([]byte(line[i:]), &fl) != nil || fl.Msg != agentv1.FlowRecordMessage {
			continue
		}
		rec := flowRecord{FlowRecord: fl.Flow, NodeID: detail(line[:i], "com.docker.swarm.node.id"), Suppressed: fl.Suppressed}
		if rec.Verdict == "" {
			rec.Verdict = agentv1.VerdictBlocked
		}
		if rec.Verdict != verdict {
			continue
		}
		if service != "" && rec.Source.Service != service && rec.Destination.Service != service {
			continue
		}
		if output == "json" {
			if err := enc.Encode(rec); err != nil {
				return err
			}
			continue
		}
		node := rec.Node
		if rec.NodeID != "" {
			node += "(" + rec.NodeID[:min(8, len(rec.NodeID))] + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", rec.Time.UTC().Format(time.RFC3339), printable(node),
			printable(endpoint(rec.Source)), printable(endpoint(rec.Destination)), printable(rec.Protocol), printable(rec.Verdict), rec.Policy)
		if follow {
			tw.Flush()
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return sc.Err()
}

// endpoint writes service/task ip:port, or ip:port outside the cluster.
func endpoint(e agentv1.FlowEndpoint) string {
	addr := e.IP
	if e.Port != 0 {
		addr = fmt.Sprintf("%s:%d", e.IP, e.Port)
		if strings.Contains(e.IP, ":") {
			addr = fmt.Sprintf("[%s]:%d", e.IP, e.Port)
		}
	}
	switch {
	case e.Task != "":
		return e.Task + "/" + addr
	case e.Service != "":
		return e.Service + "/" + addr
	}
	return addr
}

// detail reads one key of the details Swarm puts before a log line.
func detail(prefix, key string) string {
	for _, f := range strings.FieldsFunc(prefix, func(r rune) bool { return r == ',' || r == ' ' }) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}
