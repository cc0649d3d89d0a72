package compile

import (
	"fmt"
	"slices"
	"strings"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/state"
)

// Some services stay where they are whatever the policies ask: those that
// opt out (swarmsec.io/ignore=true), which swarmsec never changes, and
// those it keeps as they are because their isolation ended and no record
// says what to restore. A managed network one of them is on is shared with
// others only where every member may talk to it (never one that opts out:
// no policy reaches it through swarmsec), and is not removed while it is
// there: removing it would fail "in use" on every pass.

// stayers are the services that stay on one managed network.
type stayers struct {
	// why describes each, for plan's notes: "name (why)".
	why []string
	// members are those the compile sees, by position.
	members []int
	// optOut is set when one opts out: nothing may join it there.
	optOut bool
}

// KeptAsIs reports whether a service keeps its networks and ports as they
// are whatever the policies ask: it is not isolated and its record cannot
// say what to restore.
func KeptAsIs(isolated bool, orig *Original, problem *Problem) bool {
	return !isolated && orig == nil && problem != nil && problem.Reason != ReasonRecordUntrusted
}

// findStayers finds, by network ID, who stays on each trusted managed
// network.
func (c *compiler) findStayers(ignored []*state.Service) {
	c.stay = map[string]*stayers{}
	on := func(s *state.Service, i int, why string) {
		for _, a := range s.Networks {
			n := c.resolve(a.Target)
			if !Trusted(n) {
				continue
			}
			st := c.stay[n.ID]
			if st == nil {
				st = &stayers{}
				c.stay[n.ID] = st
			}
			st.why = append(st.why, s.Name+" ("+why+")")
			if i < 0 {
				st.optOut = true
			} else {
				st.members = append(st.members, i)
			}
		}
	}
	for _, s := range ignored {
		on(s, -1, v1.LabelIgnore+"=true")
	}
	for i, s := range c.services {
		if c.isolated[i] {
			continue
		}
		if _, labelled := s.Labels[v1.LabelOriginal]; !labelled && len(c.records.of(s.ID)) == 0 {
			continue // the common case: nothing to restore
		}
		if orig, _, problem := c.records.Of(s, c.resolve); KeptAsIs(false, orig, problem) {
			on(s, i, "its record cannot say what to restore, so it keeps its networks")
		}
	}
	for id, st := range c.stay {
		slices.Sort(st.why)
		c.out.Stay[id] = st.why
	}
}

// usable reports whether members may share network n with those who stay
// on it.
func (c *compiler) usable(n *state.Network, members []int) bool {
	st := c.stay[n.ID]
	if st == nil {
		return true
	}
	if st.optOut {
		return false
	}
	for _, m := range members {
		for _, x := range st.members {
			if !c.allowed(m, x) {
				return false
			}
		}
	}
	return true
}

// usableName reports whether members may share every network of that
// name with those who stay on it.
func (c *compiler) usableName(name string, members []int) bool {
	for _, n := range c.networks[name] {
		if !c.usable(n, members) {
			return false
		}
	}
	return true
}

// positions finds the services of the given names, for usable.
func (c *compiler) positions(names []string) []int {
	out := make([]int, 0, len(names))
	for _, ds := range c.out.Services {
		if slices.Contains(names, ds.Name) {
			out = append(out, c.index[ds.ID])
		}
	}
	return out
}

// noteOptOuts says which policies select or name services that opt out:
// swarmsec neither isolates those nor connects them to anything.
func (c *compiler) noteOptOuts(policies []*v1.Policy, ignored []*state.Service) {
	for _, p := range policies {
		spec := &p.Network.Spec
		for _, s := range ignored {
			if spec.ServiceSelector.Matches(s.SelectorLabels) {
				c.out.Notes = append(c.out.Notes, fmt.Sprintf(
					"policy %s selects %s, which opts out (%s=true): swarmsec leaves it as it is and does not isolate it",
					p.Name, s.Name, v1.LabelIgnore))
				continue
			}
			named := slices.ContainsFunc(selectorsOf(spec)[1:], func(sel *v1.LabelSelector) bool { return sel.Matches(s.SelectorLabels) })
			if named {
				c.out.Notes = append(c.out.Notes, fmt.Sprintf(
					"policy %s names %s as a peer, but it opts out (%s=true): swarmsec leaves it as it is and connects it to none of the policy's services",
					p.Name, s.Name, v1.LabelIgnore))
			}
		}
	}
}

// StayNote says why a managed network no policy needs is not removed.
func StayNote(name string, who []string) string {
	verb, them := "stays", "it"
	if len(who) > 1 {
		verb, them = "stay", "them"
	}
	return fmt.Sprintf("network %s is no longer needed, but %s %s on it: swarmsec keeps the network, and removes it once nothing keeps it (detach %s from %s by hand)",
		name, strings.Join(who, ", "), verb, them, name)
}
