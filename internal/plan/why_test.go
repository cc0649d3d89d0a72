package plan

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/compile"
	"github.com/swarmsec/swarmsec/internal/testutil/policytest"
	"github.com/swarmsec/swarmsec/state"
)

// TestWhyRendersAnUpdatesReasons checks the reasons Diff leaves to Why: a
// service on its stack network that a policy isolates.
func TestWhyRendersAnUpdatesReasons(t *testing.T) {
	st := state.New()
	var svcs []*state.Service
	for _, app := range []string{"api", "db"} {
		s := swarm.Service{ID: "id-" + app}
		s.Version.Index = 3
		s.Spec.Name = "shop_" + app
		s.Spec.Labels = map[string]string{v1.LabelStackNamespace: "shop", "app": app}
		s.Spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: "net-shop", Aliases: []string{app}}}
		svcs = append(svcs, state.NewService(s))
	}
	nets := []*state.Network{state.NewNetwork(network.Summary{ID: "net-shop", Name: "shop_default", Driver: "overlay", Scope: "swarm"})}
	db := policytest.NetPol("db", v1.NetworkPolicySpec{
		ServiceSelector: policytest.Sel("app", "db"),
		Ingress:         []v1.IngressRule{{From: []v1.Peer{policytest.Peer("app", "api")}}},
	})
	if err := st.Update(func(tx state.Tx) error {
		if err := state.ReplaceServices(tx, svcs); err != nil {
			return err
		}
		if err := state.ReplaceNetworks(tx, nets); err != nil {
			return err
		}
		return state.ReplacePolicies(tx, []*state.Policy{db})
	}); err != nil {
		t.Fatal(err)
	}
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

// TestDetachReasonsPastSixteen checks that a change with more detaches
// than serviceWhy packs says "detach" for the rest instead of guessing.
func TestDetachReasonsPastSixteen(t *testing.T) {
	ch := &ServiceChange{whyLabel: labelKept}
	for i := range detachKinds + 2 {
		ch.Detach = append(ch.Detach, string(rune('a'+i)))
		ch.setDetachWhy(i, detachUnneeded)
	}
	got := Action{Kind: ActionUpdateService, Service: ch}.Why()
	if len(got) != detachKinds+2 || got[detachKinds-1] != "detach p: no policy connects it there" || got[detachKinds] != "detach q" {
		t.Errorf("Why() = %q", got)
	}
}
