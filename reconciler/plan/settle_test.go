package plan

import (
	"encoding/json"
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

// service is an observed service named name (ID "id-<name>") with labels,
// on the networks of atts.
func service(name string, labels map[string]string, atts ...swarm.NetworkAttachmentConfig) *state.Service {
	s := swarm.Service{ID: "id-" + name}
	s.Version.Index = 3
	s.Spec.Name = name
	s.Spec.Labels = labels
	s.Spec.TaskTemplate.Networks = atts
	return state.NewService(s)
}

func on(network string, aliases ...string) swarm.NetworkAttachmentConfig {
	return swarm.NetworkAttachmentConfig{Target: network, Aliases: aliases}
}

// stackNet is a stack's plain overlay network, ID "net-<name>".
func stackNet(name string) *state.Network {
	return state.NewNetwork(network.Summary{ID: "net-" + name, Name: name, Driver: "overlay", Scope: "swarm"})
}

// managedNet is a policy network as swarmsec makes it, ID "net-<name>".
func managedNet(name, owner string, internal bool) *state.Network {
	return state.NewNetwork(network.Summary{
		ID: "net-" + name, Name: name, Driver: "overlay", Scope: "swarm", Internal: internal,
		Options: map[string]string{"encrypted": ""},
		Labels:  map[string]string{v1.LabelManaged: "true", v1.LabelPurpose: v1.PurposePolicy, v1.LabelOwner: owner},
	})
}

// record is the record config of a service, as swarmsec writes it.
func record(s *state.Service, o compile.Original) *state.Record {
	o.Service = s.ID
	return &state.Record{ID: "cfg-" + s.ID, Name: compile.RecordName(s.ID), Labels: compile.RecordLabels(), Data: o.Encode()}
}

// planWith compiles and diffs policies against services, networks and
// records.
func planWith(t *testing.T, svcs []*state.Service, nets []*state.Network, recs []*state.Record, policies ...*v1.Policy) *Plan {
	t.Helper()
	st := storeWith(t, svcs, nets, policies)
	if err := st.Update(func(tx state.Tx) error { return state.ReplaceRecords(tx, recs) }); err != nil {
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
	return p
}

func update(p *Plan, name string) *Action {
	for i, a := range p.Actions {
		if a.Kind == ActionUpdateService && a.Name == name {
			return &p.Actions[i]
		}
	}
	return nil
}

func targetAliases(a *Action, network string) []string {
	for _, at := range a.Service.Target.Networks {
		if at.Network == network {
			return at.Aliases
		}
	}
	return nil
}

func stackLabels(stack, app string, kv ...string) map[string]string {
	l := map[string]string{v1.LabelStackNamespace: stack, "app": app}
	for i := 0; i+1 < len(kv); i += 2 {
		l[kv[i]] = kv[i+1]
	}
	return l
}

// An alias on a managed network is what the service answers to on its
// own networks, less what another member answers to as well: one dropped
// while s2_api was there comes back once it has left, and one added by
// hand goes.
func TestAliasesFollowTheMembersNotTheAttachment(t *testing.T) {
	webNet := managedNet("swarmsec-web", "web", false)
	web := service("s1_web", stackLabels("s1", "web", v1.LabelOriginal, compile.RecordName("id-s1_web")), on(webNet.ID, "web", "db"))
	svcs := []*state.Service{
		web,
		service("s1_api", stackLabels("s1", "api"), on("net-s1_default", "api"), on(webNet.ID)),
		service("s2_api", stackLabels("s2", "api"), on("net-s2_default", "api")),
	}
	nets := []*state.Network{stackNet("s1_default"), stackNet("s2_default"), webNet}
	recs := []*state.Record{record(web, compile.Original{Networks: []compile.OriginalAttachment{{Name: "s1_default", ID: "net-s1_default", Aliases: []string{"web"}}}})}
	narrow := policytest.NetPol("web", v1.NetworkPolicySpec{
		ServiceSelector: policytest.Sel(v1.LabelStackNamespace, "s1", "app", "web"),
		Ingress:         []v1.IngressRule{{From: []v1.Peer{policytest.Peer(v1.LabelStackNamespace, "s1", "app", "api")}}},
	})
	p := planWith(t, svcs, nets, recs, narrow)
	for svc, want := range map[string][]string{"s1_api": {"api"}, "s1_web": {"web"}} {
		a := update(p, svc)
		if a == nil {
			t.Errorf("no update of %s: %+v", svc, p.Actions)
			continue
		}
		if got := targetAliases(a, "swarmsec-web"); !slices.Equal(got, want) {
			t.Errorf("%s on swarmsec-web: aliases %v, want %v", svc, got, want)
		}
		if !slices.Contains(a.Why(), "reattach swarmsec-web with its aliases") {
			t.Errorf("%s: reasons %q", svc, a.Why())
		}
	}
	if len(p.Actions) != 2 {
		t.Errorf("actions %+v, want the two updates", p.Actions)
	}
}

// legacy is a record in the label form an earlier swarmsec wrote.
const legacy = `{"networks":[{"name":"swarmsec-db"}],"ports":[{"Protocol":"tcp","TargetPort":2222,"PublishedPort":2222,"PublishMode":"host"}]}`

// A record in the label counts only on a service on swarmsec's networks
// alone: elsewhere nothing says swarmsec wrote it. A service no policy
// selects is then left as it is; one a policy selects is recorded from
// what it has.
func TestLegacyLabelCountsOnlyWhereSwarmsecLeftTheService(t *testing.T) {
	dbNet := managedNet("swarmsec-db", "db", true)
	nets := []*state.Network{stackNet("shop_default"), dbNet}
	cache := service("shop_cache", stackLabels("shop", "cache", v1.LabelOriginal, legacy), on("net-shop_default", "cache"))
	worker := service("shop_worker", stackLabels("shop", "worker", v1.LabelOriginal, legacy), on("net-shop_default", "worker"))
	p := planWith(t, []*state.Service{cache, worker}, nets, nil, policytest.NetPol("worker", v1.NetworkPolicySpec{
		ServiceSelector: policytest.Sel("app", "worker"), Ingress: []v1.IngressRule{},
	}))
	if a := update(p, "shop_cache"); a != nil {
		t.Errorf("shop_cache, selected by no policy, is updated: %q", a.Why())
	}
	a := update(p, "shop_worker")
	if a == nil {
		t.Fatalf("no update of shop_worker: %+v", p.Actions)
	}
	var got compile.Original
	if err := json.Unmarshal(a.Service.CreateRecord, &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Networks) != 1 || got.Networks[0].Name != "shop_default" || len(got.Ports) != 0 {
		t.Errorf("shop_worker recorded %+v, want what it has", got)
	}
	if a.Service.Target.Original != compile.RecordName(worker.ID) || len(a.Service.Target.Ports) != 0 {
		t.Errorf("shop_worker target %+v", a.Service.Target)
	}
	if len(p.Problems) != 0 {
		t.Errorf("problems %+v", p.Problems)
	}
	if n := len(slices.DeleteFunc(slices.Clone(p.Notes), func(n string) bool { return !strings.Contains(n, "cannot tell it wrote the label") })); n != 2 {
		t.Errorf("%d notes on the labels, want 2: %q", n, p.Notes)
	}

	// As an earlier swarmsec left what it isolated: the label is its record.
	old := service("shop_db", stackLabels("shop", "db", v1.LabelOriginal, `{"networks":[{"name":"shop_default","aliases":["db"]}]}`), on(dbNet.ID, "db"))
	p = planWith(t, []*state.Service{old}, nets, nil)
	a = update(p, "shop_db")
	if a == nil || len(a.Service.Target.Networks) != 1 || a.Service.Target.Networks[0].Network != "shop_default" || a.Service.Target.Original != "" {
		t.Errorf("legacy isolation does not end with the label's networks: %+v", a)
	}
}

// A managed network no policy needs is not removed while a service stays
// on it: one that opts out, or one whose record cannot say what to
// restore. Its removal would fail "in use" on every pass; the plan says
// why instead, and has nothing to do.
func TestNetworkSomeoneStaysOnIsNotRemoved(t *testing.T) {
	dbNet := managedNet("swarmsec-db", "db", true)
	nets := []*state.Network{stackNet("shop_default"), dbNet}
	t.Run("opted out", func(t *testing.T) {
		api := service("shop_api", stackLabels("shop", "api", v1.LabelIgnore, "true"), on("net-shop_default", "api"), on(dbNet.ID, "api"))
		p := planWith(t, []*state.Service{api}, nets, nil)
		if len(p.Actions) != 0 {
			t.Errorf("actions %+v", p.Actions)
		}
		if !slices.ContainsFunc(p.Notes, func(n string) bool {
			return strings.Contains(n, "swarmsec-db is no longer needed") && strings.Contains(n, "shop_api ("+v1.LabelIgnore+"=true)")
		}) {
			t.Errorf("notes %q", p.Notes)
		}
	})
	t.Run("record invalid", func(t *testing.T) {
		db := service("shop_db", stackLabels("shop", "db", v1.LabelOriginal, compile.RecordName("id-shop_db")), on(dbNet.ID, "db"))
		bad := &state.Record{ID: "cfg", Name: compile.RecordName(db.ID), Labels: compile.RecordLabels(), Data: []byte("not json")}
		p := planWith(t, []*state.Service{db}, nets, []*state.Record{bad})
		if len(p.Actions) != 0 {
			t.Errorf("actions %+v", p.Actions)
		}
		if len(p.Problems) != 1 || p.Problems[0].Reason != compile.ReasonRecordInvalid {
			t.Errorf("problems %+v", p.Problems)
		}
		if !slices.ContainsFunc(p.Notes, func(n string) bool {
			return strings.Contains(n, "swarmsec-db is no longer needed") && strings.Contains(n, "shop_db (")
		}) {
			t.Errorf("notes %q", p.Notes)
		}
	})
}

// A restore split so that the service first leaves what it blocks keeps
// its record and label in that first part: the rest of the restore needs
// them to know what to give back.
func TestSplitRestoreKeepsItsRecord(t *testing.T) {
	p0 := managedNet("swarmsec-p0", "p0", false)
	b := service("b", map[string]string{"app": "b", v1.LabelOriginal: compile.RecordName("id-b")}, on(p0.ID))
	svcs := []*state.Service{
		service("a", map[string]string{"app": "a"}, on(p0.ID)),
		b,
		service("f", map[string]string{"app": "f"}, on("net-v", "f")),
	}
	nets := []*state.Network{stackNet("v"), p0}
	recs := []*state.Record{record(b, compile.Original{Networks: []compile.OriginalAttachment{{Name: "v", ID: "net-v", Aliases: []string{"b"}}}})}
	// p0 now isolates f: f's move onto swarmsec-p0 waits for b to leave
	// it, and b's restore onto v waits for f to leave v.
	policy := policytest.NetPol("p0", v1.NetworkPolicySpec{
		ServiceSelector: policytest.Sel("app", "f"),
		Ingress:         []v1.IngressRule{{From: []v1.Peer{policytest.Peer("app", "a")}}},
	})
	st := storeWith(t, svcs, nets, []*v1.Policy{policy})
	if err := st.Update(func(tx state.Tx) error { return state.ReplaceRecords(tx, recs) }); err != nil {
		t.Fatal(err)
	}
	now := scheduledNow(t, st)
	for _, a := range now {
		if a.Name != "b" {
			continue
		}
		restored := slices.ContainsFunc(a.Service.Target.Networks, func(at Attachment) bool { return at.Network == "v" })
		if !restored && a.Service.Target.Original != compile.RecordName("id-b") {
			t.Errorf("b's first part removes the label (%q) naming its record before it is back on v", a.Service.Target.Original)
		}
	}
}

// A record goes only once its service is seen restored and done rolling:
// with the update that restores it, or while that update rolls, is paused
// or rolls back, the removal waits (Swarm may yet put back the isolated
// spec); once the update completed, or a rollback did (Swarm then clears
// the spec it rolled back from), it goes.
func TestRecordRemovalWaitsForTheRollingUpdate(t *testing.T) {
	nets := []*state.Network{stackNet("v"), managedNet("swarmsec-p0", "p0", false)}
	orig := compile.Original{Networks: []compile.OriginalAttachment{{Name: "v", ID: "net-v", Aliases: []string{"b"}}}}
	isolated := service("b", map[string]string{"app": "b", v1.LabelOriginal: compile.RecordName("id-b")}, on("net-swarmsec-p0"))
	restored := service("b", map[string]string{"app": "b"}, on("net-v", "b"))
	for _, tc := range []struct {
		name  string
		s     *state.Service
		state swarm.UpdateState
		waits string // "" when the record goes now
	}{
		{"restore planned", isolated, "", "its update is in this plan"},
		{"restore rolled back", isolated, swarm.UpdateStateRollbackCompleted, "its update is in this plan"},
		{"restored, updating", restored, swarm.UpdateStateUpdating, "its rolling update is updating"},
		{"restored, paused", restored, swarm.UpdateStatePaused, "its rolling update is paused"},
		{"restored, rolling back", restored, swarm.UpdateStateRollbackStarted, "its rolling update is rollback_started"},
		{"restored, rollback paused", restored, swarm.UpdateStateRollbackPaused, "its rolling update is rollback_paused"},
		{"restored, completed", restored, swarm.UpdateStateCompleted, ""},
		{"restored, rolled back onto the restore", restored, swarm.UpdateStateRollbackCompleted, ""},
		{"restored, no update status", restored, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := *tc.s
			s.UpdateState = tc.state
			p := planWith(t, []*state.Service{&s}, nets, []*state.Record{record(&s, orig)})
			i := slices.IndexFunc(p.Actions, func(a Action) bool { return a.Kind == ActionRemoveRecord })
			if i < 0 {
				t.Fatalf("no record removal: %+v", p.Actions)
			}
			a := p.Actions[i]
			if !strings.Contains(a.Waits, tc.waits) || (tc.waits == "") != (a.Waits == "") {
				t.Errorf("waits %q, want %q", a.Waits, tc.waits)
			}
			if a.Waits != "" && !strings.Contains(strings.Join(a.Why(), " "), a.Waits) {
				t.Errorf("why %q does not say why it waits", a.Why())
			}
			for _, a := range p.Actions {
				if slices.ContainsFunc(a.StepList(), func(st Step) bool { return st.Kind == ActionRemoveRecord }) && a.Kind != ActionRemoveRecord {
					t.Errorf("%s %s removes the record with it", a.Kind, a.Name)
				}
			}
		})
	}
}
