package graph

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"regexp"
	"slices"
	"testing"

	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

// The DOT output has an edge for every pair the compiled policies let talk,
// and no other.
func TestDOTHasEveryEdgeAndNoOther(t *testing.T) {
	services := shopServices(true)
	d := compileShop(t, services)
	g := Build(d, services)
	var out bytes.Buffer
	if err := g.DOT(&out); err != nil {
		t.Fatal(err)
	}
	edge := regexp.MustCompile(`(?m)^  "([^"]+)" -- "([^"]+)";$`)
	var got [][2]string
	for _, m := range edge.FindAllStringSubmatch(out.String(), -1) {
		got = append(got, [2]string{m[1], m[2]})
	}
	names := map[string]string{}
	for _, s := range services {
		names[s.ID] = s.Name
	}
	var want [][2]string
	for _, e := range d.Edges() {
		a, b := names[e[0]], names[e[1]]
		if a > b {
			a, b = b, a
		}
		want = append(want, [2]string{a, b})
	}
	slices.SortFunc(want, func(x, y [2]string) int {
		if x[0] != y[0] {
			if x[0] < y[0] {
				return -1
			}
			return 1
		}
		if x[1] < y[1] {
			return -1
		}
		if x[1] > y[1] {
			return 1
		}
		return 0
	})
	if len(want) == 0 || !slices.Equal(got, want) {
		t.Errorf("DOT edges %v, want the compiled %v\n%s", got, want, out.String())
	}
	var mm bytes.Buffer
	if err := g.Mermaid(&mm); err != nil || !bytes.Contains(mm.Bytes(), []byte("flowchart LR")) {
		t.Errorf("mermaid: %v\n%s", err, mm.String())
	}
}

// Diff marks red what the policies take away from today's networks and
// green what they add, and nothing they leave as it is.
func TestDiffMarksWhatThePlanChanges(t *testing.T) {
	services := shopServices(false)
	d := compileShop(t, services)
	g := Build(d, services)
	// Today only web and api share a network.
	g.Diff(d, services, func(a, b *state.Service) bool {
		pair := a.Name + "," + b.Name
		return pair == "shop_web,shop_api" || pair == "shop_api,shop_web"
	})
	var out bytes.Buffer
	if err := g.DOT(&out); err != nil {
		t.Fatal(err)
	}
	for _, e := range g.Added {
		if !slices.Contains(g.Edges, e) {
			t.Errorf("added %v is not an allowed edge", e)
		}
		if e == [2]string{"shop_api", "shop_web"} {
			t.Errorf("web-api is shared today, not added")
		}
	}
	if len(g.Added) == 0 || !bytes.Contains(out.Bytes(), []byte("color=green")) {
		t.Errorf("api-db should be drawn added\n%s", out.String())
	}
	if len(g.Removed) != 0 {
		t.Errorf("removed %v: nothing shared today is denied", g.Removed)
	}

	// Had every pair shared a network, the pairs no policy allows go red.
	g = Build(d, services)
	g.Diff(d, services, func(_, _ *state.Service) bool { return true })
	if len(g.Added) != 0 || len(g.Removed) == 0 {
		t.Errorf("all shared today: added %v removed %v", g.Added, g.Removed)
	}
	for _, e := range g.Removed {
		if slices.Contains(g.Edges, e) {
			t.Errorf("removed %v is an allowed edge", e)
		}
	}
}

// The SVG is well-formed XML with a path for every compiled edge and no
// other, and a box for every service.
func TestSVGHasEveryEdgeAndNoOther(t *testing.T) {
	services := shopServices(true)
	d := compileShop(t, services)
	g := Build(d, services)
	g.Diff(d, services, func(_, _ *state.Service) bool { return true })
	var out bytes.Buffer
	if err := g.SVG(&out); err != nil {
		t.Fatal(err)
	}
	type elem struct {
		XMLName xml.Name
		Class   string `xml:"class,attr"`
		From    string `xml:"data-from,attr"`
		To      string `xml:"data-to,attr"`
		Name    string `xml:"data-name,attr"`
	}
	var edges, removed [][2]string
	boxes := map[string]bool{}
	dec := xml.NewDecoder(&out)
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		var e elem
		for _, a := range se.Attr {
			switch a.Name.Local {
			case "class":
				e.Class = a.Value
			case "data-from":
				e.From = a.Value
			case "data-to":
				e.To = a.Value
			case "data-name":
				e.Name = a.Value
			}
		}
		switch e.Class {
		case "edge", "edge added":
			edges = append(edges, [2]string{e.From, e.To})
		case "edge removed":
			removed = append(removed, [2]string{e.From, e.To})
		case "service":
			boxes[e.Name] = true
		}
	}
	if len(g.Edges) == 0 || !slices.Equal(edges, g.Edges) {
		t.Errorf("SVG edges %v, want the compiled %v", edges, g.Edges)
	}
	if !slices.Equal(removed, g.Removed) {
		t.Errorf("SVG removed edges %v, want %v", removed, g.Removed)
	}
	for _, s := range services {
		if !boxes[s.Name] {
			t.Errorf("no box for %s", s.Name)
		}
	}
}

// shopServices are the shop stack's web, api and db, and with other a
// service of another stack.
func shopServices(other bool) []*state.Service {
	out := []*state.Service{
		policytest.StackService("shop", "web"), policytest.StackService("shop", "api"),
		policytest.StackService("shop", "db"),
	}
	if other {
		out = append(out, policytest.StackService("other", "x"))
	}
	return out
}

// compileShop compiles the shop policies over services from a real store.
func compileShop(t *testing.T, services []*state.Service) *compile.Desired {
	t.Helper()
	st := state.New()
	if err := st.Update(func(tx state.Tx) error {
		if err := state.ReplaceServices(tx, services); err != nil {
			return err
		}
		return state.ReplacePolicies(tx, policytest.ShopPolicies())
	}); err != nil {
		t.Fatal(err)
	}
	var d *compile.Desired
	var err error
	st.View(func(tx state.ReadTx) { d, err = compile.Compile(tx, nil) })
	if err != nil {
		t.Fatal(err)
	}
	return d
}
