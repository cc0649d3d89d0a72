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

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/internal/loglines"
	"github.com/swarmsec/swarmsec/reconciler/nodecheck"
)

// Lookup is one DNS aggregate over the window and every node.
type Lookup struct {
	agentv1.DNSLookup
	// Nodes are the hostnames of the nodes that saw it, sorted.
	Nodes []string `json:"nodes"`
}

// Lookups is what the agents saw of the lookups to the embedded resolver
// in a window.
type Lookups struct {
	Since time.Time `json:"since"`
	// Lookups sorted by source, name, type and class.
	Lookups []Lookup `json:"lookups"`
	// Nodes are the hostnames of the nodes that reported, sorted.
	Nodes []string `json:"nodes"`
	// Dropped are the lookups each node saw and did not report (its bound
	// on distinct lookups evicted them first), by hostname.
	Dropped map[string]uint64 `json:"dropped,omitempty"`
	// Unseen are the answers each node's tables counted and its agent
	// never got (the kernel's rate limit, a full NFLOG queue), by
	// hostname: lookups no aggregate holds.
	Unseen map[string]uint64 `json:"unseen,omitempty"`
}

// ParseDNS sums the DNS lines of agent logs (as a manager's service logs
// give them, with timestamps and details) logged at since or later. A line
// speaks only for the node Swarm says logged it.
func ParseDNS(r io.Reader, since time.Time) (*Lookups, error) {
	sums := map[string]*Lookup{}
	nodes := map[string]map[string]bool{}
	out := &Lookups{Since: since, Dropped: map[string]uint64{}, Unseen: map[string]uint64{}}
	reported := map[string]bool{}
	now := time.Now()
	sc := loglines.New(r)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `"`+agentv1.DNSKey+`"`) {
			continue
		}
		at, nodeID, rest := nodecheck.SplitLine(line)
		i := strings.IndexByte(rest, '{')
		if i < 0 || nodeID == "" || at.IsZero() || at.Before(since) || at.After(now.Add(time.Minute)) {
			continue
		}
		var l struct {
			Msg string       `json:"msg"`
			DNS *agentv1.DNS `json:"dns"` // agentv1.DNSKey
		}
		if json.Unmarshal([]byte(rest[i:]), &l) != nil || l.Msg != agentv1.DNSMessage || l.DNS == nil {
			continue
		}
		host := l.DNS.Node
		if host == "" {
			host = nodeID
		}
		reported[host] = true
		if l.DNS.Dropped > 0 {
			out.Dropped[host] += l.DNS.Dropped
		}
		if l.DNS.Unseen > 0 {
			out.Unseen[host] += l.DNS.Unseen
		}
		for _, d := range l.DNS.Lookups {
			if d.Source == "" || d.Name == "" || d.Class == "" {
				continue
			}
			k := d.Key()
			s := sums[k]
			if s == nil {
				s = &Lookup{DNSLookup: d}
				s.Count = 0
				sums[k], nodes[k] = s, map[string]bool{}
			}
			s.Count += d.Count
			if d.FirstSeen.Before(s.FirstSeen) {
				s.FirstSeen = d.FirstSeen
			}
			if d.LastSeen.After(s.LastSeen) {
				s.LastSeen = d.LastSeen
			}
			nodes[k][host] = true
		}
	}
	for k, s := range sums {
		s.Nodes = slices.Sorted(keys(nodes[k]))
		out.Lookups = append(out.Lookups, *s)
	}
	slices.SortFunc(out.Lookups, func(a, b Lookup) int {
		return cmp.Or(cmp.Compare(a.Source, b.Source), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Type, b.Type),
			cmp.Compare(a.Class, b.Class), cmp.Compare(a.Service, b.Service))
	})
	out.Nodes = slices.Sorted(keys(reported))
	if len(out.Dropped) == 0 {
		out.Dropped = nil
	}
	if len(out.Unseen) == 0 {
		out.Unseen = nil
	}
	if err := sc.Err(); err != nil {
		return out, err
	}
	return out, nil
}

// ReadDNS reads the lookups the agents of service logged since then,
// through a manager, within timeout (20 s when 0).
func ReadDNS(ctx context.Context, d Logs, service string, since time.Time, timeout time.Duration) (*Lookups, error) {
	var out *Lookups
	err := readLogs(ctx, d, service, since, timeout, func(r io.Reader) (err error) {
		out, err = ParseDNS(r, since)
		return err
	})
	if err != nil {
		return out, fmt.Errorf("DNS lookups from service %s: %w", service, err)
	}
	return out, nil
}
