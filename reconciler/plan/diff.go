package plan

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/state"
)

// The diff: observed state against the desired topology, into actions.

// portRules lists the restricted published ports of the services, sorted by
// service then port.
func portRules(services []*state.Service, desired *compile.Desired) []PortRule {
	var out []PortRule
	for _, s := range services { // sorted by name
		ds := desired.Services[s.ID]
		if s.Ignored() || ds == nil || len(ds.Admit) == 0 {
			continue
		}
		start := len(out)
		for key, a := range ds.Admit {
			out = append(out, PortRule{Service: s.Name, Port: key, Mode: ds.Publish[key], Admission: *a})
		}
		slices.SortFunc(out[start:], func(x, y PortRule) int { return cmp.Compare(x.Port, y.Port) })
	}
	return out
}

// sharedPorts notes the ports several services restrict: the agents tell
// connections apart by their original port only.
func sharedPorts(rules []PortRule) []string {
	by := map[string][]string{}
	for _, r := range rules {
		by[r.Port] = append(by[r.Port], r.Service)
	}
	var out []string
	for _, port := range slices.Sorted(maps.Keys(by)) {
		if names := by[port]; len(names) > 1 {
			out = append(out, fmt.Sprintf("%s all publish %s (host mode, on different nodes): the node agents cannot tell their connections apart, so %s admits only the sources all of them admit",
				strings.Join(names, ", "), port, port))
		}
	}
	return out
}

// LoadNetworks indexes the networks in the store.
func LoadNetworks(tx State) (*Networks, error) {
	all, err := tx.Networks()
	if err != nil {
		return nil, err
	}
	o := &Networks{ByID: make(map[string]*state.Network, len(all)), ByName: make(map[string]*state.Network, len(all))}
	for _, n := range all {
		o.ByID[n.ID] = n
		// Prefer the swarm-scoped network when a local one shares its name.
		if prev, ok := o.ByName[n.Name]; !ok || prev.Scope != "swarm" {
			o.ByName[n.Name] = n
		}
	}
	return o, nil
}

// Resolve finds the network an attachment target names (an ID, or a name in
// specs written by hand through the API).
func (o *Networks) Resolve(target string) *state.Network {
	if n, ok := o.ByID[target]; ok {
		return n
	}
	return o.ByName[target]
}

// Diff plans the actions that take the observed state in tx to desired.
func Diff(tx State, desired *compile.Desired) (*Plan, error) {
	nets, err := LoadNetworks(tx)
	if err != nil {
		return nil, err
	}
	plan := &Plan{Desired: desired, Notes: slices.Clone(desired.Notes)}

	for _, dn := range desired.SortedNetworks() {
		// Names held by networks swarmsec cannot trust were avoided by
		// the compile: a name that exists here is swarmsec's.
		if _, ok := nets.ByName[dn.Name]; !ok {
			plan.Actions = append(plan.Actions, Action{
				Kind: ActionCreateNetwork, Name: dn.Name, Policies: ownerList(dn.Owner),
				Reasons: []string{networkReason(dn)}, Network: dn,
			})
		}
	}

	services, err := tx.Services()
	if err != nil {
		return nil, err
	}
	plan.Actions = slices.Grow(plan.Actions, len(services))
	slices.SortFunc(services, func(a, b *state.Service) int { return cmp.Compare(a.Name, b.Name) })
	targets := make([]Target, len(services))
	recs := make([]recordChange, len(services))
	for i, s := range services {
		if s.Ignored() {
			continue
		}
		var notes []string
		targets[i], recs[i], notes = target(desired.Records, s, desired.Services[s.ID], nets)
		plan.Notes = append(plan.Notes, notes...)
		if p := recs[i].problem; p != nil {
			plan.Problems = append(plan.Problems, *p)
			plan.Notes = append(plan.Notes, p.Message)
		}
	}
	plan.Notes = append(plan.Notes, dropSharedAliases(services, targets, desired)...)
	for i, s := range services {
		if s.Ignored() {
			continue
		}
		a, changed := serviceAction(s, desired.Services[s.ID], targets[i], nets)
		switch {
		case changed:
			a.Service.CreateRecord = recs[i].create
			if ch := a.Service; len(ch.Detach) > detachKinds {
				// More than the change packs (a service put on many
				// networks): say why for every one, now.
				ds := desired.Services[s.ID]
				isolated := ds != nil && ds.Isolated
				a.Reasons = a.render(func(i int) detachWhy { return detachKind(nets.ByName[ch.Detach[i]], isolated) })
			}
			plan.Actions = append(plan.Actions, a)
			if recs[i].remove != "" {
				// Never with the update: one Swarm rolls back (or pauses)
				// puts the service back where its record is all that says
				// what to restore.
				plan.Actions = append(plan.Actions, recordRemoval(s, recs[i].remove,
					"its update is in this plan: the record goes once the service is seen restored and its rolling update is done"))
			}
		case recs[i].create != nil:
			plan.Actions = append(plan.Actions, Action{Kind: ActionCreateRecord, Name: compile.RecordName(s.ID), ID: s.ID,
				Reasons: []string{"record what service " + s.Name + " had before its isolation, where a service update cannot reach it"},
				Service: &ServiceChange{CreateRecord: recs[i].create}})
		case recs[i].remove != "":
			plan.Actions = append(plan.Actions, recordRemoval(s, recs[i].remove, rollingWait(s)))
		}
	}
	plan.Actions = append(plan.Actions, orphanRecords(desired.Records, services)...)
	if plan.Ports = portRules(services, desired); len(plan.Ports) > 0 {
		plan.Notes = append(plan.Notes, sharedPorts(plan.Ports)...)
		plan.Notes = append(plan.Notes, AgentNote)
	}

	managed, err := tx.ManagedNetworks()
	if err != nil {
		return nil, err
	}
	slices.SortFunc(managed, func(a, b *state.Network) int { return cmp.Compare(a.Name, b.Name) })
	for _, n := range managed {
		if _, ok := desired.Networks[n.Name]; ok || n.Ignored() {
			continue
		}
		if !compile.Trusted(n) {
			plan.Notes = append(plan.Notes, fmt.Sprintf(
				"network %s (%s) carries %s=true but is not a network swarmsec makes (an encrypted, non-attachable overlay of a known purpose): it neither uses nor removes it",
				n.Name, n.ID, v1.LabelManaged))
			continue
		}
		if who := desired.Stay[n.ID]; len(who) > 0 {
			// Its removal would fail "in use" on every pass: said once
			// here instead, and planned when they have left.
			plan.Notes = append(plan.Notes, compile.StayNote(n.Name, who))
			continue
		}
		plan.Actions = append(plan.Actions, Action{
			Kind: ActionRemoveNetwork, Name: n.Name, ID: n.ID, Policies: ownerList(n.Owner()),
			Reasons: []string{"no policy needs it any more"},
		})
	}
	slices.Sort(plan.Notes)
	plan.Notes = slices.Compact(plan.Notes)
	return plan, nil
}

// recordRemoval removes the record of a service no longer isolated, or
// says why it waits (waits != ""): a record goes only once the service is
// seen restored and its rolling update is done, in a later pass than the
// update that restores it.
func recordRemoval(s *state.Service, id, waits string) Action {
	a := Action{Kind: ActionRemoveRecord, Name: compile.RecordName(s.ID), ID: id, Waits: waits,
		Reasons: []string{"service " + s.Name + " is restored: its record is no longer needed"}}
	if waits != "" {
		a.Reasons = []string{"service " + s.Name + " is being restored: its record waits: " + waits}
	}
	return a
}

// rollingWait says why a restored service's record must wait for its
// rolling update ("" when it need not): while the update rolls, is paused
// or rolls back, Swarm may still put the service back on the spec it had
// before, the isolated one whose record says what to restore. A completed
// rollback is done: Swarm clears the spec it rolled back from, and the
// service as seen is the one in force.
func rollingWait(s *state.Service) string {
	switch s.UpdateState {
	case swarm.UpdateStateUpdating, swarm.UpdateStatePaused, swarm.UpdateStateRollbackStarted, swarm.UpdateStateRollbackPaused:
		return fmt.Sprintf("its rolling update is %s (a rollback would bring back the isolated spec); it goes once the update is done", s.UpdateState)
	}
	return ""
}

func ownerList(owner string) []string {
	if owner == "" {
		return nil
	}
	return []string{owner}
}

// recordChange is what target decides about a service's record of what to
// restore.
type recordChange struct {
	// create is the data of a record to write before the service's
	// update; remove the ID of one no longer needed, removed once the
	// service is seen restored and its rolling update is done (see
	// recordRemoval).
	create []byte
	remove string
	// problem is what is wrong with the record, if anything.
	problem *compile.Problem
}

// target computes the networks, ports and original record a service must
// have. Isolated services keep only managed networks; other services keep
// their own networks (or get back the ones recorded when their isolation
// began) and join the managed networks that connect them to isolated peers.
func target(records compile.Records, s *state.Service, ds *compile.DesiredService, nets *Networks) (Target, recordChange, []string) {
	tg := newTargeting(records, s, ds, nets)
	keepAsIs := compile.KeptAsIs(tg.isolated, tg.orig, tg.problem)
	t := Target{Networks: tg.networks(keepAsIs)}
	tg.portsAndRecord(&t, keepAsIs)
	return t, tg.rec, tg.notes
}

// targeting is what target learns about one service on its way.
type targeting struct {
	records compile.Records
	s       *state.Service
	ds      *compile.DesiredService
	nets    *Networks

	// orig is the service's record of what to restore, from where it was
	// read; problem what is wrong with it.
	orig      *compile.Original
	from      string
	problem   *compile.Problem
	isolated  bool
	untrusted bool
	// current are the service's attachments by network name; own those to
	// networks swarmsec does not manage.
	current map[string]swarm.NetworkAttachmentConfig
	own     []Attachment
	// stale is the ID of a record a re-deploy made stale.
	stale string

	rec   recordChange
	notes []string
}

func newTargeting(records compile.Records, s *state.Service, ds *compile.DesiredService, nets *Networks) *targeting {
	tg := &targeting{records: records, s: s, ds: ds, nets: nets, isolated: ds != nil && ds.Isolated}
	tg.orig, tg.from, tg.problem = records.Of(s, nets.Resolve)
	tg.untrusted = tg.problem != nil && tg.problem.Reason == compile.ReasonRecordUntrusted
	if tg.untrusted {
		// A label swarmsec did not write is no record: the service is
		// planned as if it had none. Isolation records what it has and
		// the label comes to name that record; otherwise the label stays.
		tg.notes, tg.problem = append(tg.notes, tg.problem.Message), nil
	}
	tg.rec = recordChange{problem: tg.problem}
	tg.current = map[string]swarm.NetworkAttachmentConfig{}
	for _, a := range s.Networks {
		n := nets.Resolve(a.Target)
		if compile.Trusted(n) {
			tg.current[n.Name] = a
			continue
		}
		name, id := a.Target, a.Target
		if n != nil {
			name, id = n.Name, n.ID
		}
		tg.current[name] = a
		tg.own = append(tg.own, Attachment{Network: name, ID: id, Aliases: a.Aliases, DriverOpts: a.DriverOpts})
	}
	if _, labelled := s.Labels[v1.LabelOriginal]; !tg.isolated && tg.from == compile.FromRecord && !labelled && len(tg.own) > 0 {
		// Re-deployed (a stack deploy rewrites the labels and networks)
		// since its isolation ended: what it has now is its own.
		tg.stale, tg.orig = records.ID(s), nil
	}
	return tg
}

// networks are the attachments the service must have.
func (tg *targeting) networks(keepAsIs bool) []Attachment {
	var out []Attachment
	switch {
	case keepAsIs:
		// Isolation ended but nothing says what to restore: leave the
		// service where it is rather than guess. It still joins the
		// managed networks that connect it to isolated peers, as any
		// service no policy selects does, or the compile would wait for it
		// there on every pass.
		for _, a := range tg.s.Networks {
			name := a.Target
			if n := tg.nets.Resolve(a.Target); n != nil {
				name = n.Name
			}
			out = append(out, Attachment{Network: name, Aliases: a.Aliases, DriverOpts: a.DriverOpts})
		}
	case !tg.isolated:
		out = tg.base()
	}
	if tg.ds == nil {
		return out
	}
	aliases := tg.aliases()
	for _, name := range tg.ds.Networks {
		if keepAsIs && tg.current[name].Target != "" {
			continue // kept above
		}
		out = append(out, Attachment{Network: name, Aliases: aliases, DriverOpts: tg.current[name].DriverOpts})
	}
	return out
}

// base are the service's own networks: those it has, or those its record
// restores.
func (tg *targeting) base() []Attachment {
	if tg.orig == nil {
		return tg.own
	}
	base, skipped := restorable(tg.orig, tg.nets)
	for _, why := range skipped {
		tg.notes = append(tg.notes, fmt.Sprintf("service %s: %s; it is not restored", tg.s.Name, why))
	}
	return base
}

// aliases are those the service answers to on its managed networks.
func (tg *targeting) aliases() []string {
	// They follow from what the service answers to on its own networks,
	// never from what an attachment carries now: one dropped while it
	// named two services comes back once it names one
	// (dropSharedAliases), and one added by hand goes.
	aliases := ownAliases(tg.orig, tg.own)
	if tg.orig == nil && tg.problem != nil && len(tg.own) == 0 {
		// Its record is gone: what it answers to now is all there is.
		for _, a := range tg.s.Networks {
			aliases = append(aliases, a.Aliases...)
		}
		slices.Sort(aliases)
		aliases = slices.Compact(aliases)
	}
	return aliases
}

// portsAndRecord sets the target's ports and record label, and what
// becomes of the record.
func (tg *targeting) portsAndRecord(t *Target, keepAsIs bool) {
	s := tg.s
	switch {
	case tg.isolated:
		t.Ports = allowedPorts(s.Ports, tg.orig, tg.ds.Publish)
		t.Original = tg.isolationRecord()
	case keepAsIs:
		t.Ports, t.Original = s.Ports, s.Labels[v1.LabelOriginal]
	case tg.orig != nil:
		t.Ports = tg.orig.Ports
		if tg.from == compile.FromRecord {
			tg.rec.remove = tg.records.ID(s)
		}
	default:
		t.Ports = s.Ports
		tg.rec.remove = tg.stale
		if tg.untrusted {
			t.Original = s.Labels[v1.LabelOriginal]
		}
	}
}

// isolationRecord returns the record label of an isolated service and
// settles which record to write first, if any.
func (tg *targeting) isolationRecord() string {
	s := tg.s
	switch {
	case tg.from == compile.FromLabel:
		tg.rec.create = tg.orig.Encode() // adopt an earlier swarmsec's record
	case tg.orig == nil && tg.problem != nil && len(tg.own) == 0:
		// A record was kept once and is gone: what the service is on
		// now is swarmsec's, not what to restore. Record nothing.
		return s.Labels[v1.LabelOriginal]
	case tg.orig == nil:
		o := &compile.Original{Service: s.ID, Ports: s.Ports}
		for _, a := range tg.own {
			o.Networks = append(o.Networks, compile.OriginalAttachment{Name: a.Network, ID: a.ID, Aliases: a.Aliases, DriverOpts: a.DriverOpts})
		}
		tg.rec.create = o.Encode()
	}
	return compile.RecordName(s.ID)
}

// restorable are the recorded networks a service may go back to: ones that
// still exist and are its own. Never a managed network, a predefined one or
// ingress, whatever a record says: a record may be forged.
func restorable(o *compile.Original, nets *Networks) (base []Attachment, skipped []string) {
	for _, oa := range o.Networks {
		n := nets.ByName[oa.Name]
		switch {
		case n == nil:
			skipped = append(skipped, "original network "+oa.Name+" no longer exists")
		case n.Managed() || n.Predefined() || n.Ingress:
			skipped = append(skipped, "its record names network "+oa.Name+", which is swarmsec's or Docker's own")
		default:
			base = append(base, Attachment{Network: n.Name, ID: n.ID, Aliases: oa.Aliases, DriverOpts: oa.DriverOpts})
		}
	}
	return base, skipped
}

// orphanRecords removes the records of services that are gone.
func orphanRecords(records compile.Records, services []*state.Service) []Action {
	if len(records) == 0 {
		return nil
	}
	alive := make(map[string]bool, len(services))
	for _, s := range services {
		alive[s.ID] = true
	}
	prefix := compile.RecordName("")
	var out []Action
	for _, name := range slices.Sorted(maps.Keys(records)) {
		r := records[name][0]
		id, ours := strings.CutPrefix(r.Name, prefix)
		if !ours || alive[id] || r.Labels[v1.LabelManaged] != "true" {
			continue
		}
		out = append(out, Action{Kind: ActionRemoveRecord, Name: r.Name, ID: r.ID, Reasons: []string{"its service is gone"}})
	}
	return out
}

// dropSharedAliases keeps a short alias on a managed network only where it
// names one service: stacks reuse short names (api), and on a network that
// two stacks' services share, one alias naming both would send a peer to
// either. The full service name always resolves.
func dropSharedAliases(services []*state.Service, targets []Target, desired *compile.Desired) []string {
	named := map[string]map[string]int{} // network -> alias -> services
	for i := range services {
		for _, a := range targets[i].Networks {
			if _, managed := desired.Networks[a.Network]; !managed {
				continue
			}
			if named[a.Network] == nil {
				named[a.Network] = map[string]int{}
			}
			for _, al := range a.Aliases {
				named[a.Network][al]++
			}
		}
	}
	var notes []string
	for i := range services {
		for j, a := range targets[i].Networks {
			if _, managed := desired.Networks[a.Network]; !managed {
				continue
			}
			// Most aliases name one service: copy only where one goes.
			if !slices.ContainsFunc(a.Aliases, func(al string) bool { return named[a.Network][al] > 1 }) {
				continue
			}
			kept := a.Aliases[:0:0]
			for _, al := range a.Aliases {
				if named[a.Network][al] > 1 {
					notes = append(notes, fmt.Sprintf("alias %s names several services on network %s: it is left off there (use the service names)", al, a.Network))
					continue
				}
				kept = append(kept, al)
			}
			targets[i].Networks[j].Aliases = kept
		}
	}
	return notes
}

// ownAliases are the aliases a service answers to on its own networks:
// those of its record, every recorded network counted (one being replaced
// by an encryption migration is missing for a while), else those it has.
func ownAliases(orig *compile.Original, own []Attachment) []string {
	if orig == nil {
		return unionAliases(own)
	}
	var out []string
	for _, oa := range orig.Networks {
		out = append(out, oa.Aliases...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// unionAliases gathers the aliases a service has on its own networks, so it
// keeps answering to them (a stack's short service names) on managed ones.
func unionAliases(as []Attachment) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Aliases...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// allowedPorts keeps the published ports a policy allows, in the mode it
// asks for. Ports removed earlier come back from the original record when a
// policy allows them again.
func allowedPorts(current []swarm.PortConfig, orig *compile.Original, allow map[string]v1.PublishMode) []swarm.PortConfig {
	candidates := slices.Clone(current)
	if orig != nil {
		for _, p := range orig.Ports {
			if !slices.ContainsFunc(candidates, func(c swarm.PortConfig) bool { return samePort(c, p) }) {
				candidates = append(candidates, p)
			}
		}
	}
	var out []swarm.PortConfig
	for _, p := range candidates {
		mode, ok := allow[compile.PortKey(p.PublishedPort, string(p.Protocol))]
		if !ok {
			continue
		}
		p.PublishMode = swarm.PortConfigPublishMode(mode)
		out = append(out, p)
	}
	return out
}

// samePort tells whether two port configs are the same port, as Swarm
// tells them: by published port and protocol, or, for ports published on
// a port Swarm picks (published port 0, `-p 80`), by target port.
func samePort(a, b swarm.PortConfig) bool {
	if protocolOf(a) != protocolOf(b) {
		return false
	}
	if a.PublishedPort != 0 || b.PublishedPort != 0 {
		return a.PublishedPort == b.PublishedPort
	}
	return a.TargetPort == b.TargetPort
}

func protocolOf(p swarm.PortConfig) swarm.PortConfigProtocol {
	if p.Protocol == "" {
		return swarm.PortConfigProtocolTCP
	}
	return p.Protocol
}

func modeOf(p swarm.PortConfig) swarm.PortConfigPublishMode {
	if p.PublishMode == "" {
		return swarm.PortConfigPublishModeIngress // Docker's default
	}
	return p.PublishMode
}

// serviceAction compares a service with its target and describes the update
// that closes the gap, if any.
func serviceAction(s *state.Service, ds *compile.DesiredService, t Target, nets *Networks) (Action, bool) {
	// A service has a few networks: slices beat maps here, and most
	// services change nothing, so nothing is allocated for them.
	type held struct {
		name string
		att  swarm.NetworkAttachmentConfig
	}
	have := make([]held, 0, 8)
	for _, a := range s.Networks {
		name := a.Target
		if n := nets.Resolve(a.Target); n != nil {
			name = n.Name
		}
		have = append(have, held{name, a})
	}
	var attach, detach []string
	for _, a := range t.Networks {
		i := slices.IndexFunc(have, func(h held) bool { return h.name == a.Network })
		switch {
		case i < 0:
			attach = append(attach, a.Network)
		case !sameStrings(have[i].att.Aliases, a.Aliases) || !maps.Equal(have[i].att.DriverOpts, a.DriverOpts):
			attach = append(attach, a.Network)
			detach = append(detach, a.Network)
		}
	}
	for _, h := range have {
		if !slices.ContainsFunc(t.Networks, func(a Attachment) bool { return a.Network == h.name }) {
			detach = append(detach, h.name)
		}
	}
	ports := portChanges(s.Ports, t.Ports)
	origNow := s.Labels[v1.LabelOriginal]
	if len(attach) == 0 && len(detach) == 0 && len(ports) == 0 && origNow == t.Original {
		return Action{}, false
	}
	ch := &ServiceChange{Version: s.Version, Target: t, Owned: OwnedOf(s.Spec), Attach: attach, Detach: detach, Ports: ports}
	slices.Sort(ch.Attach)
	slices.Sort(ch.Detach)
	isolated := ds != nil && ds.Isolated
	switch {
	case origNow != t.Original && t.Original != "":
		ch.whyLabel = labelRecord
	case origNow != "" && t.Original == "":
		ch.whyLabel = labelRestore
	default:
		ch.whyLabel = labelKept
	}
	for i, n := range ch.Detach {
		ch.setDetachWhy(i, detachKind(nets.ByName[n], isolated))
	}
	a := Action{Kind: ActionUpdateService, Name: s.Name, ID: s.ID, Service: ch}
	if ds != nil {
		a.Policies = ds.Policies
		ch.Isolates = isolated && origNow == ""
	}
	return a, true
}

func portChanges(have, want []swarm.PortConfig) []string {
	var out []string
	for _, h := range have {
		i := slices.IndexFunc(want, func(w swarm.PortConfig) bool { return samePort(h, w) })
		key := compile.PortKey(h.PublishedPort, string(protocolOf(h)))
		switch {
		case i < 0:
			out = append(out, fmt.Sprintf("unpublish %s: no policy publishes it", key))
		case modeOf(want[i]) != modeOf(h) || want[i].TargetPort != h.TargetPort:
			out = append(out, fmt.Sprintf("publish %s in %s mode (was %s)", key, modeOf(want[i]), modeOf(h)))
		}
	}
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h swarm.PortConfig) bool { return samePort(h, w) }) {
			out = append(out, fmt.Sprintf("publish %s in %s mode again", compile.PortKey(w.PublishedPort, string(protocolOf(w))), modeOf(w)))
		}
	}
	return out
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	if slices.Equal(a, b) {
		return true
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
