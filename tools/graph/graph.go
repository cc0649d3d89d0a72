// Package graph draws the allowed connectivity of the compiled policies:
// services as nodes grouped by stack, an edge for every pair a policy lets
// talk, published ports and outside access marked. It renders Graphviz DOT
// (`dot -Tsvg` draws it) and Mermaid (GitHub and most wikis draw it).
package graph

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/state"
)

// Node is one service.
type Node struct {
	Name, Stack string
	Isolated    bool
	// Outside is set when it may reach outside the cluster.
	Outside bool
	// Ports are its published ports, "8080/tcp host".
	Ports []string
}

// Graph is the allowed connectivity.
type Graph struct {
	Nodes []Node
	// Edges are pairs of service names a policy lets talk, sorted.
	Edges [][2]string
	// Added and Removed, when set by Diff, are what a change does: pairs
	// that will share a network and do not now, and pairs that do now and
	// will not. DOT draws them green and red.
	Added, Removed [][2]string
	// Observed, when set by Observe, is what the node agents saw: the
	// edges are drawn as used, never used or attempted instead.
	Observed *Observation
}

// Diff marks what applying the policies changes: the pairs that share a
// network now (by service name) against those the policies allow, among
// the services at least one policy isolates.
func (g *Graph) Diff(desired *compile.Desired, services []*state.Service, sharesNow func(a, b *state.Service) bool) {
	iso := func(s *state.Service) bool { ds := desired.Services[s.ID]; return ds != nil && ds.Isolated }
	for i, a := range services {
		for _, b := range services[i+1:] {
			if a.Ignored() || b.Ignored() || (!iso(a) && !iso(b)) {
				continue
			}
			x, y := a.Name, b.Name
			if x > y {
				x, y = y, x
			}
			now, later := sharesNow(a, b), desired.Allowed(a.ID, b.ID)
			switch {
			case later && !now:
				g.Added = append(g.Added, [2]string{x, y})
			case now && !later:
				g.Removed = append(g.Removed, [2]string{x, y})
			}
		}
	}
	sortPairs(g.Added)
	sortPairs(g.Removed)
}

func sortPairs(ps [][2]string) {
	slices.SortFunc(ps, func(x, y [2]string) int { return cmp.Or(cmp.Compare(x[0], y[0]), cmp.Compare(x[1], y[1])) })
}

// Build draws desired over the observed services.
func Build(desired *compile.Desired, services []*state.Service) *Graph {
	g := &Graph{}
	names := map[string]string{}
	for _, s := range services {
		if s.Ignored() {
			continue
		}
		names[s.ID] = s.Name
		n := Node{Name: s.Name, Stack: s.Labels[v1.LabelStackNamespace], Outside: true}
		if ds := desired.Services[s.ID]; ds != nil && ds.Isolated {
			n.Isolated, n.Outside = true, ds.Outside
			for key, mode := range ds.Publish {
				n.Ports = append(n.Ports, key+" "+string(mode))
			}
		} else {
			for _, p := range s.Ports {
				mode := p.PublishMode
				if mode == "" {
					mode = swarm.PortConfigPublishModeIngress
				}
				n.Ports = append(n.Ports, compile.PortKey(p.PublishedPort, string(p.Protocol))+" "+string(mode))
			}
		}
		slices.Sort(n.Ports)
		g.Nodes = append(g.Nodes, n)
	}
	slices.SortFunc(g.Nodes, func(a, b Node) int { return cmp.Or(cmp.Compare(a.Stack, b.Stack), cmp.Compare(a.Name, b.Name)) })
	for _, e := range desired.Edges() {
		a, b := names[e[0]], names[e[1]]
		if a == "" || b == "" {
			continue
		}
		if a > b {
			a, b = b, a
		}
		g.Edges = append(g.Edges, [2]string{a, b})
	}
	slices.SortFunc(g.Edges, func(x, y [2]string) int { return cmp.Or(cmp.Compare(x[0], y[0]), cmp.Compare(x[1], y[1])) })
	return g
}

func (n Node) label() string {
	l := n.Name
	if len(n.Ports) > 0 {
		l += "\\n" + strings.Join(n.Ports, ", ")
	}
	if !n.Isolated {
		l += "\\n(not isolated)"
	}
	return l
}

// stacks groups the nodes by stack, in order.
func (g *Graph) stacks() ([]string, map[string][]Node) {
	by := map[string][]Node{}
	var order []string
	for _, n := range g.Nodes {
		if _, ok := by[n.Stack]; !ok {
			order = append(order, n.Stack)
		}
		by[n.Stack] = append(by[n.Stack], n)
	}
	return order, by
}

// DOT writes the graph for Graphviz: isolated services solid, the others
// dashed, an edge to "outside" where a service may reach it.
func (g *Graph) DOT(w io.Writer) error {
	var b strings.Builder
	b.WriteString("graph swarmsec {\n  node [shape=box];\n  outside [shape=ellipse, label=\"outside\"];\n")
	order, by := g.stacks()
	for i, st := range order {
		indent := "  "
		if st != "" {
			fmt.Fprintf(&b, "  subgraph cluster_%d {\n    label=%q;\n", i, "stack "+st)
			indent = "    "
		}
		for _, n := range by[st] {
			style := "solid"
			if !n.Isolated {
				style = "dashed"
			}
			fmt.Fprintf(&b, "%s%q [label=\"%s\", style=%s];\n", indent, n.Name, n.label(), style)
		}
		if st != "" {
			b.WriteString("  }\n")
		}
	}
	if g.Observed != nil {
		for _, e := range g.observedEdges() {
			fmt.Fprintf(&b, "  %q -- %q [%s, label=%q];\n", e.a, e.b, dotObserved[e.kind], e.label)
		}
		b.WriteString("}\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	for _, e := range g.Edges {
		if slices.Contains(g.Added, e) {
			fmt.Fprintf(&b, "  %q -- %q [color=green, penwidth=2];\n", e[0], e[1])
			continue
		}
		fmt.Fprintf(&b, "  %q -- %q;\n", e[0], e[1])
	}
	for _, e := range g.Removed {
		fmt.Fprintf(&b, "  %q -- %q [color=red, style=dashed];\n", e[0], e[1])
	}
	for _, n := range g.Nodes {
		if n.Isolated && n.Outside {
			fmt.Fprintf(&b, "  %q -- outside [style=dotted];\n", n.Name)
		}
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// Mermaid writes the graph as a Mermaid flowchart.
func (g *Graph) Mermaid(w io.Writer) error {
	var b strings.Builder
	b.WriteString("flowchart LR\n  outside((outside))\n")
	id := map[string]string{}
	for i, n := range g.Nodes {
		id[n.Name] = fmt.Sprintf("s%d", i)
	}
	order, by := g.stacks()
	for _, st := range order {
		if st != "" {
			fmt.Fprintf(&b, "  subgraph %s[\"stack %s\"]\n", "stack_"+sanitize(st), st)
		}
		for _, n := range by[st] {
			fmt.Fprintf(&b, "    %s[\"%s\"]\n", id[n.Name], strings.ReplaceAll(n.label(), "\\n", "<br>"))
		}
		if st != "" {
			b.WriteString("  end\n")
		}
	}
	id["outside"] = "outside"
	if g.Observed != nil {
		for _, e := range g.observedEdges() {
			if id[e.a] == "" || id[e.b] == "" {
				continue
			}
			switch e.kind {
			case edgeUsed:
				fmt.Fprintf(&b, "  %s ==\"%s\"=== %s\n", id[e.a], mermaidText(e.label), id[e.b])
			case edgeUnused:
				fmt.Fprintf(&b, "  %s -.\"%s\".- %s\n", id[e.a], mermaidText(e.label), id[e.b])
			default:
				fmt.Fprintf(&b, "  %s --\"%s\"--x %s\n", id[e.a], mermaidText(e.label), id[e.b])
			}
		}
		_, err := io.WriteString(w, b.String())
		return err
	}
	for _, e := range g.Edges {
		fmt.Fprintf(&b, "  %s --- %s\n", id[e[0]], id[e[1]])
	}
	for _, n := range g.Nodes {
		if n.Isolated && n.Outside {
			fmt.Fprintf(&b, "  %s -.- outside\n", id[n.Name])
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mermaidText keeps a label inside its quotes.
func mermaidText(s string) string { return strings.ReplaceAll(s, `"`, "'") }

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}
