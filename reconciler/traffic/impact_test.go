package traffic

import (
	"context"
	"testing"
	"time"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

// On the shop as people start it (every service on shop_default), the
// shipped-style policies cut web from db and db from outside: the flows
// seen there are the change's impact, approved once a policy says so.
func TestImpactListsTheFlowsAChangeCuts(t *testing.T) {
	f, _ := policytest.Shop(t)
	st := state.New()
	if err := observe.Observe(context.Background(), f, st); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	flows := []Flow{
		{Flow: flow(agentv1.FlowService, "shop_api", "shop_db", 5432, 40, now, now)},
		{Flow: flow(agentv1.FlowService, "shop_web", "shop_db", 5432, 412, now, now)},
		{Flow: flow(agentv1.FlowExternal, "shop_db", agentv1.Outside, 443, 3, now, now)},
		{Flow: flow(agentv1.FlowPublished, agentv1.Outside, "shop_web", 9090, 2, now, now)},
	}
	impact := func(policies []*v1.Policy) []Cut {
		t.Helper()
		if err := st.Update(func(tx state.Tx) error { return state.ReplacePolicies(tx, policies) }); err != nil {
			t.Fatal(err)
		}
		var cuts []Cut
		var err error
		st.View(func(tx state.ReadTx) {
			var d *compile.Desired
			if d, err = compile.Compile(tx, nil); err == nil {
				cuts, err = Impact(tx, d, flows)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		return cuts
	}
	cuts := impact(policytest.ShopPolicies())
	if len(cuts) != 3 {
		t.Fatalf("cuts %+v", cuts)
	}
	want := []string{"shop_web -> shop_db:5432/tcp", "shop_db -> 203.0.113.0/24:443/tcp", "outside 198.51.100.0/24 -> shop_web:9090/tcp"}
	for i, c := range cuts {
		if got := c.From() + " -> " + c.Target(); got != want[i] || c.Approved || len(c.Policies) == 0 {
			t.Errorf("cut %d: %s %+v, want %s", i, got, c, want[i])
		}
	}
	if p := cuts[0].Policies; len(p) != 2 || p[0] != "db" || p[1] != "web" {
		t.Errorf("web -> db cut by %v, want db and web", p)
	}
	// The review approves the cuts of db's policy.
	policies := policytest.ShopPolicies()
	policies[0].Network.Metadata.Annotations = map[string]string{v1.AnnotationApproveTrafficCut: "true"}
	cuts = impact(policies)
	if !cuts[0].Approved || !cuts[1].Approved || cuts[2].Approved {
		t.Errorf("approvals %v %v %v, want db's two only", cuts[0].Approved, cuts[1].Approved, cuts[2].Approved)
	}
	// No policy: nothing is cut.
	if cuts := impact(nil); len(cuts) != 0 {
		t.Errorf("no policies cut %+v", cuts)
	}
}
