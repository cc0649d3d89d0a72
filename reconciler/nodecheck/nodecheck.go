// Package nodecheck is the leader's reading of the node checks the agents
// run on their own nodes (agent/nodeprobe; a manager sees nothing
// of a worker's kernel or firewall): whether each node can carry encrypted
// overlay traffic, for the planner's holds, and what on it lets traffic
// around the policies, for status and audit.
//
// An agent logs its report (api/v1/agent.Report) as one line at start, on
// every change and every ReportInterval; the leader reads the latest
// report of each node from the agent service's logs through a manager, the
// one channel from a worker to a manager Swarm gives.
package nodecheck

import (
	"encoding/json"
	"io"
	"net/url"
	"strings"
	"time"

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/internal/loglines"
	"github.com/swarmsec/swarmsec/reconciler/plan"
)

// Latest reads agent log lines, as a manager's service logs give them
// with timestamps and details, and returns the latest report of each node,
// by node ID. A line speaks only for the node Swarm says logged it and at
// the time Swarm logged it (the com.docker.swarm.node.id detail and the
// timestamp: swarmkit takes a node's logs only for its own tasks), so an
// agent on one node cannot speak for another, nor date its word ahead.
func Latest(r io.Reader) (map[string]agentv1.Report, error) {
	out := map[string]agentv1.Report{}
	sc := loglines.New(r)
	now := time.Now()
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, agentv1.ReportMessage) {
			continue
		}
		at, nodeID, rest := prefixes(line)
		i := strings.IndexByte(rest, '{')
		if i < 0 || nodeID == "" || at.IsZero() || at.After(now.Add(time.Minute)) {
			continue
		}
		var l struct {
			Msg    string          `json:"msg"`
			Report *agentv1.Report `json:"report"` // agentv1.ReportKey
		}
		if json.Unmarshal([]byte(rest[i:]), &l) != nil || l.Msg != agentv1.ReportMessage || l.Report == nil || l.Report.Node == "" {
			continue
		}
		l.Report.NodeID, l.Report.Time = nodeID, at
		if prev, ok := out[nodeID]; !ok || !at.Before(prev.Time) {
			out[nodeID] = *l.Report
		}
	}
	return out, sc.Err()
}

// prefixes splits the engine's "TIMESTAMP DETAILS " off a log line.
func prefixes(line string) (at time.Time, nodeID, rest string) {
	ts, rest, _ := strings.Cut(line, " ")
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return time.Time{}, "", line
	}
	details, msg, _ := strings.Cut(rest, " ")
	for _, kv := range strings.Split(details, ",") {
		k, v, _ := strings.Cut(kv, "=")
		if k == "com.docker.swarm.node.id" {
			nodeID, _ = url.QueryUnescape(v)
		}
	}
	if nodeID == "" {
		return at, "", rest
	}
	return at, nodeID, msg
}

// Encryption is what the reports say of each node's encryption, by node
// ID, for plan.HoldUnencryptable; nodes whose report does not know are
// left out. While agents run (reports is not nil, if empty), a node
// without a report counts as one that cannot: its agent has not said.
func Encryption(reports map[string]agentv1.Report) map[string]plan.NodeEncryption {
	if reports == nil {
		return nil
	}
	out := map[string]plan.NodeEncryption{plan.AnyOtherNode: {
		Why: "its node agent has not reported",
		Fix: "run the node agent on every node (the stack's global agent service); it reports within a minute of starting",
	}}
	for _, r := range reports {
		ok, known := r.CanEncrypt()
		if !known || r.NodeID == "" {
			continue
		}
		ne := plan.NodeEncryption{Hostname: r.Node, OK: ok}
		for _, id := range []string{agentv1.CheckESP, agentv1.CheckU32, agentv1.CheckDataPath} {
			if c, found := r.Get(id); found && c.Result == agentv1.Failed {
				ne.Why, ne.Fix = c.Message, c.Fix
				break
			}
		}
		out[r.NodeID] = ne
	}
	return out
}
