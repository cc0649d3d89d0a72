package plan

import (
	"cmp"
	"fmt"
	"maps"
	"slices"

	"github.com/swarmsec/swarmsec/reconciler/compile"
)

// Schedule orders the service updates of a pass so that the cluster is
// never looser than the policies, at any moment: after every single write,
// two services share a network only if they shared one when the pass began
// or the policies allow them to talk. Any prefix of the order keeps that,
// so the blast radius may cut it anywhere. Updates are numbered in waves
// (Action.Wave): those of one wave may go out together, in any order, since
// each was checked against every member its networks may have while the
// wave is written (those there when it began and those it adds).
//
// An update that would attach a service to a network where a member it may
// not talk to still sits waits until that member has left. When every
// remaining update waits on another (a cycle), one member first leaves the
// networks it blocks, in an update of its own that keeps its other
// networks (the rest of its change waits for the next pass: later). Among
// the updates that can go, those that keep every pair both the old and the
// new policies allow sharing a network go first, attach-only ones before
// them.
func Schedule(tx State, desired *compile.Desired, updates []Action) (now, later []Action, err error) {
	return ScheduleUpTo(tx, desired, updates, 0)
}

// ScheduleUpTo is Schedule stopped once now holds limit updates (0: no
// limit): the same first limit updates, in the same order, as Schedule's
// now (each pick depends only on the picks before it), and the rest in
// later. A wave of 20 among 3,000 updates then costs 20 picks, not 3,000.
func ScheduleUpTo(tx State, desired *compile.Desired, updates []Action, limit int) (now, later []Action, err error) {
	if len(updates) == 0 {
		return nil, nil, nil
	}
	s, err := newSchedule(tx, desired)
	if err != nil {
		return nil, nil, err
	}
	pending := slices.Clone(updates)
	slices.SortStableFunc(pending, func(a, b Action) int { return cmp.Compare(detaches(a), detaches(b)) })
	s.newWave()
	for len(pending) > 0 {
		if limit > 0 && len(now) >= limit {
			later = append(later, pending...)
			break
		}
		i, whole := s.pick(pending)
		if (i < 0 || !whole) && s.inWave > 0 {
			// What waits may go once this wave's writes are done.
			s.newWave()
			continue
		}
		if i < 0 {
			// Blocked by a member with no change of its own to make (one
			// that opts out, say): wait for the next pass, reported.
			later = append(later, pending...)
			break
		}
		a := pending[i]
		pending = slices.Delete(pending, i, i+1)
		if !whole {
			part, ok := s.leaveFirst(a)
			if !ok {
				later = append(later, a)
				continue
			}
			part.Wave = s.waveNo
			now = append(now, part)
			later = append(later, a)
			s.move(a.ID, s.names(part.Service.Target))
			s.newWave()
			continue
		}
		a.Wave = s.waveNo
		now = append(now, a)
		nets := s.names(a.Service.Target)
		s.join(a.ID, nets)
		s.move(a.ID, nets)
	}
	return now, later, nil
}

// schedule simulates the memberships of the networks, by name, as the
// updates go out.
type schedule struct {
	desired *compile.Desired
	nets    *Networks
	// before are the networks of each service when the pass began; cur as
	// the simulated writes left them; members the reverse of cur.
	before, cur map[string]map[string]bool
	members     map[string]map[string]bool
	// wave is who may be on each network while the current wave is
	// written: the members when it began and those it adds; waveNo
	// numbers it, inWave counts its updates.
	wave           map[string]map[string]bool
	waveNo, inWave int
}

// newWave starts a wave from the memberships now.
func (s *schedule) newWave() {
	if s.wave != nil {
		s.waveNo++
	}
	s.inWave = 0
	s.wave = make(map[string]map[string]bool, len(s.members))
	for n, ms := range s.members {
		s.wave[n] = maps.Clone(ms)
	}
}

// join records the networks an update of this wave adds a service to.
func (s *schedule) join(id string, nets map[string]bool) {
	s.inWave++
	for n := range nets {
		if s.wave[n] == nil {
			s.wave[n] = map[string]bool{}
		}
		s.wave[n][id] = true
	}
}

func newSchedule(tx State, desired *compile.Desired) (*schedule, error) {
	nets, err := LoadNetworks(tx)
	if err != nil {
		return nil, err
	}
	services, err := tx.Services()
	if err != nil {
		return nil, err
	}
	s := &schedule{desired: desired, nets: nets, before: map[string]map[string]bool{}, cur: map[string]map[string]bool{},
		members: map[string]map[string]bool{}}
	for _, svc := range services {
		set := map[string]bool{}
		for _, a := range svc.Networks {
			name := a.Target
			if n := nets.Resolve(a.Target); n != nil {
				name = n.Name
			}
			set[name] = true
		}
		s.before[svc.ID] = set
		s.move(svc.ID, set)
	}
	return s, nil
}

// names are the networks of a target, by name.
func (s *schedule) names(t Target) map[string]bool {
	out := make(map[string]bool, len(t.Networks))
	for _, a := range t.Networks {
		name := a.Network
		if n := s.nets.Resolve(a.Network); n != nil {
			name = n.Name
		}
		out[name] = true
	}
	return out
}

// move puts a service on exactly the networks nets.
func (s *schedule) move(id string, nets map[string]bool) {
	for n := range s.cur[id] {
		delete(s.members[n], id)
	}
	s.cur[id] = nets
	for n := range nets {
		if s.members[n] == nil {
			s.members[n] = map[string]bool{}
		}
		s.members[n][id] = true
	}
}

// ok reports whether two services may share a network at this moment.
func (s *schedule) ok(a, b string) bool {
	return s.desired.Allowed(a, b) || shares(s.before[a], s.before[b])
}

func shares(x, y map[string]bool) bool {
	for n := range x {
		if y[n] {
			return true
		}
	}
	return false
}

// blockers are the members of the networks id would join that it may not
// share a network with now.
func (s *schedule) blockers(id string, nets map[string]bool) map[string][]string {
	var out map[string][]string
	for n := range nets {
		if s.cur[id][n] {
			continue
		}
		for m := range s.wave[n] {
			if m != id && !s.ok(id, m) {
				if out == nil {
					out = map[string][]string{}
				}
				out[n] = append(out[n], m)
			}
		}
	}
	return out
}

// keepsPairs reports whether moving id onto nets keeps it sharing a network
// with every service both the old and the new policies let it talk to.
func (s *schedule) keepsPairs(id string, nets map[string]bool) bool {
	for n := range s.cur[id] {
		if nets[n] {
			continue
		}
		for m := range s.members[n] {
			if m != id && s.desired.Allowed(id, m) && shares(s.before[id], s.before[m]) && !shares(nets, s.cur[m]) {
				return false
			}
		}
	}
	return true
}

// pick chooses the next update: one that meets no forbidden member and
// keeps every pair, else one that meets no forbidden member, else (whole
// false) a member that blocks another update and must leave first. -1 when
// nothing can go.
func (s *schedule) pick(pending []Action) (int, bool) {
	free := -1
	for i, a := range pending {
		nets := s.names(a.Service.Target)
		if len(s.blockers(a.ID, nets)) > 0 {
			continue
		}
		if s.keepsPairs(a.ID, nets) {
			return i, true
		}
		if free < 0 {
			free = i
		}
	}
	if free >= 0 {
		return free, true
	}
	// Every update waits on a member. Let one that has a change of its
	// own to make leave the networks it blocks first.
	index := map[string]int{}
	for i, a := range pending {
		index[a.ID] = i
	}
	var ids []string
	for _, a := range pending {
		for _, ms := range s.blockers(a.ID, s.names(a.Service.Target)) {
			ids = append(ids, ms...)
		}
	}
	slices.Sort(ids)
	for _, m := range ids {
		if i, ok := index[m]; ok {
			return i, false
		}
	}
	return -1, false
}

// leaveFirst is the first half of an update split in two: the service
// leaves every network it must leave, joins those it may join now, and
// takes its target's published ports; its record of what to restore is
// written with it. A restore's label naming its record stays until the
// half that restores the service: removed now, the next pass would find
// nothing to restore (the record itself goes only after the restore).
// false when that changes nothing.
func (s *schedule) leaveFirst(a Action) (Action, bool) {
	var t Target
	for _, att := range a.Service.Target.Networks {
		name := att.Network
		if n := s.nets.Resolve(att.Network); n != nil {
			name = n.Name
		}
		if s.cur[a.ID][name] || len(s.blockers(a.ID, map[string]bool{name: true})) == 0 {
			t.Networks = append(t.Networks, att)
		}
	}
	kept := s.names(t)
	if len(kept) == len(s.cur[a.ID]) && subset(kept, s.cur[a.ID]) {
		return Action{}, false
	}
	t.Ports, t.Original = a.Service.Target.Ports, a.Service.Target.Original
	part := a
	ch := *a.Service
	ch.Target = t
	ch.Attach, ch.Detach = nil, nil
	for n := range kept {
		if !s.cur[a.ID][n] {
			ch.Attach = append(ch.Attach, n)
		}
	}
	for n := range s.cur[a.ID] {
		if !kept[n] {
			ch.Detach = append(ch.Detach, n)
		}
	}
	if ch.Target.Original == "" && a.Service.Owned.Original != "" {
		// A restore only half done: the label that names the record, and
		// marks the service as swarmsec's, stays until the rest of it is
		// written.
		ch.Target.Original = a.Service.Owned.Original
	}
	slices.Sort(ch.Attach)
	slices.Sort(ch.Detach)
	// The copy's Detach is not what its why fields were packed for.
	ch.whyLabel = labelUnplanned
	part.Service = &ch
	part.Reasons = append([]string{fmt.Sprintf("first leave %v, so no one meets a service it may not talk to; the rest of the change goes next pass", ch.Detach)}, a.Why()...)
	return part, true
}

func subset(x, y map[string]bool) bool {
	for n := range x {
		if !y[n] {
			return false
		}
	}
	return true
}
