package plan

import (
	"fmt"
	"slices"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

// TestLeaveFirstKeepsTheRecord is issue #24's lost restore. a, b and c
// shared u; p isolated a with c as its peer and now isolates b instead. a's
// restore onto u waits for b to leave u, and b's move waits for a to leave
// swarmsec-p: one of them leaves first. When a does, its partial update
// must keep its record and the label naming it, or the next pass finds
// nothing to restore and a stays on no network. Which one goes first
// depends on the service IDs: both orders are planned.
func TestLeaveFirstKeepsTheRecord(t *testing.T) {
	for _, ids := range [][2]string{{"id-1a", "id-2b"}, {"id-2a", "id-1b"}} {
		t.Run(fmt.Sprintf("a=%s b=%s", ids[0], ids[1]), func(t *testing.T) {
			aID, bID := ids[0], ids[1]
			nets := []*state.Network{
				state.NewNetwork(network.Summary{ID: "net-u", Name: "u", Driver: "overlay", Scope: "swarm"}),
				state.NewNetwork(network.Summary{ID: "net-p", Name: "swarmsec-p", Driver: "overlay", Scope: "swarm",
					Options: map[string]string{"encrypted": "true"},
					Labels:  map[string]string{v1.LabelManaged: "true", v1.LabelPurpose: v1.PurposePolicy, v1.LabelOwner: "p"}}),
			}
			a := appService(aID, "a", map[string]string{v1.LabelOriginal: compile.RecordName(aID)}, "net-p")
			svcs := []*state.Service{a, appService(bID, "b", nil, "net-u"), appService("id-c", "c", nil, "net-u", "net-p")}
			orig := &compile.Original{Service: aID, Networks: []compile.OriginalAttachment{{Name: "u", ID: "net-u", Aliases: []string{"a"}}}}
			rec := state.NewRecord(swarm.Config{ID: "cfg-a", Spec: swarm.ConfigSpec{
				Annotations: swarm.Annotations{Name: compile.RecordName(aID), Labels: compile.RecordLabels()}, Data: orig.Encode()}})
			p := policytest.NetPol("p", v1.NetworkPolicySpec{
				ServiceSelector: policytest.Sel("app", "b"),
				Ingress:         []v1.IngressRule{{From: []v1.Peer{policytest.Peer("app", "c")}}},
			})
			st := storeWith(t, svcs, nets, []*v1.Policy{p})
			if err := st.Update(func(tx state.Tx) error { return state.ReplaceRecords(tx, []*state.Record{rec}) }); err != nil {
				t.Fatal(err)
			}
			now := scheduledNow(t, st)
			i := slices.IndexFunc(now, func(x Action) bool { return x.ID == aID })
			if i < 0 {
				if aID < bID {
					t.Fatalf("a, whose ID is the lower, does not leave first: %+v", now)
				}
				return // b left first; a is restored whole next pass
			}
			ch := now[i].Service
			restored := slices.ContainsFunc(ch.Target.Networks, func(x Attachment) bool { return x.Network == "u" })
			if aID < bID && restored {
				t.Fatalf("a is restored onto u while b is still there: %+v", ch.Target)
			}
			if restored {
				return
			}
			if slices.ContainsFunc(now[i].StepList(), func(s Step) bool { return s.Kind == ActionRemoveRecord }) {
				t.Errorf("a's leave-first update removes its record before a is restored")
			}
			if ch.Target.Original != compile.RecordName(aID) {
				t.Errorf("a's leave-first update sets %s to %q, want %q (its record's name) until it is restored", v1.LabelOriginal, ch.Target.Original, compile.RecordName(aID))
			}
		})
	}
}

// appService is a service labelled app=name plus labels, on networks.
func appService(id, name string, labels map[string]string, networks ...string) *state.Service {
	s := swarm.Service{ID: id}
	s.Version.Index = 3
	s.Spec.Name = name
	s.Spec.Labels = map[string]string{"app": name}
	for k, v := range labels {
		s.Spec.Labels[k] = v
	}
	for _, n := range networks {
		s.Spec.TaskTemplate.Networks = append(s.Spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: n, Aliases: []string{name}})
	}
	return state.NewService(s)
}

// scheduledNow compiles the store's policies, diffs and returns the
// service updates Schedule lets go first.
func scheduledNow(t *testing.T, st *state.Store) []Action {
	t.Helper()
	var now []Action
	var err error
	st.View(func(tx state.ReadTx) {
		var d *compile.Desired
		var p *Plan
		if d, err = compile.Compile(tx, nil); err != nil {
			return
		}
		if p, err = Diff(tx, d); err != nil {
			return
		}
		var updates []Action
		for _, a := range p.Actions {
			if a.Kind == ActionUpdateService {
				updates = append(updates, a)
			}
		}
		now, _, err = Schedule(tx, d, updates)
	})
	if err != nil {
		t.Fatal(err)
	}
	return now
}
