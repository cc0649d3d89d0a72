package traffic

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// dropSums sums flow records (one per dropped connection attempt) into
// aggregates keyed like the observed flows: source service, destination
// service or outside block, port and protocol.
type dropSums map[string]*dropSum

type dropSum struct {
	Flow
	nodes    map[string]bool
	policies []string
}

// add counts one record Swarm says node nodeID logged at at: blocked,
// would-block or allowed, each verdict summed apart. Records of another
// verdict, or with neither end a service, are not counted.
func (d dropSums) add(r *agentv1.FlowRecord, nodeID string, at time.Time) {
	verdict := r.Verdict
	switch verdict {
	case "", Blocked:
		verdict = Blocked
	case WouldBlock, Allowed:
	default:
		return
	}
	f, ok := dropFlow(r)
	if !ok {
		return
	}
	t := r.Time
	if t.IsZero() || t.After(at) {
		t = at
	}
	host := r.Node
	if host == "" {
		host = nodeID
	}
	k := verdict + "|" + f.Key()
	s := d[k]
	if s == nil {
		f.FirstSeen, f.LastSeen = t, t
		s = &dropSum{Flow: Flow{Flow: f, Verdict: verdict}, nodes: map[string]bool{}}
		d[k] = s
	}
	s.Connections++
	if t.Before(s.FirstSeen) {
		s.FirstSeen = t
	}
	if t.After(s.LastSeen) {
		s.LastSeen = t
	}
	s.nodes[host] = true
	if r.Policy != "" && !slices.Contains(s.policies, r.Policy) {
		s.policies = append(s.policies, r.Policy)
	}
}

// flows are the sums, sorted, each with its verdict, the nodes that
// reported it and what decided (the records' policies).
func (d dropSums) flows() []Flow {
	out := make([]Flow, 0, len(d))
	for _, s := range d {
		f := s.Flow
		f.Nodes = slices.Sorted(keys(s.nodes))
		slices.Sort(s.policies)
		f.Why = strings.Join(s.policies, "; ")
		out = append(out, f)
	}
	Sort(out)
	return out
}

// dropFlow is the aggregate a record counts in: between two services, from
// a service to an outside block, or from an outside block to a service's
// port (the port its task sees).
func dropFlow(r *agentv1.FlowRecord) (agentv1.Flow, bool) {
	f := agentv1.Flow{Source: r.Source.Service, Destination: r.Destination.Service, Port: r.Destination.Port, Protocol: r.Protocol}
	switch {
	case f.Source != "" && f.Destination != "":
		f.Kind = agentv1.FlowService
	case f.Source != "":
		f.Kind, f.Destination, f.DestinationBlock = agentv1.FlowExternal, agentv1.Outside, block(r.Destination.IP)
	case f.Destination != "":
		f.Kind, f.Source, f.SourceBlock = agentv1.FlowPublished, agentv1.Outside, block(r.Source.IP)
	default:
		return f, false
	}
	return f, f.Protocol != ""
}

// block is the /24 or /64 of an address, as the agents aggregate outside
// ends; the address itself when it does not parse.
func block(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap()
	bits := 24
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p.String()
}
