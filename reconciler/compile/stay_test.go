package compile

import (
	"slices"
	"strings"
	"testing"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/state"
)

func compileState(t *testing.T, svcs []*state.Service, recs []*state.Record, policies ...*v1.Policy) *Desired {
	t.Helper()
	st := state.New()
	if err := st.Update(func(tx state.Tx) error {
		if err := state.ReplaceServices(tx, svcs); err != nil {
			return err
		}
		if err := state.ReplaceNetworks(tx, []*state.Network{plainNet, dbNet}); err != nil {
			return err
		}
		if err := state.ReplaceRecords(tx, recs); err != nil {
			return err
		}
		return state.ReplacePolicies(tx, policies)
	}); err != nil {
		t.Fatal(err)
	}
	var d *Desired
	var err error
	st.View(func(tx state.ReadTx) { d, err = Compile(tx, nil) })
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// dbAdmits isolates db (internal), reachable from the apps given.
func dbAdmits(apps ...string) *v1.Policy {
	var from []v1.Peer
	for _, a := range apps {
		from = append(from, peer("app", a))
	}
	return netpol("db", v1.NetworkPolicySpec{
		ServiceSelector: sel("app", "db"),
		PolicyTypes:     []v1.PolicyType{v1.PolicyTypeIngress, v1.PolicyTypeEgress},
		Ingress:         []v1.IngressRule{{From: from}},
	})
}

// A peer that opts out is connected to nothing: the managed network it
// stays on is used for nobody else, not even under its own name, and the
// policy that names it says so.
func TestOptedOutPeerIsConnectedToNothing(t *testing.T) {
	d := compileState(t, []*state.Service{
		onNets("db", nil, dbNet.ID),
		onNets("api", map[string]string{v1.LabelIgnore: "true"}, plainNet.ID, dbNet.ID),
		onNets("worker", nil, plainNet.ID),
	}, nil, dbAdmits("api", "worker"))
	if _, used := d.Networks["swarmsec-db"]; used {
		t.Errorf("swarmsec-db, which an opted-out service stays on, is used: %v", members(d))
	}
	var got []string
	for name, n := range d.Networks {
		if strings.HasPrefix(name, "swarmsec-db-") {
			got = n.Members
		}
	}
	if !slices.Equal(got, []string{"shop_db", "shop_worker"}) {
		t.Errorf("networks %v, want db and worker on a network named after swarmsec-db", members(d))
	}
	if want := []string{"shop_api (" + v1.LabelIgnore + "=true)"}; !slices.Equal(d.Stay[dbNet.ID], want) {
		t.Errorf("stay %v, want %v", d.Stay, want)
	}
	for _, want := range []string{"policy db names shop_api as a peer, but it opts out", "network swarmsec-db holds shop_api"} {
		if !slices.ContainsFunc(d.Notes, func(n string) bool { return strings.HasPrefix(n, want) }) {
			t.Errorf("notes %q lack %q", d.Notes, want)
		}
	}
}

// A service kept as it is (its record is unusable) stays on its managed
// network; the network keeps serving members that may share it with
// that service, and no others.
func TestKeptServiceSharesOnlyWhereAllowed(t *testing.T) {
	svcs := []*state.Service{
		onNets("db", nil, dbNet.ID),
		onNets("api", map[string]string{v1.LabelOriginal: RecordName("id-api")}, dbNet.ID),
		onNets("worker", nil, plainNet.ID),
	}
	bad := []*state.Record{{ID: "cfg", Name: RecordName("id-api"), Labels: RecordLabels(), Data: []byte("{")}}
	d := compileState(t, svcs, bad, dbAdmits("api", "worker"))
	if got := members(d)["swarmsec-db"]; !slices.Equal(got, []string{"shop_api", "shop_db", "shop_worker"}) {
		t.Errorf("networks %v, want swarmsec-db kept for db, api and worker", members(d))
	}
	d = compileState(t, svcs, bad, dbAdmits("worker"))
	if _, used := d.Networks["swarmsec-db"]; used {
		t.Errorf("swarmsec-db is used although db may not talk to api, which stays there: %v", members(d))
	}
	if len(d.Stay[dbNet.ID]) != 1 || !strings.HasPrefix(d.Stay[dbNet.ID][0], "shop_api (") {
		t.Errorf("stay %v", d.Stay)
	}
}
