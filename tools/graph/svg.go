package graph

import (
	"encoding/xml"
	"fmt"
	"io"
	"slices"
	"strings"
)

// The SVG layout: one column per stack, its services one under the other,
// "outside" in a column of its own on the right. Plain geometry instead of
// Graphviz, so a picture needs no system package.
const (
	svgMargin  = 30
	svgColW    = 220
	svgColGap  = 90
	svgNodeW   = 180
	svgHeaderH = 34
	svgLineH   = 15
	svgNodeGap = 28
)

type svgBox struct{ x, y, w, h int }

func (b svgBox) cx() int { return b.x + b.w/2 }
func (b svgBox) cy() int { return b.y + b.h/2 }

// SVG writes the graph as a standalone SVG picture. Every edge is a path
// with class "edge" (and "added" or "removed" after Diff) and data-from,
// data-to naming its services, so a test or a script can read it back.
func (g *Graph) SVG(w io.Writer) error {
	order, by := g.stacks()
	boxes := map[string]svgBox{}
	var b strings.Builder
	var body strings.Builder
	height := 0
	for i, st := range order {
		x := svgMargin + i*(svgColW+svgColGap)
		y := svgMargin + svgHeaderH
		for _, n := range by[st] {
			h := svgLineH*(2+len(n.Ports)) + 10
			if !n.Isolated {
				h += svgLineH
			}
			boxes[n.Name] = svgBox{x + (svgColW-svgNodeW)/2, y, svgNodeW, h}
			y += h + svgNodeGap
		}
		height = max(height, y)
	}
	outside := svgBox{svgMargin + len(order)*(svgColW+svgColGap) + (svgColW-svgNodeW)/2, svgMargin + svgHeaderH, svgNodeW, 40}
	height = max(height, outside.y+outside.h+svgNodeGap) + svgMargin
	width := outside.x + svgNodeW + svgMargin

	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	b.WriteString(`<title>swarmsec: allowed connectivity</title>` + "\n")
	// Stack frames first, edges over them, services on top.
	for i, st := range order {
		if st == "" {
			continue
		}
		x := svgMargin + i*(svgColW+svgColGap)
		last := by[st][len(by[st])-1].Name
		fmt.Fprintf(&body, `<g class="stack"><rect x="%d" y="%d" width="%d" height="%d" rx="8" fill="#f4f6f8" stroke="#b0b8c0"/><text x="%d" y="%d" font-weight="bold">%s</text></g>`+"\n",
			x, svgMargin, svgColW, boxes[last].y+boxes[last].h+12-svgMargin, x+10, svgMargin+20, esc("stack "+st))
	}
	edge := func(from, to, class, style string) {
		a, c := boxes[from], boxes[to]
		if to == "outside" {
			c = outside
		}
		d := fmt.Sprintf("M %d %d L %d %d", a.cx(), a.cy(), c.cx(), c.cy())
		if a.x == c.x { // same column: bow out to the left, clear of the boxes between
			bow := a.x - 40 - abs(a.cy()-c.cy())/8
			d = fmt.Sprintf("M %d %d Q %d %d %d %d", a.x, a.cy(), bow, (a.cy()+c.cy())/2, c.x, c.cy())
		}
		fmt.Fprintf(&body, `<path class="%s" data-from="%s" data-to="%s" d="%s" fill="none" %s/>`+"\n", class, esc(from), esc(to), d, style)
	}
	if g.Observed != nil {
		for _, e := range g.observedEdges() {
			if _, ok := boxes[e.a]; !ok && e.a != "outside" {
				continue
			}
			if _, ok := boxes[e.b]; !ok && e.b != "outside" {
				continue
			}
			a, c := e.a, e.b
			if a == "outside" {
				a, c = c, a
			}
			edge(a, c, "edge "+e.kind, svgObserved[e.kind]+` data-label="`+esc(e.label)+`"`)
		}
	}
	for _, e := range g.Edges {
		if g.Observed != nil {
			break
		}
		if slices.Contains(g.Added, e) {
			edge(e[0], e[1], "edge added", `stroke="#2e7d32" stroke-width="3"`)
			continue
		}
		edge(e[0], e[1], "edge", `stroke="#37474f" stroke-width="1.5"`)
	}
	for _, e := range g.Removed {
		if g.Observed != nil {
			break
		}
		edge(e[0], e[1], "edge removed", `stroke="#c62828" stroke-width="2" stroke-dasharray="6 4"`)
	}
	for _, n := range g.Nodes {
		if n.Isolated && n.Outside && g.Observed == nil {
			edge(n.Name, "outside", "outside", `stroke="#78909c" stroke-dasharray="2 4"`)
		}
	}
	for _, n := range g.Nodes {
		bx := boxes[n.Name]
		dash := ""
		if !n.Isolated {
			dash = ` stroke-dasharray="5 3"`
		}
		fmt.Fprintf(&body, `<g class="service" data-name="%s"><rect x="%d" y="%d" width="%d" height="%d" rx="4" fill="#ffffff" stroke="#37474f"%s/>`, esc(n.Name), bx.x, bx.y, bx.w, bx.h, dash)
		lines := append([]string{n.Name}, n.Ports...)
		if !n.Isolated {
			lines = append(lines, "(not isolated)")
		}
		for i, l := range lines {
			weight := ""
			if i == 0 {
				weight = ` font-weight="bold"`
			}
			fmt.Fprintf(&body, `<text x="%d" y="%d"%s>%s</text>`, bx.x+8, bx.y+svgLineH*(i+1)+4, weight, esc(l))
		}
		body.WriteString("</g>\n")
	}
	fmt.Fprintf(&body, `<g class="service" data-name="outside"><ellipse cx="%d" cy="%d" rx="%d" ry="%d" fill="#ffffff" stroke="#78909c"/><text x="%d" y="%d" text-anchor="middle">outside</text></g>`+"\n",
		outside.cx(), outside.cy(), outside.w/2, outside.h/2, outside.cx(), outside.cy()+4)
	b.WriteString(body.String())
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder does not fail
	return b.String()                 // quotes too: safe in attributes
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
