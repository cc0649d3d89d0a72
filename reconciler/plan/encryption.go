package plan

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/state"
)

// ReasonEncryptionUnavailable is the reason when a change would put
// services whose tasks run on several nodes on an encrypted network, and
// one of those nodes cannot carry encrypted overlay traffic; or when tasks
// moved onto such a node.
const ReasonEncryptionUnavailable = "EncryptionUnavailable"

// ErrEncryptionUnavailable is returned by a pass that can do nothing but
// wait for changes held because a node cannot carry encrypted traffic.
var ErrEncryptionUnavailable = errors.New("held: encryption unavailable on some nodes")

// EncryptionHeld returns the messages of the changes held.
func (p *Plan) EncryptionHeld() []string {
	var out []string
	for _, h := range p.EncryptionHolds {
		if h.Held {
			out = append(out, h.Message)
		}
	}
	return out
}

// AnyOtherNode is the key of the NodeEncryption that stands for every
// node without one of its own: while the node agents run, a node whose
// agent has not reported cannot be trusted to encrypt.
const AnyOtherNode = "*"

// NodeEncryption is what a node agent found of its node's encryption.
type NodeEncryption struct {
	Hostname string
	OK       bool
	// Why it cannot, and the fix.
	Why, Fix string
}

// EncryptionHold is a change held, or a network as it is, where tasks of
// an encrypted network's services span nodes of which some cannot carry
// encrypted overlay traffic: those tasks cannot reach each other.
type EncryptionHold struct {
	// Service is the service whose update is held ("" for a migration or
	// a network as it is).
	Service string `json:"service,omitempty"`
	Network string `json:"network"`
	// Nodes are the nodes, by hostname, that cannot.
	Nodes    []string `json:"nodes"`
	Policies []string `json:"policies,omitempty"`
	// Held is set for a change left unwritten; false for a network
	// already in use.
	Held    bool   `json:"held"`
	Message string `json:"message"`
}

// HoldUnencryptable takes out of the plan every service update that would
// add a service to an encrypted network, and every encryption migration,
// whose services' tasks would span nodes of which one cannot carry
// encrypted overlay traffic (by nodes, the agents' reports by node ID;
// nodes without a report do not hold anything). It records them, and the
// managed networks already in such a state, in EncryptionHolds. Leaving an
// update out never loosens a pass: the schedule orders only the updates
// that remain, each safe against the state as observed.
func HoldUnencryptable(tx State, p *Plan, nodes map[string]NodeEncryption) error {
	if !slices.ContainsFunc(slices.Collect(maps.Values(nodes)), func(n NodeEncryption) bool { return !n.OK }) {
		return nil
	}
	j, err := newEncryptionJudge(tx, nodes)
	if err != nil {
		return err
	}
	held := j.holdActions(p)
	j.recordInUse(p, held)
	return nil
}

// encryptionJudge decides, against the state as observed, which spans of
// tasks cross a node that cannot encrypt.
type encryptionJudge struct {
	nodes     map[string]NodeEncryption
	services  []*state.Service
	byName    map[string]*state.Service
	nets      *Networks
	hostnames map[string]string // node ID -> hostname
	// tasks are the observed tasks by service ID.
	tasks map[string][]*state.Task
}

func newEncryptionJudge(tx State, nodes map[string]NodeEncryption) (*encryptionJudge, error) {
	services, err := tx.Services()
	if err != nil {
		return nil, err
	}
	nets, err := LoadNetworks(tx)
	if err != nil {
		return nil, err
	}
	all, err := tx.Nodes()
	if err != nil {
		return nil, err
	}
	tasks, err := tx.Tasks()
	if err != nil {
		return nil, err
	}
	j := &encryptionJudge{nodes: nodes, services: services, nets: nets,
		byName:    make(map[string]*state.Service, len(services)),
		hostnames: make(map[string]string, len(all)), tasks: map[string][]*state.Task{}}
	for _, s := range services {
		j.byName[s.Name] = s
	}
	// Hostnames only name nodes in messages (a node the store does not
	// hold is named by its ID).
	for _, n := range all {
		j.hostnames[n.ID] = n.Hostname
	}
	for _, t := range tasks {
		j.tasks[t.ServiceID] = append(j.tasks[t.ServiceID], t)
	}
	return j, nil
}

// nodesOf returns the IDs of the nodes the services' tasks run on.
func (j *encryptionJudge) nodesOf(svcs ...*state.Service) map[string]bool {
	out := map[string]bool{}
	for _, s := range svcs {
		for _, t := range j.tasks[s.ID] {
			if t.NodeID != "" {
				out[t.NodeID] = true
			}
		}
	}
	return out
}

// cannot lists the nodes of a span that cannot encrypt, and why: one line
// per reason, naming its nodes. A span of one node needs no encryption.
func (j *encryptionJudge) cannot(span map[string]bool) (hosts, why []string) {
	if len(span) < 2 {
		return nil, nil
	}
	byReason := map[[2]string][]string{}
	for id := range span {
		n, ok := j.nodes[id]
		if !ok {
			n, ok = j.nodes[AnyOtherNode]
			n.Hostname = j.hostnames[id]
		}
		if ok && !n.OK {
			h := cmp.Or(n.Hostname, id)
			hosts = append(hosts, h)
			byReason[[2]string{n.Why, n.Fix}] = append(byReason[[2]string{n.Why, n.Fix}], h)
		}
	}
	for _, r := range slices.SortedFunc(maps.Keys(byReason), func(a, b [2]string) int { return cmp.Compare(a[0], b[0]) }) {
		hs := byReason[r]
		slices.Sort(hs)
		why = append(why, fmt.Sprintf("%s: %s; fix: %s", strings.Join(hs, ", "), r[0], r[1]))
	}
	slices.Sort(hosts)
	return hosts, why
}

// attached returns the names of the networks a service is on now.
func (j *encryptionJudge) attached(s *state.Service) map[string]bool {
	out := map[string]bool{}
	for _, a := range s.Networks {
		if n := j.nets.Resolve(a.Target); n != nil {
			out[n.Name] = true
		}
	}
	return out
}

// holdActions takes the held actions out of the plan, records them, and
// returns the networks they concern.
func (j *encryptionJudge) holdActions(p *Plan) map[string]bool {
	keep := p.Actions[:0:0]
	held := map[string]bool{}
	for i := range p.Actions {
		a := &p.Actions[i]
		var hold *EncryptionHold
		switch {
		case a.Audit:
		case a.Kind == ActionUpdateService:
			hold = j.updateHold(p, a)
		case a.Kind == ActionMigrateNetwork:
			hold = j.migrationHold(a)
		}
		if hold != nil {
			p.EncryptionHolds = append(p.EncryptionHolds, *hold)
			held[hold.Network] = true
			continue
		}
		keep = append(keep, *a)
	}
	p.Actions = keep
	return held
}

// updateHold holds a service update that would put the service on an
// encrypted network with members on nodes that cannot encrypt: the first
// such network decides.
func (j *encryptionJudge) updateHold(p *Plan, a *Action) *EncryptionHold {
	ds, s := p.Desired.Services[a.ID], j.byName[a.Name]
	if ds == nil || s == nil {
		return nil
	}
	now := j.attached(s)
	for _, name := range ds.Networks {
		dn := p.Desired.Networks[name]
		if now[name] || dn == nil {
			continue
		}
		members := []*state.Service{s}
		for _, m := range dn.Members {
			if ms := j.byName[m]; ms != nil && ms != s {
				members = append(members, ms)
			}
		}
		if hosts, why := j.cannot(j.nodesOf(members...)); len(hosts) > 0 {
			return &EncryptionHold{Service: s.Name, Network: name, Nodes: hosts, Policies: ds.Policies, Held: true,
				Message: fmt.Sprintf("%s would join encrypted network %s, whose services run tasks on %s, which cannot (or are not known to) carry encrypted overlay traffic: held, so that no task is cut off (%s)",
					s.Name, name, strings.Join(hosts, ", "), strings.Join(why, "; "))}
		}
	}
	return nil
}

// migrationHold holds the encryption of a network whose services run
// tasks on nodes that cannot encrypt.
func (j *encryptionJudge) migrationHold(a *Action) *EncryptionHold {
	var members []*state.Service
	for _, s := range j.services {
		if j.attached(s)[a.Name] {
			members = append(members, s)
		}
	}
	hosts, why := j.cannot(j.nodesOf(members...))
	if len(hosts) == 0 {
		return nil
	}
	return &EncryptionHold{Network: a.Name, Nodes: hosts, Policies: a.Policies, Held: true,
		Message: fmt.Sprintf("network %s would be encrypted, and its services run tasks on %s, which cannot (or are not known to) carry encrypted overlay traffic: held, so that no task is cut off (%s)",
			a.Name, strings.Join(hosts, ", "), strings.Join(why, "; "))}
}

// recordInUse records the encrypted networks already in use whose tasks
// moved onto nodes that cannot encrypt, but for those a held action
// already names.
func (j *encryptionJudge) recordInUse(p *Plan, held map[string]bool) {
	members := map[string][]*state.Service{}
	for _, s := range j.services {
		for name := range j.attached(s) {
			members[name] = append(members[name], s)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(members)) {
		n := j.nets.ByName[name]
		if held[name] || n == nil || !n.Encrypted() || n.Ingress || n.Predefined() {
			continue
		}
		hosts, why := j.cannot(j.nodesOf(members[name]...))
		if len(hosts) == 0 {
			continue
		}
		p.EncryptionHolds = append(p.EncryptionHolds, EncryptionHold{Network: name, Nodes: hosts,
			Policies: inUsePolicies(p, n, members[name]),
			Message: fmt.Sprintf("encrypted network %s has tasks on %s, which cannot carry encrypted overlay traffic: those tasks cannot reach the others (%s)",
				name, strings.Join(hosts, ", "), strings.Join(why, "; "))})
	}
}

// inUsePolicies names the policies behind a network in use: its owner when
// swarmsec made it for one, else the policies of its members.
func inUsePolicies(p *Plan, n *state.Network, members []*state.Service) []string {
	var policies []string
	if compile.Trusted(n) && n.Owner() != "" {
		policies = []string{n.Owner()}
	}
	for _, s := range members {
		if ds := p.Desired.Services[s.ID]; ds != nil && (n.Labels[v1.LabelPurpose] != v1.PurposePolicy || len(policies) == 0) {
			policies = append(policies, ds.Policies...)
		}
	}
	slices.Sort(policies)
	return slices.Compact(policies)
}
