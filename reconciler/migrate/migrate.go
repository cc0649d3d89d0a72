// Package migrate plans the encryption of existing overlay networks. Swarm
// cannot change a network's options, so an unencrypted network an
// EncryptionPolicy selects is replaced by an encrypted one of the same name,
// its services moved over through a temporary network so that they always
// share one.
//
// It is a planner like any other stage of the pure core: from what the store
// shows it decides the writes that can be made now (a network created or
// removed, or a wave of service updates) and says when it must wait for
// Swarm (a rolling update on its way, a removed network still listed). Its
// progress lives in Swarm, in the temporary network's labels and the
// services' attachments, so a pass killed at any point is finished, or
// rolled back, by the next.
package migrate

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/state"
)

// Steps of a migration. Services always share old, temp or new: every
// service joins the next network before any leaves the previous one, and a
// wave starts only once Swarm carried out the one before.
const (
	stepCreateTemp = 1
	stepAttachTemp = 2
	stepDetachOld  = 3
	stepRemoveOld  = 4
	stepCreateNew  = 5
	stepAttachNew  = 6
	stepDetachTemp = 7
	stepRemoveTemp = 8
	// Steps is the number of steps of a migration.
	Steps = 8
	// RollbackSteps is the number of steps of a rollback.
	RollbackSteps = 3
	// UpdatesPerService is what a migration costs each service: attach
	// temp, detach old, attach new, detach temp; each a rolling update.
	UpdatesPerService = 4

	tempSuffix = "-swarmsec-tmp"
)

// stepKind is what a step does.
type stepKind int

const (
	kindDone stepKind = iota
	kindBlocked
	kindWait
	kindCreateNetwork
	kindAttach
	kindDetach
	kindRemoveNetwork
)

// Record is what the replacement must copy from the network it replaces:
// everything but the encryption, which it adds. It is kept in the temporary
// network's swarmsec.io/migration label, needed once the old one is gone.
type Record struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Labels     map[string]string `json:"labels,omitempty"`
	Options    map[string]string `json:"options,omitempty"`
	Internal   bool              `json:"internal,omitempty"`
	Attachable bool              `json:"attachable,omitempty"`
	EnableIPv6 bool              `json:"ipv6,omitempty"`
	IPAM       *network.IPAM     `json:"ipam,omitempty"`
}

// newRecord records an observed network. The VXLAN ID is Swarm's
// allocation, not a setting: a copy would clash.
func newRecord(n *state.Network) *Record {
	opts := map[string]string{}
	for k, v := range n.Options {
		if k != "com.docker.network.driver.overlay.vxlanid_list" {
			opts[k] = v
		}
	}
	ipam := n.IPAM
	return &Record{
		ID: n.ID, Name: n.Name, Labels: n.Labels, Options: opts, Internal: n.Internal,
		Attachable: n.Attachable, EnableIPv6: n.EnableIPv6, IPAM: &ipam,
	}
}

func decodeRecord(n *state.Network) *Record {
	var rec Record
	if err := json.Unmarshal([]byte(n.Labels[v1.LabelMigration]), &rec); err != nil || rec.Name == "" {
		return nil
	}
	return &rec
}

// migration is one network's migration as the store shows it.
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
	rec            *Record
	// squatter is a network that holds the temporary name without being
	// this migration's.
	squatter *state.Network
	// users are the services on each network, by network ID, by name.
	users map[string][]*state.Service
	// tasks are the tasks Swarm wants running, by service ID.
	tasks map[string][]*state.Task
}

// step is the next thing a migration does.
type step struct {
	kind stepKind
	num  int
	// rollback is set when the migration is being undone.
	rollback bool
	// network is the network the step creates, attaches, detaches or
	// removes; from, for an attach, is the network whose aliases it copies.
	network *state.Network
	from    *state.Network
	// services are the wave of an attach or detach; done of total services
	// were through the step before it.
	services    []*state.Service
	done, total int
	why         string
}

func (m *migration) started() bool { return m.temp != nil }

// TempName is the temporary network's name: readable, within Swarm's limit.
// The labels, not the name, identify it.
func TempName(name string) string {
	return compile.BoundedName(name, tempSuffix, false, []string{name, tempSuffix})
}

// next decides the next step from what the store shows, so a migration
// killed at any point resumes where it stopped.
func (m *migration) next() step {
	switch {
	case m.temp == nil && (m.old == nil || !m.enforced):
		return step{kind: kindDone}
	case m.temp == nil:
		if s := ignoredUser(m.users[m.old.ID]); s != nil {
			return blocked(fmt.Sprintf("service %s opts out (%s=true) and uses it", s.Name, v1.LabelIgnore))
		}
		if m.squatter != nil {
			return blocked(fmt.Sprintf("%s: a network of that name exists that swarmsec did not create (%s); rename or remove it",
				TempName(m.name), m.squatter.ID))
		}
		return step{kind: kindCreateNetwork, num: stepCreateTemp}
	}
	if st, ok := m.settled(); !ok {
		return st
	}
	switch {
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
			m.temp.Name, v1.LabelMigration, m.name, m.name))
	case m.new == nil:
		return step{kind: kindCreateNetwork, num: stepCreateNew}
	case m.new.Labels[v1.LabelMigratedFrom] != m.temp.Labels[v1.LabelMigratedFrom]:
		return blocked(fmt.Sprintf("network %s was created again by someone else (%s) while its services were on %s; remove it and swarmsec recreates it encrypted",
			m.name, m.new.ID, m.temp.Name))
	default:
		if st, ok := m.move(m.temp, m.new, stepAttachNew); ok {
			return st
		}
		return step{kind: kindRemoveNetwork, num: stepRemoveTemp, network: m.temp}
	}
}

// settled waits until Swarm runs the current spec of every service of a
// migration in progress: the next detach is safe only once the tasks of
// the previous attach arrived.
func (m *migration) settled() (step, bool) {
	seen := map[string]bool{}
	for _, n := range []*state.Network{m.old, m.temp, m.new} {
		if n == nil {
			continue
		}
		for _, s := range m.users[n.ID] {
			if seen[s.ID] {
				continue
			}
			seen[s.ID] = true
			switch ok, why, paused := converged(s, m.tasks[s.ID]); {
			case paused:
				return blocked(fmt.Sprintf("the rolling update of service %s is %s (%s): resume it or roll it back (docker service update --rollback %s) and swarmsec goes on",
					s.Name, s.UpdateState, s.UpdateMessage, s.Name)), false
			case !ok:
				return step{kind: kindWait, why: fmt.Sprintf("waiting for the rolling update of service %s: %s", s.Name, why)}, false
			}
		}
	}
	return step{}, true
}

// converged reports whether Swarm runs a service's current networks: as
// many tasks as it wants, none on earlier networks. Right after an update
// the old tasks are already shut down and the new ones not yet created:
// counting catches that moment. Tasks need not have reached running: one
// that never starts talks to no one either way.
func converged(s *state.Service, tasks []*state.Task) (ok bool, why string, paused bool) {
	if s.UpdateState == swarm.UpdateStatePaused || s.UpdateState == swarm.UpdateStateRollbackPaused {
		return false, "", true
	}
	want := make([]string, 0, len(s.Networks))
	for _, a := range s.Networks {
		want = append(want, a.Target)
	}
	slices.Sort(want)
	current, stale := 0, 0
	for _, t := range tasks {
		if slices.Equal(t.Networks, want) {
			current++
		} else {
			stale++
		}
	}
	switch {
	case stale > 0:
		return false, fmt.Sprintf("%d tasks still on the previous networks", stale), false
	case s.StatusKnown && uint64(current) < s.DesiredTasks:
		return false, fmt.Sprintf("%d of %d tasks on the new networks", current, s.DesiredTasks), false
	}
	return true, "", false
}

// move is the next wave of moving every service of from onto to: all join
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
		return step{kind: kindAttach, num: attachStep, network: to, from: from, services: missing,
			done: len(users) - len(missing), total: len(users)}, true
	}
	if len(users) > 0 {
		total := len(m.users[to.ID])
		return step{kind: kindDetach, num: attachStep + 1, network: from, services: users,
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

// describe says what a step does, for logs and plans.
func (m *migration) describe(st step) string {
	prefix := st.prefix()
	switch st.kind {
	case kindCreateNetwork:
		if st.num == stepCreateTemp {
			return fmt.Sprintf("%s create temporary encrypted network %s", prefix, TempName(m.name))
		}
		return fmt.Sprintf("%s create encrypted network %s", prefix, m.name)
	case kindAttach:
		return fmt.Sprintf("%s attach %s to %s (%d of %d services done)", prefix, st.network.Name, servicesOf(st.services), st.done, st.total)
	case kindDetach:
		return fmt.Sprintf("%s detach %s from %s (%d of %d services done)", prefix, st.network.Name, servicesOf(st.services), st.done, st.total)
	case kindRemoveNetwork:
		return fmt.Sprintf("%s remove network %s (%s)", prefix, st.network.Name, st.network.ID)
	case kindBlocked:
		return "blocked: " + st.why
	case kindWait:
		return st.why
	}
	return "done"
}

// prefix numbers a step: "step 2/8", "rollback step 1/3".
func (st step) prefix() string {
	if st.rollback {
		return fmt.Sprintf("rollback step %d/%d", st.num, RollbackSteps)
	}
	return fmt.Sprintf("step %d/%d", st.num, Steps)
}

// find lists the migrations the store shows: those in progress (a temporary
// network exists), whatever the policies say now, and those the encryption
// policies ask for. Networks a policy selects that cannot be migrated are
// explained in notes; the ingress network is returned apart.
func find(tx State) (ms []*migration, ingress *migration, notes []string, err error) {
	f, err := newFinder(tx)
	if err != nil {
		return nil, nil, nil, err
	}
	f.inProgress()
	f.asked()
	for _, m := range f.byName {
		ms = append(ms, m)
	}
	slices.SortFunc(ms, func(a, b *migration) int { return cmp.Compare(a.name, b.name) })
	return ms, f.ingress, f.notes, nil
}

// finder is find's reading of the store and what it found so far.
type finder struct {
	policies []*v1.Policy
	nets     *plan.Networks
	users    map[string][]*state.Service // by network ID, by name
	tasks    map[string][]*state.Task    // by service ID

	byName  map[string]*migration
	ingress *migration
	notes   []string
}

func newFinder(tx State) (*finder, error) {
	policies, err := tx.PoliciesOf(v1.KindEncryptionPolicy)
	if err != nil {
		return nil, err
	}
	nets, err := plan.LoadNetworks(tx)
	if err != nil {
		return nil, err
	}
	services, err := tx.Services()
	if err != nil {
		return nil, err
	}
	tasks, err := tx.Tasks()
	if err != nil {
		return nil, err
	}
	f := &finder{policies: policies, nets: nets, users: map[string][]*state.Service{},
		tasks: map[string][]*state.Task{}, byName: map[string]*migration{}}
	slices.SortFunc(services, func(a, b *state.Service) int { return cmp.Compare(a.Name, b.Name) })
	for _, s := range services {
		for _, a := range s.Networks {
			if n := nets.Resolve(a.Target); n != nil {
				f.users[n.ID] = append(f.users[n.ID], s)
			}
		}
	}
	for _, t := range tasks {
		f.tasks[t.ServiceID] = append(f.tasks[t.ServiceID], t)
	}
	return f, nil
}

// selectors names the encryption policies selecting a network, and says
// whether one of them is enforced.
func (f *finder) selectors(n *state.Network) (names []string, enforced bool) {
	for _, p := range f.policies {
		if p.Encryption != nil && p.Encryption.Spec.NetworkSelector.Matches(n.SelectorLabels) {
			names = append(names, p.Name)
			enforced = enforced || plan.Enforced(p)
		}
	}
	slices.Sort(names)
	return names, enforced
}

// inProgress finds the migrations a temporary network shows started.
func (f *finder) inProgress() {
	for _, n := range f.nets.ByID {
		if !isTemp(n) {
			continue
		}
		m := &migration{name: n.Labels[v1.LabelMigrating], temp: n, rec: decodeRecord(n), users: f.users, tasks: f.tasks}
		if prev := f.byName[m.name]; prev != nil && prev.temp.ID < n.ID {
			continue // two temporaries cannot share the one deterministic name
		}
		f.byName[m.name] = m
		from := n.Labels[v1.LabelMigratedFrom]
		if o := f.nets.ByID[from]; o != nil && o.Name == m.name {
			m.old = o
			m.policies, m.enforced = f.selectors(o)
			m.enforced = m.enforced && !o.Ignored()
		}
		if cur := f.nets.ByName[m.name]; cur != nil && cur.ID != from && cur.Scope == "swarm" {
			m.new = cur
			m.policies, _ = f.selectors(cur)
		}
	}
}

// asked finds the migrations the encryption policies ask for and that are
// not under way, noting the networks that cannot be migrated.
func (f *finder) asked() {
	for _, n := range f.nets.ByName {
		if n.Managed() || f.byName[n.Name] != nil {
			continue
		}
		names, enforced := f.selectors(n)
		if len(names) == 0 || n.Encrypted() {
			continue
		}
		if n.Ingress {
			f.ingress = &migration{name: n.Name, old: n, policies: names, users: f.users}
			continue
		}
		if note, skip := unmigratable(n); skip {
			if note != "" {
				f.notes = append(f.notes, note)
			}
			continue
		}
		m := &migration{name: n.Name, old: n, policies: names, enforced: enforced, users: f.users, tasks: f.tasks}
		if sq := f.nets.ByName[TempName(n.Name)]; sq != nil {
			m.squatter = sq
		}
		if st := m.next(); st.kind == kindBlocked && m.squatter == nil {
			f.notes = append(f.notes, fmt.Sprintf("network %s cannot be encrypted: %s", n.Name, st.why))
			continue
		}
		f.byName[n.Name] = m
	}
}

// unmigratable says whether a selected network is left as it is, and why
// when the user should hear of it (a predefined network goes unsaid).
func unmigratable(n *state.Network) (note string, skip bool) {
	switch {
	case n.Predefined():
		return "", true
	case n.Ignored():
		return fmt.Sprintf("network %s opts out (%s=true): it is not encrypted", n.Name, v1.LabelIgnore), true
	case n.Driver != "overlay" || n.Scope != "swarm":
		return fmt.Sprintf("network %s is a %s %s network: only Swarm overlay networks can be encrypted", n.Name, n.Scope, n.Driver), true
	case n.ConfigFrom != "":
		return fmt.Sprintf("network %s cannot be encrypted: it takes its settings from config network %s (--config-from): recreate both by hand with --opt encrypted",
			n.Name, n.ConfigFrom), true
	}
	return "", false
}

func isTemp(n *state.Network) bool {
	return compile.Trusted(n) && n.Labels[v1.LabelPurpose] == v1.PurposeMigration
}

// tempOptions are the temporary network's: the old network's flags and
// driver options, encrypted, its settings recorded, but a subnet of its own:
// a task on both must not see one subnet twice.
func (m *migration) tempOptions() network.CreateOptions {
	rec := newRecord(m.old)
	raw, _ := json.Marshal(rec) // plain data: cannot fail
	opts := network.CreateOptions{
		Driver: "overlay", Scope: "swarm", Internal: rec.Internal, Attachable: rec.Attachable,
		EnableIPv6: &rec.EnableIPv6, Options: encryptedOptions(rec.Options),
		Labels: map[string]string{
			v1.LabelManaged: "true", v1.LabelPurpose: v1.PurposeMigration,
			v1.LabelMigrating: m.name, v1.LabelMigratedFrom: m.old.ID, v1.LabelMigration: string(raw),
		},
	}
	if rec.IPAM != nil {
		opts.IPAM = &network.IPAM{Driver: rec.IPAM.Driver, Options: rec.IPAM.Options}
	}
	return opts
}

// newOptions recreate the network under its own name, encrypted, with the
// labels (a stack's namespace label above all: `docker stack deploy` finds
// its networks by it), flags, options and subnet it had.
func (m *migration) newOptions() network.CreateOptions {
	rec := m.rec
	labels := maps.Clone(rec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[v1.LabelMigratedFrom] = m.temp.Labels[v1.LabelMigratedFrom]
	return network.CreateOptions{
		Driver: "overlay", Scope: "swarm", Internal: rec.Internal, Attachable: rec.Attachable,
		EnableIPv6: &rec.EnableIPv6, Options: encryptedOptions(rec.Options), Labels: labels, IPAM: rec.IPAM,
	}
}

func encryptedOptions(opts map[string]string) map[string]string {
	out := maps.Clone(opts)
	if out == nil {
		out = map[string]string{}
	}
	out["encrypted"] = "true"
	return out
}

// onNetwork returns the index of the attachment to network n, or -1.
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
