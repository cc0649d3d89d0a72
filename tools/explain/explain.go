package explain

import (
	"fmt"
	"slices"
	"strings"

	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/state"
)

// Outside is the name that stands for clients outside the Swarm: explain
// outside SERVICE asks which of its ports they may reach.
const Outside = "outside"

// Answer is explain's answer for one pair.
type Answer struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Allowed is the verdict: the policies let From reach To (for two
	// services, both ways: overlay networks carry both; for Outside, To
	// keeps at least one published port).
	Allowed bool `json:"allowed"`
	// FromIsolatedBy and ToIsolatedBy are the policies that select each
	// service, empty when none does.
	FromIsolatedBy []string `json:"fromIsolatedBy,omitempty"`
	ToIsolatedBy   []string `json:"toIsolatedBy,omitempty"`
	// Reasons are the rules that let the two talk.
	Reasons []Reason `json:"reasons,omitempty"`
	// Shared are the networks both are on now, sorted.
	Shared []string `json:"sharedNetworks,omitempty"`
	// Managed are the managed networks the policies put both on, sorted.
	Managed []string `json:"managedNetworks,omitempty"`
	// Ports are, for Outside, the ports To keeps published, sorted.
	Ports []Port `json:"ports,omitempty"`
}

// Reason is one policy rule that lets the pair talk, with where it was
// written.
type Reason struct {
	compile.Rule
	File string `json:"file"`
	Line int    `json:"line"`
	// SelectedName and PeerName are the services' names.
	SelectedName string `json:"selectedName"`
	PeerName     string `json:"peerName"`
}

// String says it as explain prints it.
func (r Reason) String() string {
	where := fmt.Sprintf("policy %s (%s:%d) selects %s;", r.Policy, r.File, r.Line, r.SelectedName)
	if r.Egress {
		return fmt.Sprintf("%s egress[%d] lets it reach %s", where, r.Index, r.PeerName)
	}
	return fmt.Sprintf("%s ingress[%d] admits %s", where, r.Index, r.PeerName)
}

// Port is one published port and who may connect to it.
type Port struct {
	// Port is "port/protocol".
	Port string `json:"port"`
	Mode string `json:"mode"`
	// Admit is what the policies admit, when they restrict sources or log
	// (nil: any source).
	Admit *compile.Admission `json:"admit,omitempty"`
}

// Services answers whether service from may reach service to, by name,
// under desired (the compile of the policies over the services in tx).
// from may be Outside. An unknown service is an error.
func Services(tx state.ReadTx, desired *compile.Desired, from, to string) (*Answer, error) {
	a, b := state.GetServiceByName(tx, from), state.GetServiceByName(tx, to)
	switch {
	case from == Outside && b != nil:
		return outside(desired, b), nil
	case a == nil && from != Outside:
		return nil, fmt.Errorf("no service %s", from)
	case b == nil:
		return nil, fmt.Errorf("no service %s", to)
	}
	nets, err := plan.LoadNetworks(tx)
	if err != nil {
		return nil, fmt.Errorf("networks: %w", err)
	}
	ans := &Answer{
		From: from, To: to,
		Allowed:        desired.Allowed(a.ID, b.ID),
		FromIsolatedBy: isolatedBy(desired, a),
		ToIsolatedBy:   isolatedBy(desired, b),
		Shared:         Shared(nets, a, b),
		Managed:        managed(desired, a, b),
	}
	names := map[string]string{a.ID: a.Name, b.ID: b.Name}
	for _, r := range desired.Rules(a.ID, b.ID) {
		reason := Reason{Rule: r, SelectedName: names[r.Selected], PeerName: names[r.Peer]}
		if p := state.GetPolicy(tx, r.Policy); p != nil {
			reason.File, reason.Line = p.File, p.Line
		}
		ans.Reasons = append(ans.Reasons, reason)
	}
	return ans, nil
}

// outside answers for clients outside the Swarm: the ports s keeps.
func outside(desired *compile.Desired, s *state.Service) *Answer {
	ans := &Answer{From: Outside, To: s.Name, ToIsolatedBy: isolatedBy(desired, s)}
	ds := desired.Services[s.ID]
	if len(ans.ToIsolatedBy) == 0 {
		for _, p := range s.Ports {
			ans.Ports = append(ans.Ports, Port{Port: fmt.Sprintf("%d/%s", p.PublishedPort, p.Protocol), Mode: string(p.PublishMode)})
		}
	} else {
		for key, mode := range ds.Publish {
			ans.Ports = append(ans.Ports, Port{Port: key, Mode: string(mode), Admit: ds.Admit[key]})
		}
		slices.SortFunc(ans.Ports, func(x, y Port) int { return strings.Compare(x.Port, y.Port) })
	}
	ans.Allowed = len(ans.Ports) > 0
	return ans
}

func isolatedBy(desired *compile.Desired, s *state.Service) []string {
	if ds := desired.Services[s.ID]; ds != nil && ds.Isolated {
		return ds.Policies
	}
	return nil
}

// managed names the managed networks the compile puts both services on.
func managed(desired *compile.Desired, a, b *state.Service) []string {
	da, db := desired.Services[a.ID], desired.Services[b.ID]
	if da == nil || db == nil {
		return nil
	}
	var out []string
	for _, n := range da.Networks {
		if slices.Contains(db.Networks, n) {
			out = append(out, n)
		}
	}
	return out
}

// Shared names the networks both services are on now, sorted.
func Shared(nets *plan.Networks, a, b *state.Service) []string {
	on := map[string]bool{}
	for _, at := range a.Networks {
		if n := nets.Resolve(at.Target); n != nil {
			on[n.Name] = true
		}
	}
	var out []string
	for _, at := range b.Networks {
		if n := nets.Resolve(at.Target); n != nil && on[n.Name] {
			out = append(out, n.Name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
