package traffic

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/internal/loglines"
	"github.com/swarmsec/swarmsec/reconciler/nodecheck"
)

// Verdicts.
const (
	Allowed    = "allowed"
	WouldBlock = "would-block"
	// Blocked: the data path dropped it (from the agents' drop logs).
	Blocked = "blocked"
	// Unknown: an end is a service the Swarm no longer has.
	Unknown = "unknown"
)

// Flow is one aggregate over the window and every node.
type Flow struct {
	agentv1.Flow
	// Nodes are the hostnames of the nodes that saw it, sorted.
	Nodes []string `json:"nodes"`
	// Verdict under the policies Judge was given, and why.
	Verdict string `json:"verdict,omitempty"`
	Why     string `json:"why,omitempty"`
}

// Observed is what the agents saw in a window.
type Observed struct {
	Since time.Time `json:"since"`
	// Flows sorted by source, then destination.
	Flows []Flow `json:"flows"`
	// Nodes are the hostnames of the nodes that reported, sorted.
	Nodes []string `json:"nodes"`
	// Dropped are the connections each node counted without aggregating
	// (its bound on distinct flows), by hostname.
	Dropped map[string]uint64 `json:"dropped,omitempty"`
}

// Parse sums the flows lines of agent logs (as a manager's service logs
// give them, with timestamps and details) logged at since or later. A line
// speaks only for the node Swarm says logged it.
func Parse(r io.Reader, since time.Time) (*Observed, error) {
	obs, _, err := ParseWithDrops(r, since)
	return obs, err
}

// ParseWithDrops is Parse that also sums the flow records of the same logs
// (the connection attempts the agents' per-task rules dropped) into
// aggregates, for AddDrops.
func ParseWithDrops(r io.Reader, since time.Time) (*Observed, []Flow, error) {
	type perNode struct {
		open uint64
		at   time.Time
	}
	flows := map[string]*Flow{}
	nodes := map[string]map[string]bool{} // key -> hostnames
	open := map[string]map[string]perNode{}
	obs := &Observed{Since: since, Dropped: map[string]uint64{}}
	reported := map[string]bool{}
	drops := dropSums{}
	now := time.Now()
	sc := loglines.New(r)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `"`+agentv1.FlowsKey+`"`) && !strings.Contains(line, `"`+agentv1.FlowRecordKey+`"`) {
			continue
		}
		at, nodeID, rest := nodecheck.SplitLine(line)
		i := strings.IndexByte(rest, '{')
		if i < 0 || nodeID == "" || at.IsZero() || at.Before(since) || at.After(now.Add(time.Minute)) {
			continue
		}
		var l struct {
			Msg   string              `json:"msg"`
			Flows *agentv1.Flows      `json:"flows"` // agentv1.FlowsKey
			Flow  *agentv1.FlowRecord `json:"flow"`  // agentv1.FlowRecordKey
		}
		if json.Unmarshal([]byte(rest[i:]), &l) != nil {
			continue
		}
		if l.Msg == agentv1.FlowRecordMessage && l.Flow != nil {
			drops.add(l.Flow, nodeID, at)
			continue
		}
		if l.Msg != agentv1.FlowsMessage || l.Flows == nil {
			continue
		}
		host := l.Flows.Node
		if host == "" {
			host = nodeID
		}
		reported[host] = true
		if l.Flows.Dropped > 0 {
			obs.Dropped[host] += l.Flows.Dropped
		}
		for _, f := range l.Flows.Flows {
			if f.Kind == "" || f.Source == "" || f.Destination == "" {
				continue
			}
			k := f.Key()
			agg := flows[k]
			if agg == nil {
				agg = &Flow{Flow: f}
				agg.Connections, agg.Unanswered, agg.Bytes, agg.Open = 0, 0, 0, 0
				flows[k], nodes[k], open[k] = agg, map[string]bool{}, map[string]perNode{}
			}
			agg.Connections += f.Connections
			agg.Unanswered += f.Unanswered
			agg.Bytes += f.Bytes
			if f.FirstSeen.Before(agg.FirstSeen) {
				agg.FirstSeen = f.FirstSeen
			}
			if f.LastSeen.After(agg.LastSeen) {
				agg.LastSeen = f.LastSeen
			}
			nodes[k][host] = true
			// Open is the latest report's, per node.
			if p, ok := open[k][nodeID]; !ok || !at.Before(p.at) {
				open[k][nodeID] = perNode{open: f.Open, at: at}
			}
		}
	}
	for k, f := range flows {
		f.Nodes = slices.Sorted(keys(nodes[k]))
		for _, p := range open[k] {
			f.Open += p.open
		}
		obs.Flows = append(obs.Flows, *f)
	}
	Sort(obs.Flows)
	obs.Nodes = slices.Sorted(keys(reported))
	if len(obs.Dropped) == 0 {
		obs.Dropped = nil
	}
	if err := sc.Err(); err != nil {
		return obs, drops.flows(), err
	}
	return obs, drops.flows(), nil
}

// Sort orders flows by source, destination, port and protocol (then kind
// and verdict: an observed flow before the drops of the same key).
func Sort(fs []Flow) {
	slices.SortFunc(fs, func(a, b Flow) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.SourceBlock, b.SourceBlock), cmp.Compare(a.Destination, b.Destination),
			cmp.Compare(a.DestinationBlock, b.DestinationBlock), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Verdict, b.Verdict))
	})
}

func keys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Logs is what reading the flows needs of a manager.
type Logs interface {
	ServiceLogs(ctx context.Context, serviceID string, options container.LogsOptions) (io.ReadCloser, error)
}

// Read reads the flows the agents of service logged since then, through
// a manager, within timeout (20 s when 0).
func Read(ctx context.Context, d Logs, service string, since time.Time, timeout time.Duration) (*Observed, error) {
	obs, _, err := ReadWithDrops(ctx, d, service, since, timeout)
	return obs, err
}

// ReadWithDrops is Read that also gives the drops the agents logged in the
// same window (ParseWithDrops), for AddDrops.
func ReadWithDrops(ctx context.Context, d Logs, service string, since time.Time, timeout time.Duration) (*Observed, []Flow, error) {
	var (
		obs   *Observed
		drops []Flow
	)
	err := readLogs(ctx, d, service, since, timeout, func(r io.Reader) (err error) {
		obs, drops, err = ParseWithDrops(r, since)
		return err
	})
	if err != nil {
		return obs, drops, fmt.Errorf("flows from service %s: %w", service, err)
	}
	return obs, drops, nil
}

// readLogs gives parse the logs of service since then, with timestamps
// and details, through a manager, within timeout (20 s when 0).
func readLogs(ctx context.Context, d Logs, service string, since time.Time, timeout time.Duration, parse func(io.Reader) error) error {
	if timeout <= 0 {
		timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rc, err := d.ServiceLogs(ctx, service, container.LogsOptions{
		ShowStdout: true, ShowStderr: true, Since: since.UTC().Format(time.RFC3339), Timestamps: true, Details: true,
	})
	if err != nil {
		return err
	}
	defer rc.Close()
	pr, pw := io.Pipe()
	go func() { _, err := stdcopy.StdCopy(pw, pw, rc); pw.CloseWithError(err) }()
	defer pr.Close()
	return parse(pr)
}
