package compile

import (
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/state"
)

// onNets is a service of stack shop with app=<app> and extra labels, on
// the networks of the given IDs.
func onNets(app string, labels map[string]string, ids ...string) *state.Service {
	s := swarm.Service{ID: "id-" + app}
	s.Spec.Name = "shop_" + app
	s.Spec.Labels = map[string]string{v1.LabelStackNamespace: "shop", "app": app}
	for k, v := range labels {
		s.Spec.Labels[k] = v
	}
	for _, id := range ids {
		s.Spec.TaskTemplate.Networks = append(s.Spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: id, Aliases: []string{app}})
	}
	return state.NewService(s)
}

var (
	plainNet = state.NewNetwork(network.Summary{ID: "net-shop", Name: "shop_default", Driver: "overlay", Scope: "swarm"})
	dbNet    = state.NewNetwork(network.Summary{
		ID: "net-db", Name: "swarmsec-db", Driver: "overlay", Scope: "swarm", Internal: true,
		Options: map[string]string{"encrypted": ""},
		Labels:  map[string]string{v1.LabelManaged: "true", v1.LabelPurpose: v1.PurposePolicy, v1.LabelOwner: "db"},
	})
)

// A record in the label is one an earlier swarmsec wrote only on a
// service it left on its networks alone; anyone who can update a service
// can write a label.
func TestLegacyLabelCountsOnlyOnSwarmsecsNetworksAlone(t *testing.T) {
	label := map[string]string{v1.LabelOriginal: `{"networks":[{"name":"shop_default"}]}`}
	resolve := func(target string) *state.Network {
		return map[string]*state.Network{plainNet.ID: plainNet, dbNet.ID: dbNet}[target]
	}
	for _, tc := range []struct {
		name    string
		s       *state.Service
		resolve func(string) *state.Network
		trusted bool
	}{
		{"on swarmsec's networks alone", onNets("db", label, dbNet.ID), resolve, true},
		{"on its own network too", onNets("db", label, dbNet.ID, plainNet.ID), resolve, false},
		{"on its own network", onNets("db", label, plainNet.ID), resolve, false},
		{"on no network", onNets("db", label), resolve, false},
		{"networks unknown", onNets("db", label, dbNet.ID), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, from, problem := Records{}.Of(tc.s, tc.resolve)
			if tc.trusted {
				if o == nil || from != FromLabel || problem != nil || o.Service != tc.s.ID {
					t.Errorf("got %+v from %q, problem %+v; want the label's record", o, from, problem)
				}
				return
			}
			if o != nil || problem == nil || problem.Reason != ReasonRecordUntrusted {
				t.Errorf("got %+v, problem %+v; want none, %s", o, problem, ReasonRecordUntrusted)
			}
		})
	}
}
