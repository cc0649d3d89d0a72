package reconciler

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/state"
)

// ActionMigrateNetwork replaces an unencrypted overlay network by an
// encrypted one of the same name, moving its services over.
const ActionMigrateNetwork ActionKind = "migrate-network"

// Labels of an encryption migration. Its progress lives in Swarm, not in
// memory: the temporary network says which network is being migrated and
// how to recreate it, and the services' attachments say how far they got.
const (
	// LabelMigrating, on a temporary network, names the network it stands
	// in for.
	LabelMigrating = "swarmsec.io/migrating"
	// LabelMigratedFrom, on the temporary network and on the encrypted
	// replacement, is the ID of the unencrypted network replaced.
	LabelMigratedFrom = "swarmsec.io/migrated-from"
	// LabelMigration, on a temporary network, records the settings of the
	// network replaced (JSON), needed once that network is gone.
	LabelMigration = "swarmsec.io/migration"
	// PurposeMigration is the purpose of a temporary migration network.
	PurposeMigration = "migration"
)

// Steps of a migration. Services always share old, temp or new: every
// service joins the next network before any leaves the previous one.
const (
	stepCreateTemp   = 1
	stepAttachTemp   = 2
	stepDetachOld    = 3
	stepRemoveOld    = 4
	stepCreateNew    = 5
	stepAttachNew    = 6
	stepDetachTemp   = 7
	stepRemoveTemp   = 8
	migrationSteps   = 8
	tempNetworkLabel = "-swarmsec-tmp"
)

// stepKind is what a step writes.
type stepKind int

const (
	kindDone stepKind = iota
	kindBlocked
	kindCreateNetwork
	kindAttach
	kindDetach
	kindRemoveNetwork
)

// networkRecord is what the replacement must copy from the network it
// replaces: everything but the encryption, which it adds.
type networkRecord struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Labels     map[string]string `json:"labels,omitempty"`
	Options    map[string]string `json:"options,omitempty"`
	Internal   bool              `json:"internal,omitempty"`
	Attachable bool              `json:"attachable,omitempty"`
	EnableIPv6 bool              `json:"ipv6,omitempty"`
	IPAM       *network.IPAM     `json:"ipam,omitempty"`
}

// newNetworkRecord records an inspected network. The VXLAN ID is Swarm's
// allocation, not a setting: a copy would clash.
func newNetworkRecord(in network.Inspect) *networkRecord {
	opts := map[string]string{}
	for k, v := range in.Options {
		if k != "com.docker.network.driver.overlay.vxlanid_list" {
			opts[k] = v
		}
	}
	ipam := in.IPAM
	return &networkRecord{
		ID: in.ID, Name: in.Name, Labels: in.Labels, Options: opts, Internal: in.Internal,
		Attachable: in.Attachable, EnableIPv6: in.EnableIPv6, IPAM: &ipam,
	}
}

func decodeNetworkRecord(n *state.Network) *networkRecord {
	var rec networkRecord
	if err := json.Unmarshal([]byte(n.Labels[LabelMigration]), &rec); err != nil || rec.Name == "" {
		return nil
	}
	return &rec
}

// migration is one network's migration as Swarm shows it.
type migration struct {
	name string
	// policies are the encryption policies selecting the network.
	policies []string
	// enforced is set when an enforce-mode policy selects it.
	enforced bool
	// old is the unencrypted network (nil once removed), temp the
	// temporary one (nil before step 1 and after step 8), new the
	// encrypted replacement (nil before step 5).
	old, temp, new *state.Network
	rec            *networkRecord
	// users are the services on each network, by network ID, by name.
	users map[string][]*state.Service
}

// step is the next write of a migration.
type step struct {
	kind stepKind
	num  int
	// rollback is set when the migration is being undone.
	rollback bool
	// network is the network the step creates, attaches, detaches or
	// removes; from, for an attach, is the network whose aliases it copies.
	network *state.Network
	from    *state.Network
	service *state.Service
	// done of total services have been through this step.
	done, total int
	why         string
}

func (m *migration) started() bool { return m.temp != nil }

// tempName is the temporary network's name: readable, within Swarm's
// limit. The label, not the name, identifies it.
func tempName(name string) string {
	return boundedName(name, tempNetworkLabel, false, []string{name, tempNetworkLabel})
}

// next decides the next write from what Swarm shows, so a migration killed
// at any point resumes where it stopped.
func (m *migration) next() step {
	switch {
	case m.temp == nil && (m.old == nil || !m.enforced):
		return step{kind: kindDone}
	case m.temp == nil:
		if s := ignoredUser(m.users[m.old.ID]); s != nil {
			return blocked(fmt.Sprintf("service %s opts out (%s=true) and uses it", s.Name, v1.LabelIgnore))
		}
		return step{kind: kindCreateNetwork, num: stepCreateTemp}
	case m.old != nil && !m.enforced:
		// Undo before the old network is gone: back to where it started.
		if st, ok := m.move(m.temp, m.old, 1); ok {
			st.rollback = true
			return st
		}
		return step{kind: kindRemoveNetwork, num: 3, rollback: true, network: m.temp}
	case m.old != nil:
		if st, ok := m.move(m.old, m.temp, stepAttachTemp); ok {
			return st
		}
		return step{kind: kindRemoveNetwork, num: stepRemoveOld, network: m.old}
	case m.new == nil && m.rec == nil:
		return blocked(fmt.Sprintf("temporary network %s has no readable %s label to recreate %s from; create %s (encrypted) by hand and swarmsec finishes the move",
			m.temp.Name, LabelMigration, m.name, m.name))
	case m.new == nil:
		return step{kind: kindCreateNetwork, num: stepCreateNew}
	case m.new.Labels[LabelMigratedFrom] != m.temp.Labels[LabelMigratedFrom]:
		return blocked(fmt.Sprintf("network %s was created again by someone else (%s) while its services were on %s; remove it and swarmsec recreates it encrypted",
			m.name, m.new.ID, m.temp.Name))
	default:
		if st, ok := m.move(m.temp, m.new, stepAttachNew); ok {
			return st
		}
		return step{kind: kindRemoveNetwork, num: stepRemoveTemp, network: m.temp}
	}
}

// move is the next step of moving every service of from onto to: all join
// to first, then all leave from. attachStep numbers the attach step; the
// detach step is the next.
func (m *migration) move(from, to *state.Network, attachStep int) (step, bool) {
	users := m.users[from.ID]
	if s := ignoredUser(users); s != nil {
		return blocked(fmt.Sprintf("service %s opts out (%s=true) and is on %s", s.Name, v1.LabelIgnore, from.Name)), true
	}
	onTo := map[string]bool{}
	for _, s := range m.users[to.ID] {
		onTo[s.ID] = true
	}
	var missing []*state.Service
	for _, s := range users {
		if !onTo[s.ID] {
			missing = append(missing, s)
		}
	}
	if len(missing) > 0 {
		return step{kind: kindAttach, num: attachStep, network: to, from: from, service: missing[0],
			done: len(users) - len(missing), total: len(users)}, true
	}
	if len(users) > 0 {
		total := len(m.users[to.ID])
		return step{kind: kindDetach, num: attachStep + 1, network: from, service: users[0],
			done: total - len(users), total: total}, true
	}
	return step{}, false
}

func blocked(why string) step { return step{kind: kindBlocked, why: why} }

func ignoredUser(users []*state.Service) *state.Service {
	for _, s := range users {
		if s.Ignored() {
			return s
		}
	}
	return nil
}

// describe says what the step does, for logs and plans.
func (m *migration) describe(st step) string {
	prefix := fmt.Sprintf("step %d/%d", st.num, migrationSteps)
	if st.rollback {
		prefix = fmt.Sprintf("rollback step %d/3", st.num)
	}
	switch st.kind {
	case kindCreateNetwork:
		if st.num == stepCreateTemp {
			return fmt.Sprintf("%s create temporary encrypted network %s", prefix, tempName(m.name))
		}
		return fmt.Sprintf("%s create encrypted network %s", prefix, m.name)
	case kindAttach:
		return fmt.Sprintf("%s attach %s to %s (%d of %d services done)", prefix, st.network.Name, st.service.Name, st.done, st.total)
	case kindDetach:
		return fmt.Sprintf("%s detach %s from %s (%d of %d services done)", prefix, st.network.Name, st.service.Name, st.done, st.total)
	case kindRemoveNetwork:
		return fmt.Sprintf("%s remove network %s (%s)", prefix, st.network.Name, st.network.ID)
	case kindBlocked:
		return "blocked: " + st.why
	}
	return "done"
}

// findMigrations lists the migrations the store shows: those in progress
// (a temporary network exists), whatever the policies say now, and those
// the encryption policies ask for. include picks the policies that count as
// enforced. Networks a policy selects that cannot be migrated are explained
// in notes; the ingress network is returned apart.
func findMigrations(tx state.ReadTx, include func(*state.Policy) bool) (ms []*migration, ingress *migration, notes []string, err error) {
	policies, err := state.FindPolicies(tx, state.ByKind(v1.KindEncryptionPolicy))
	if err != nil {
		return nil, nil, nil, err
	}
	nets, err := loadNetworks(tx)
	if err != nil {
		return nil, nil, nil, err
	}
	services, err := state.FindServices(tx, state.All())
	if err != nil {
		return nil, nil, nil, err
	}
	slices.SortFunc(services, func(a, b *state.Service) int { return cmp.Compare(a.Name, b.Name) })
	users := map[string][]*state.Service{}
	for _, s := range services {
		for _, a := range s.Networks {
			if n := nets.resolve(a.Target); n != nil {
				users[n.ID] = append(users[n.ID], s)
			}
		}
	}
	selectors := func(n *state.Network) (names []string, enforced bool) {
		for _, p := range policies {
			if p.Encryption != nil && p.Encryption.Spec.NetworkSelector.Matches(n.SelectorLabels) {
				names = append(names, p.Name)
				enforced = enforced || include == nil || include(p)
			}
		}
		slices.Sort(names)
		return names, enforced
	}

	byName := map[string]*migration{}
	for _, n := range nets.byID {
		if !n.Managed() || n.Labels[v1.LabelPurpose] != PurposeMigration || n.Labels[LabelMigrating] == "" {
			continue
		}
		m := &migration{name: n.Labels[LabelMigrating], temp: n, rec: decodeNetworkRecord(n), users: users}
		if prev := byName[m.name]; prev != nil && prev.temp.ID < n.ID {
			continue // two temporaries cannot share the one deterministic name
		}
		byName[m.name] = m
		from := n.Labels[LabelMigratedFrom]
		if o := nets.byID[from]; o != nil && o.Name == m.name {
			m.old = o
			m.policies, m.enforced = selectors(o)
			m.enforced = m.enforced && !o.Ignored()
		}
		if cur := nets.byName[m.name]; cur != nil && cur.ID != from && cur.Scope == "swarm" {
			m.new = cur
			m.policies, _ = selectors(cur)
		}
	}
	for _, n := range nets.byName {
		if n.Managed() || byName[n.Name] != nil {
			continue
		}
		names, enforced := selectors(n)
		switch {
		case len(names) == 0 || n.Encrypted():
			continue
		case n.Ingress:
			ingress = &migration{name: n.Name, old: n, policies: names, users: users}
			continue
		case n.Predefined():
			continue
		case n.Ignored():
			notes = append(notes, fmt.Sprintf("network %s opts out (%s=true): it is not encrypted", n.Name, v1.LabelIgnore))
			continue
		case n.Driver != "overlay" || n.Scope != "swarm":
			notes = append(notes, fmt.Sprintf("network %s is a %s %s network: only Swarm overlay networks can be encrypted", n.Name, n.Scope, n.Driver))
			continue
		}
		m := &migration{name: n.Name, old: n, policies: names, enforced: enforced, users: users}
		if st := m.next(); st.kind == kindBlocked {
			notes = append(notes, fmt.Sprintf("network %s cannot be encrypted: %s", n.Name, st.why))
			continue
		}
		byName[n.Name] = m
	}
	for _, m := range byName {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b *migration) int { return cmp.Compare(a.name, b.name) })
	return ms, ingress, notes, nil
}

// onNetwork reports whether a service is attached to network n.
func onNetwork(as []swarm.NetworkAttachmentConfig, n *state.Network) int {
	return slices.IndexFunc(as, func(a swarm.NetworkAttachmentConfig) bool {
		return a.Target == n.ID || a.Target == n.Name
	})
}

// servicesOf names services, for plans and reports.
func servicesOf(ss []*state.Service) string {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}
