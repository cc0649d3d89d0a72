package graph

import (
	"bytes"
	"regexp"
	"slices"
	"testing"

	"github.com/swarmsec/swarmsec/internal/compile"
	"github.com/swarmsec/swarmsec/internal/testutil/policytest"
	"github.com/swarmsec/swarmsec/state"
)

// The DOT output has an edge for every pair the compiled policies let talk,
// and no other.
func TestDOTHasEveryEdgeAndNoOther(t *testing.T) {
	services := []*state.Service{
		policytest.StackService("shop", "web"), policytest.StackService("shop", "api"),
		policytest.StackService("shop", "db"), policytest.StackService("other", "x"),
	}
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
