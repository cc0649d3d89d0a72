package graph

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/reconciler/traffic"
)

// Observation is what the node agents saw on the graph (Observe).
type Observation struct {
	// Used are the pairs with a flow the policies allow, Attempted those
	// with a flow they block or would block; "outside" is a name too.
	Used, Attempted map[[2]string]*Usage
}

// Usage is what was seen between two ends.
type Usage struct {
	// Ports seen, "5432/tcp", sorted.
	Ports       []string
	Connections uint64
}

func (u *Usage) label() string {
	return fmt.Sprintf("%s (%d)", strings.Join(u.Ports, ", "), u.Connections)
}

// Observe marks the judged flows on the graph: each edge is then drawn as
// used, allowed and never used, or attempted and blocked.
func (g *Graph) Observe(flows []traffic.Flow) {
	o := &Observation{Used: map[[2]string]*Usage{}, Attempted: map[[2]string]*Usage{}}
	for _, f := range flows {
		src, dst := f.Source, f.Destination
		if f.Kind == agentv1.FlowExternal {
			dst = "outside"
		}
		if f.Kind == agentv1.FlowPublished {
			src = "outside"
		}
		if src == dst {
			continue
		}
		if src > dst {
			src, dst = dst, src
		}
		m := o.Used
		if f.Verdict == traffic.WouldBlock || f.Verdict == traffic.Blocked {
			m = o.Attempted
		}
		u := m[[2]string{src, dst}]
		if u == nil {
			u = &Usage{}
			m[[2]string{src, dst}] = u
		}
		port := fmt.Sprintf("%d/%s", f.Port, f.Protocol)
		if !slices.Contains(u.Ports, port) {
			u.Ports = append(u.Ports, port)
			slices.Sort(u.Ports)
		}
		u.Connections += f.Connections
	}
	g.Observed = o
}

// The kinds of observed edge.
const (
	edgeUsed      = "used"
	edgeUnused    = "unused"
	edgeAttempted = "attempted"
)

type observedEdge struct {
	a, b, kind, label string
}

// observedEdges are the edges to draw once observed: every allowed edge,
// used or not, the way outside of isolated services that keep it, the
// pairs used without an edge of a policy (neither end is isolated), and
// the attempted ones.
func (g *Graph) observedEdges() []observedEdge {
	o := g.Observed
	var out []observedEdge
	drawn := map[[2]string]bool{}
	allowed := slices.Clone(g.Edges)
	for _, n := range g.Nodes {
		if n.Isolated && n.Outside {
			allowed = append(allowed, sortedPair(n.Name, "outside"))
		}
	}
	for _, e := range allowed {
		drawn[e] = true
		if u := o.Used[e]; u != nil {
			out = append(out, observedEdge{e[0], e[1], edgeUsed, u.label()})
		} else {
			out = append(out, observedEdge{e[0], e[1], edgeUnused, "never used"})
		}
	}
	for _, e := range slices.SortedFunc(maps.Keys(o.Used), comparePairs) {
		if !drawn[e] {
			out = append(out, observedEdge{e[0], e[1], edgeUsed, o.Used[e].label()})
		}
	}
	for _, e := range slices.SortedFunc(maps.Keys(o.Attempted), comparePairs) {
		out = append(out, observedEdge{e[0], e[1], edgeAttempted, "blocked " + o.Attempted[e].label()})
	}
	return out
}

func sortedPair(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

func comparePairs(x, y [2]string) int {
	return cmp.Or(cmp.Compare(x[0], y[0]), cmp.Compare(x[1], y[1]))
}

var dotObserved = map[string]string{
	edgeUsed:      `color="#1565c0", penwidth=2`,
	edgeUnused:    `color=gray, style=dashed`,
	edgeAttempted: `color=red, style=bold`,
}

var svgObserved = map[string]string{
	edgeUsed:      `stroke="#1565c0" stroke-width="3"`,
	edgeUnused:    `stroke="#9e9e9e" stroke-width="1.5" stroke-dasharray="6 4"`,
	edgeAttempted: `stroke="#c62828" stroke-width="2.5"`,
}
