package compile

import (
	"cmp"
	"slices"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/state"
)

// Stability. A network's shape (one per policy, stars, pairs) depends on
// the whole allowed relation, so compiling from scratch after one policy
// changed could reshape another policy's networks and roll services whose
// peers did not change. Today's managed networks are the hint instead:
// one that is still exact (its members may all talk, and it is internal if
// one of them must be) and still serves an edge some policy asks for is
// kept as it is, whoever made it. A policy whose edges they cover adds
// nothing; one they cover in part adds each missing peer to a network that
// can take it (only the joiner rolls) or else a network for the pair. Only
// a policy none of whose edges is realised yet is shaped from scratch.

// Hint is a pass's target: its policy networks by name, with the IDs of
// the services it puts on each. While some of a pass's updates wait (the
// safety limits cap a pass; Schedule splits an update in two), today's
// networks are half left and half joined, and read as the hint they can
// lead the next pass to other shapes that move back what the last one
// moved: capped passes never converged (issue #24). Read in their place,
// a target compiles to itself: each of its networks that exists is exact
// and realises an edge, so it is kept, and together they realise every
// edge, so nothing is added. It is only a hint: what is exact is judged
// by the policies and services as they are.
type Hint map[string][]string

// Hint returns the policy networks of d with their members.
func (d *Desired) Hint() Hint {
	out := Hint{}
	for _, ds := range d.Services {
		for _, name := range ds.Networks {
			if dn := d.Networks[name]; dn != nil && dn.Purpose == v1.PurposePolicy {
				out[name] = append(out[name], ds.ID)
			}
		}
	}
	return out
}

// hint is a kept network, or one added to cover a policy in part.
type hint struct {
	name, owner string
	internal    bool // today's flag (kept networks only)
	kept        bool
	members     []int // sorted
}

// keepNetworks finds the managed networks worth keeping and marks the
// edges they realise as covered.
func (c *compiler) keepNetworks(gateway []bool) {
	c.covered = map[uint64]struct{}{}
	byID := map[string]*state.Network{}
	for _, ns := range c.networks {
		// Two networks of one name cannot both be kept by name.
		if len(ns) == 1 && Trusted(ns[0]) && ns[0].Labels[v1.LabelPurpose] == v1.PurposePolicy {
			byID[ns[0].ID] = ns[0]
		}
	}
	if len(byID) == 0 {
		return
	}
	members := map[string][]int{}
	if c.target != nil {
		// The last pass's target: each service once per network.
		for name, ids := range c.target {
			if ns := c.networks[name]; len(ns) == 1 && byID[ns[0].ID] != nil {
				for _, id := range ids {
					if i, ok := c.index[id]; ok {
						members[ns[0].ID] = append(members[ns[0].ID], i)
					}
				}
			}
		}
	} else {
		for i, s := range c.services {
			for _, a := range s.Networks {
				n := byID[a.Target]
				if n == nil {
					if ns := c.networks[a.Target]; len(ns) == 1 {
						n = byID[ns[0].ID]
					}
				}
				if n != nil && !slices.Contains(members[n.ID], i) {
					members[n.ID] = append(members[n.ID], i)
				}
			}
		}
	}
	ids := make([]string, 0, len(members))
	for id := range members {
		ids = append(ids, id)
	}
	// Name order, so that the first of two networks with the same members
	// is the one kept, every time.
	slices.SortFunc(ids, func(a, b string) int { return cmp.Compare(byID[a].Name, byID[b].Name) })
	seen := map[string]bool{}
	for _, id := range ids {
		n, ms := byID[id], members[id]
		slices.Sort(ms)
		// A member with no edge to another member is there for nothing.
		ms = slices.DeleteFunc(slices.Clone(ms), func(a int) bool {
			return !slices.ContainsFunc(ms, func(b int) bool { return a != b && c.edge(a, b) })
		})
		if len(ms) < 2 || !c.clique(ms) || !c.usable(n, ms) {
			continue
		}
		if !n.Internal && slices.ContainsFunc(ms, func(i int) bool { return c.mustBeInternal(i, gateway) }) {
			continue
		}
		key := groupKey(ms)
		if seen[key] {
			continue
		}
		seen[key] = true
		h := &hint{name: n.Name, owner: n.Owner(), internal: n.Internal, kept: true, members: ms}
		c.hints = append(c.hints, h)
		c.cover(h.members)
	}
}

func (c *compiler) edge(a, b int) bool {
	return c.edges.has(a, b)
}

// mustBeInternal reports whether a service may be only on internal
// networks: isolated, denied outside access and publishing nothing.
func (c *compiler) mustBeInternal(i int, gateway []bool) bool {
	return c.isolated[i] && !gateway[i]
}

func (c *compiler) cover(members []int) {
	for i, a := range members {
		for _, b := range members[i+1:] {
			c.covered[pairKey(a, b)] = struct{}{}
		}
	}
}

// uncovered lists the edges a policy asks for that no hint realises yet.
func (c *compiler) uncovered(selected, peers []int) (missing [][2]int, total int) {
	for _, a := range selected {
		for _, b := range peers {
			if a == b {
				continue
			}
			total++
			if _, ok := c.covered[pairKey(a, b)]; !ok {
				missing = append(missing, [2]int{a, b})
			}
		}
	}
	return missing, total
}

// coverPartly realises the edges of a policy that today's networks do not:
// each by adding one end to a network of the other end that can take it,
// or else by a network for the pair, which later edges may join too.
func (c *compiler) coverPartly(p *v1.Policy, missing [][2]int, gateway []bool) {
	for _, e := range missing {
		a, b := e[0], e[1]
		if _, ok := c.covered[pairKey(a, b)]; ok {
			continue
		}
		if c.join(p.Name, a, b, gateway) || c.join(p.Name, b, a, gateway) {
			continue
		}
		lo, hi := c.services[a].Name, c.services[b].Name
		if lo > hi {
			lo, hi = hi, lo
		}
		h := &hint{name: policyNetworkName(p.Name, lo, hi), owner: p.Name, members: []int{min(a, b), max(a, b)}}
		c.hints = append(c.hints, h)
		c.cover(h.members)
	}
}

// join adds x to a network holding y that x may share with every member,
// the policy's own first. Adding a member rolls only that member.
func (c *compiler) join(policy string, x, y int, gateway []bool) bool {
	var pick *hint
	for _, h := range c.hints {
		if !slices.Contains(h.members, y) || (h.kept && !h.internal && c.mustBeInternal(x, gateway)) || !c.usableName(h.name, []int{x}) {
			continue
		}
		if !slices.ContainsFunc(h.members, func(m int) bool { return !c.allowed(x, m) }) {
			if pick == nil || (h.owner == policy && pick.owner != policy) {
				pick = h
			}
		}
	}
	if pick == nil {
		return false
	}
	for _, m := range pick.members {
		c.covered[pairKey(x, m)] = struct{}{}
	}
	pick.members = append(pick.members, x)
	slices.Sort(pick.members)
	return true
}

// hintGroups turns the hints into groups, before the policies' own.
func (c *compiler) hintGroups() {
	for _, h := range c.hints {
		c.group(h.owner, h.name, h.members)
		c.groups[groupKey(h.members)].kept = c.groups[groupKey(h.members)].kept || h.kept
	}
}
