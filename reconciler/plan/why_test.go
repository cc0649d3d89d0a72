package plan

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

// TestWhyRendersAnUpdatesReasons checks the reasons Diff leaves to Why: a
// service on its stack network that a policy isolates.
func TestWhyRendersAnUpdatesReasons(t *testing.T) {
	var svcs []*state.Service
	for _, app := range []string{"api", "db"} {
		svcs = append(svcs, shopService(app, "net-shop"))
	}
	nets := []*state.Network{state.NewNetwork(network.Summary{ID: "net-shop", Name: "shop_default", Driver: "overlay", Scope: "swarm"})}
	p := planFor(t, svcs, nets, dbPolicy())
	i := slices.IndexFunc(p.Actions, func(a Action) bool { return a.Kind == ActionUpdateService && a.Name == "shop_db" })
	if i < 0 {
		t.Fatalf("no update of shop_db in %+v", p.Actions)
	}
	a := p.Actions[i]
	if len(a.Service.Attach) != 1 {
		t.Fatalf("shop_db attaches to %v, want one managed network", a.Service.Attach)
	}
	record := compile.RecordName("id-db")
	want := []string{
		"isolate: selected by db",
		"attach " + a.Service.Attach[0],
		"detach shop_default: isolated services use managed networks only",
		"label " + v1.LabelOriginal + "=" + record + " names its record",
		"record its networks and ports in config " + record + " to restore them when isolation ends",
	}
	if got := a.Why(); !slices.Equal(got, want) {
		t.Errorf("Why() =\n%q\nwant\n%q", got, want)
	}
	// JSON (plan -o json, status) carries them too.
	var out struct{ Reasons []string }
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &out); err != nil || !slices.Equal(out.Reasons, want) {
		t.Errorf("JSON reasons = %q (%v), want %q", out.Reasons, err, want)
	}
	// api joins db's network and keeps its stack network.
	i = slices.IndexFunc(p.Actions, func(a Action) bool { return a.Kind == ActionUpdateService && a.Name == "shop_api" })
	if i < 0 || !slices.Equal(p.Actions[i].Why(), []string{"attach " + a.Service.Attach[0]}) {
		t.Errorf("shop_api's reasons: %+v", p.Actions)
	}
}

// TestDetachReasonsPastSixteen checks that a change leaving more networks
// than its why fields pack still says why for each.
func TestDetachReasonsPastSixteen(t *testing.T) {
	var nets []*state.Network
	var ids []string
	for i := range detachKinds + 2 {
		id := fmt.Sprintf("net-%02d", i)
		nets = append(nets, state.NewNetwork(network.Summary{ID: id, Name: fmt.Sprintf("shop_n%02d", i), Driver: "overlay", Scope: "swarm"}))
		ids = append(ids, id)
	}
	p := planFor(t, []*state.Service{shopService("api", ids[0]), shopService("db", ids...)}, nets, dbPolicy())
	i := slices.IndexFunc(p.Actions, func(a Action) bool { return a.Kind == ActionUpdateService && a.Name == "shop_db" })
	if i < 0 {
		t.Fatalf("no update of shop_db in %+v", p.Actions)
	}
	detached := 0
	for _, r := range p.Actions[i].Why() {
		if strings.HasPrefix(r, "detach ") {
			detached++
			if !strings.HasSuffix(r, ": isolated services use managed networks only") {
				t.Errorf("reason %q does not say why", r)
			}
		}
	}
	if detached != detachKinds+2 {
		t.Errorf("%d detach reasons, want %d", detached, detachKinds+2)
	}
}

// shopService is a service of stack shop with label app, on networks.
func shopService(app string, networks ...string) *state.Service {
	s := swarm.Service{ID: "id-" + app}
	s.Version.Index = 3
	s.Spec.Name = "shop_" + app
	s.Spec.Labels = map[string]string{v1.LabelStackNamespace: "shop", "app": app}
	for _, n := range networks {
		s.Spec.TaskTemplate.Networks = append(s.Spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: n, Aliases: []string{app}})
	}
	return state.NewService(s)
}

// dbPolicy isolates db, reachable from api.
func dbPolicy() *v1.Policy {
	return policytest.NetPol("db", v1.NetworkPolicySpec{
		ServiceSelector: policytest.Sel("app", "db"),
		Ingress:         []v1.IngressRule{{From: []v1.Peer{policytest.Peer("app", "api")}}},
	})
}

// storeWith is a store observing svcs and nets, with policies desired.
func storeWith(tb testing.TB, svcs []*state.Service, nets []*state.Network, policies []*v1.Policy) *state.Store {
	tb.Helper()
	st := state.New()
	if err := st.Update(func(tx state.Tx) error {
		if err := state.ReplaceServices(tx, svcs); err != nil {
			return err
		}
		if err := state.ReplaceNetworks(tx, nets); err != nil {
			return err
		}
		return state.ReplacePolicies(tx, policies)
	}); err != nil {
		tb.Fatal(err)
	}
	return st
}

// planFor compiles and diffs policies against services and networks.
func planFor(t *testing.T, svcs []*state.Service, nets []*state.Network, policies ...*v1.Policy) *Plan {
	t.Helper()
	st := storeWith(t, svcs, nets, policies)
	var p *Plan
	var err error
	st.View(func(tx state.ReadTx) {
		var d *compile.Desired
		if d, err = compile.Compile(tx, nil); err == nil {
			p, err = Diff(tx, d)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
