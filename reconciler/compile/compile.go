// Package compile is the first stage of the pure core: it turns the
// NetworkPolicies and observed services in the store into the desired
// topology (which managed networks exist, who is on them, what each isolated
// service keeps). It does no I/O.
package compile

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/state"
)

// Network names. Swarm wants a DNS name component (letters, digits, '-' and
// '_', no dots). Policy networks are "swarmsec-<policy>[--<service>…]";
// per-service networks "swarmsec_<service>_egress" or "_isolated": the
// character after "swarmsec" keeps the two kinds apart.
const (
	prefixPolicy   = "swarmsec-"
	prefixService  = "swarmsec_"
	suffixEgress   = "_egress"
	suffixIsolated = "_isolated"
	nameSeparator  = "--"
	maxNameLen     = 63
)

// DesiredNetwork is a managed network the policies need.
type DesiredNetwork struct {
	Name    string
	Purpose string
	// Owner is the policy the network exists for; empty for per-service
	// networks.
	Owner    string
	Internal bool
	// Members are the names of the services attached to it, sorted.
	Members []string
}

// DesiredService is what the policies ask of one service.
type DesiredService struct {
	ID   string
	Name string
	// Isolated is set when at least one policy selects the service.
	Isolated bool
	// Policies selecting the service, sorted.
	Policies []string
	// Networks are the managed networks the service must be on, sorted.
	Networks []string
	// Outside is set when the service keeps access outside the cluster.
	Outside bool
	// Publish holds the allowed published ports by "port/protocol", with
	// the mode to use (isolated services only).
	Publish map[string]v1.PublishMode
	// Admit holds, by "port/protocol", what the node agent must enforce on
	// the ports whose policies restrict sources or log connections.
	Admit map[string]*Admission
}

// Admission is who may connect to one published port of a service: the
// union over the policies that allow the port.
type Admission struct {
	// Any is set when a policy allows the port from any source.
	Any bool `json:"any,omitempty"`
	// From are the admitted blocks, sorted (nil when Any).
	From []v1.SourceBlock `json:"from,omitempty"`
	// Log is the most a policy asks to report.
	Log v1.PortLog `json:"log"`
}

// Sources writes the admitted sources as plan and status show them.
func (a *Admission) Sources() string {
	if a.Any {
		return "any source"
	}
	parts := make([]string, len(a.From))
	for i, b := range a.From {
		parts[i] = b.String()
	}
	return strings.Join(parts, "; ")
}

var logLevel = map[v1.PortLog]int{v1.PortLogNone: 0, v1.PortLogBlocked: 1, v1.PortLogAll: 2}

// add merges one policy's port into the admission: sources are a union,
// so a policy without from admits everyone.
func (a *Admission) add(pp v1.PublishedPort) {
	if logLevel[pp.EffectiveLog()] > logLevel[a.Log] {
		a.Log = pp.EffectiveLog()
	}
	if len(pp.From) == 0 {
		a.Any, a.From = true, nil
		return
	}
	if a.Any {
		return
	}
	for _, src := range pp.From {
		if src.IPBlock == nil {
			continue
		}
		b := v1.SourceBlock{CIDR: src.IPBlock.CIDR, Except: slices.Clone(src.IPBlock.Except)}
		slices.Sort(b.Except)
		if !slices.ContainsFunc(a.From, func(x v1.SourceBlock) bool { return x.CIDR == b.CIDR && slices.Equal(x.Except, b.Except) }) {
			a.From = append(a.From, b)
		}
	}
	slices.SortFunc(a.From, func(x, y v1.SourceBlock) int { return strings.Compare(x.String(), y.String()) })
}

// Desired is the compiled topology: what the cluster must look like.
type Desired struct {
	Networks map[string]*DesiredNetwork
	// Services by service ID: every service a policy selects or names as a
	// peer.
	Services map[string]*DesiredService
	// Notes explain choices and limits to the operator (shown by plan).
	Notes []string

	// Records are the record configs the compile read.
	Records Records
	// Stay names, by network ID, the services that stay on a managed
	// network whatever the policies ask, each with why (see stay.go): the
	// network is not removed while they are on it.
	Stay map[string][]string
	// Policies are the policies in force as the node agent enforces them
	// (see datapath.go), in the order compiled.
	Policies []PolicyRules

	// The allowed relation, by service ID (see Allowed), and the rules it
	// was built from (see Rules).
	index    map[string]int
	isolated []bool
	edges    pairs
	decls    []declaration
}

// Edges are the pairs of services a policy lets talk, by service ID, each
// pair once (lower ID first), sorted.
func (d *Desired) Edges() [][2]string {
	ids := make([]string, len(d.index))
	for id, i := range d.index {
		ids[i] = id
	}
	out := make([][2]string, 0, d.edges.len())
	for pair := range d.edges.all() {
		a, b := ids[pair[0]], ids[pair[1]]
		if a > b {
			a, b = b, a
		}
		out = append(out, [2]string{a, b})
	}
	slices.SortFunc(out, func(x, y [2]string) int { return cmp.Or(cmp.Compare(x[0], y[0]), cmp.Compare(x[1], y[1])) })
	return out
}

// Allowed reports whether the policies let two services share a network:
// neither is isolated, or a policy lets them talk. A service the compile
// did not see (one that opts out, or is new) counts as not isolated.
func (d *Desired) Allowed(a, b string) bool {
	if a == b {
		return true
	}
	i, iok := d.index[a]
	j, jok := d.index[b]
	isoA, isoB := iok && d.isolated[i], jok && d.isolated[j]
	if !isoA && !isoB {
		return true
	}
	if !iok || !jok {
		return false
	}
	return d.edges.has(i, j)
}

// Rule is one policy rule that lets two services talk.
type Rule struct {
	// Policy is the policy's name.
	Policy string `json:"policy"`
	// Egress is set for a rule of the policy's egress list (the selected
	// service reaches the peer), unset for one of its ingress list.
	Egress bool `json:"egress"`
	// Index is the rule's place in that list.
	Index int `json:"index"`
	// Selected is the service the policy selects, Peer the one the rule
	// names, by ID.
	Selected string `json:"selected"`
	Peer     string `json:"peer"`
}

// Rules lists the policy rules that let services a and b (by ID) talk, in
// the order the compile read them, each once: the reasons behind Allowed,
// from the same matching (a held policy counts only on what it still
// isolates, a policy the compile left out not at all).
func (d *Desired) Rules(a, b string) []Rule {
	i, iok := d.index[a]
	j, jok := d.index[b]
	if !iok || !jok || i == j {
		return nil
	}
	var out []Rule
	for _, decl := range d.decls {
		for _, pair := range [][2]int{{i, j}, {j, i}} {
			_, sel := slices.BinarySearch(decl.selected, pair[0])
			_, peer := slices.BinarySearch(decl.peers, pair[1])
			if !sel || !peer {
				continue
			}
			r := Rule{Policy: decl.policy, Egress: decl.dir == dirEgress, Index: decl.rule, Selected: a, Peer: b}
			if pair[0] == j {
				r.Selected, r.Peer = b, a
			}
			if !slices.Contains(out, r) {
				out = append(out, r)
			}
		}
	}
	return out
}

// compiler holds the working set of one compile.
type compiler struct {
	tx       State
	services []*state.Service
	index    map[string]int // service ID -> position
	all      []int
	// postings lists, per "key=value" label, the services that carry it.
	postings map[[2]string][]int
	isolated []bool
	// policy selection per service, by position
	selectedBy [][]string
	// edges are the pairs a policy lets talk, each with the directions a
	// rule allowed.
	edges pairs
	// groups are the policy networks by member set, before they are named.
	groups map[string]*group
	// networks are the observed networks by name, byID by ID (see
	// resolve); records the records.
	networks map[string][]*state.Network
	byID     map[string]*state.Network
	records  Records
	// hints are today's networks kept, and those covering a policy in
	// part; covered the edges they realise (see hint.go).
	hints   []*hint
	covered map[uint64]struct{}
	// stay are who stays on each managed network, by ID (see stay.go).
	stay map[string]*stayers
	// target, when set, stands for today's members of the managed
	// networks (see Hint).
	target Hint
	out    *Desired
}

// group is one set of services that may all talk to each other and that
// some policy needs connected: one network, however many policies ask.
type group struct {
	members []int
	// candidates are the names the policies asking for it would give it,
	// with their owners.
	candidates []candidate
	// kept is set when the group is a network that exists and is kept: it
	// is named first, so no new group takes its name.
	kept bool
}

type candidate struct{ name, owner string }

// Compile computes the desired topology from the policies and services in
// tx. Only policies for which include returns true count (enforced ones when
// applying, all when auditing).
func Compile(tx State, include func(*v1.Policy) bool) (*Desired, error) {
	return Holding(tx, include, nil)
}

// Holding is Compile with some policies held (held returns true):
// a held policy stays in force on the services it already isolates and
// isolates no other. Holding a policy must not undo it: new services that
// match a policy in force would otherwise restore its old ones.
func Holding(tx State, include, held func(*v1.Policy) bool) (*Desired, error) {
	return Hinted(tx, include, held, nil)
}

// Hinted is Holding with target, when not nil, read as the
// managed networks' members in place of today's (see Hint).
func Hinted(tx State, include, held func(*v1.Policy) bool, target Hint) (*Desired, error) {
	policies, err := tx.PoliciesOf(v1.KindNetworkPolicy)
	if err != nil {
		return nil, err
	}
	policies = slices.DeleteFunc(policies, func(p *v1.Policy) bool {
		return p.Network == nil || (include != nil && !include(p))
	})
	all, err := tx.Services()
	if err != nil {
		return nil, err
	}
	c, ignored := newCompiler(tx, all, target)
	c.indexLabels(policies)
	ps := c.matchPolicies(policies, held)
	c.out.Policies = c.policyRules(ps)
	if err := c.loadNetworks(); err != nil {
		return nil, err
	}
	c.findStayers(ignored)
	included := ps2policies(ps, func(x matched) *v1.Policy { return x.p })
	if len(ignored) > 0 {
		c.noteOptOuts(slices.Collect(maps.Values(included)), ignored)
	}
	gateway := c.isolatedServices(included)
	c.keepNetworks(gateway)
	for _, mp := range ps {
		c.policyNetworks(mp.p, mp.selected, mp.peers, gateway)
	}
	c.hintGroups()
	c.policyGroups(gateway)
	c.serviceNetworks(gateway)
	c.explainDirections()
	c.avoidForeignNames()
	c.out.index, c.out.isolated, c.out.edges = c.index, c.isolated, c.edges
	slices.Sort(c.out.Notes)
	c.out.Notes = slices.Compact(c.out.Notes)
	return c.out, nil
}

// newCompiler numbers the services the policies may apply to and returns
// apart those that opt out (ignored).
func newCompiler(tx State, all []*state.Service, target Hint) (c *compiler, ignored []*state.Service) {
	c = &compiler{
		tx:       tx,
		index:    make(map[string]int, len(all)),
		services: make([]*state.Service, 0, len(all)),
		target:   target,
		out:      &Desired{Networks: map[string]*DesiredNetwork{}, Services: map[string]*DesiredService{}, Stay: map[string][]string{}},
	}
	for _, s := range all {
		if s.Ignored() {
			ignored = append(ignored, s)
			continue
		}
		c.index[s.ID] = len(c.services)
		c.services = append(c.services, s)
	}
	c.all = make([]int, len(c.services))
	for i := range c.services {
		c.all[i] = i
	}
	c.isolated = make([]bool, len(c.services))
	c.selectedBy = make([][]string, len(c.services))
	return c, ignored
}

// indexLabels builds the postings match narrows its candidates with.
func (c *compiler) indexLabels(policies []*v1.Policy) {
	// Index only the label pairs some selector names: a service's own
	// name label alone would make one posting per service.
	c.postings = make(map[[2]string][]int, len(policies))
	for _, p := range policies {
		for _, sel := range selectorsOf(&p.Network.Spec) {
			for k, v := range sel.MatchLabels {
				c.postings[[2]string{k, v}] = nil
			}
		}
	}
	for i, s := range c.services {
		for k, v := range s.SelectorLabels {
			if posting, ok := c.postings[[2]string{k, v}]; ok {
				c.postings[[2]string{k, v}] = append(posting, i)
			}
		}
	}
}

// matched is one policy with the services it isolates and its peers, by
// position, sorted.
type matched struct {
	p        *v1.Policy
	selected []int
	peers    []int
}

// matchPolicies matches every policy's selectors, marks the services they
// isolate and builds the pairs the rules let talk.
func (c *compiler) matchPolicies(policies []*v1.Policy, held func(*v1.Policy) bool) []matched {
	ps := make([]matched, 0, len(policies))
	// The pairs are built once every policy is matched (see pairs).
	var decls []declaration
	for _, p := range policies {
		sel := c.match(&p.Network.Spec.ServiceSelector)
		if held != nil && held(p) {
			sel = slices.DeleteFunc(sel, func(i int) bool {
				_, isolated := c.services[i].Labels[v1.LabelOriginal]
				return !isolated
			})
		}
		var peers []int
		decls, peers = c.matchPeers(p, sel, decls)
		for _, i := range sel {
			c.isolated[i] = true
			c.selectedBy[i] = append(c.selectedBy[i], p.Name)
		}
		ps = append(ps, matched{p, sel, peers})
	}
	c.edges = newPairs(len(c.services), decls)
	c.out.decls = decls
	return ps
}

// matchPeers matches the peer selectors of a policy's rules, adding a
// declaration per rule peer to decls, and returns the peers, sorted.
func (c *compiler) matchPeers(p *v1.Policy, sel []int, decls []declaration) ([]declaration, []int) {
	spec := &p.Network.Spec
	var peers []int
	for i, r := range spec.Ingress {
		for _, peer := range r.From {
			if peer.ServiceSelector != nil {
				m := c.match(peer.ServiceSelector)
				decls = append(decls, declaration{selected: sel, peers: m, dir: dirIngress, policy: p.Name, rule: i})
				peers = append(peers, m...)
			}
		}
	}
	for i, r := range spec.Egress {
		for _, peer := range r.To {
			if peer.ServiceSelector != nil {
				m := c.match(peer.ServiceSelector)
				decls = append(decls, declaration{selected: sel, peers: m, dir: dirEgress, policy: p.Name, rule: i})
				peers = append(peers, m...)
			}
		}
	}
	slices.Sort(peers)
	return decls, slices.Compact(peers)
}

// loadNetworks reads the record configs and the observed networks.
func (c *compiler) loadNetworks() error {
	c.groups = map[string]*group{}
	var err error
	if c.records, err = LoadRecords(c.tx); err != nil {
		return err
	}
	nets, err := c.tx.Networks()
	if err != nil {
		return err
	}
	c.networks = make(map[string][]*state.Network, len(nets))
	for _, n := range nets {
		c.networks[n.Name] = append(c.networks[n.Name], n)
	}
	c.out.Records = c.records
	return nil
}

// resolve finds the network an attachment target names: an ID, or a name
// in specs written by hand through the API. Few services need it (legacy
// labels, services that stay), so the index by ID is built on first use.
func (c *compiler) resolve(target string) *state.Network {
	if c.byID == nil {
		c.byID = make(map[string]*state.Network, len(c.networks))
		for _, ns := range c.networks {
			for _, n := range ns {
				c.byID[n.ID] = n
			}
		}
	}
	if n := c.byID[target]; n != nil {
		return n
	}
	if ns := c.networks[target]; len(ns) > 0 {
		return ns[0]
	}
	return nil
}

func ps2policies[T any](xs []T, f func(T) *v1.Policy) map[string]*v1.Policy {
	out := make(map[string]*v1.Policy, len(xs))
	for _, x := range xs {
		p := f(x)
		out[p.Name] = p
	}
	return out
}

// selectorsOf lists the service selectors of a policy: the one that picks
// what it isolates and those of its peers.
func selectorsOf(spec *v1.NetworkPolicySpec) []*v1.LabelSelector {
	out := []*v1.LabelSelector{&spec.ServiceSelector}
	for _, r := range spec.Ingress {
		for _, p := range r.From {
			if p.ServiceSelector != nil {
				out = append(out, p.ServiceSelector)
			}
		}
	}
	for _, r := range spec.Egress {
		for _, p := range r.To {
			if p.ServiceSelector != nil {
				out = append(out, p.ServiceSelector)
			}
		}
	}
	return out
}

// match returns the positions of the services a selector picks, sorted. The
// rarest matchLabels pair narrows the candidates first, so a compile stays
// near-linear in the number of services.
func (c *compiler) match(sel *v1.LabelSelector) []int {
	candidates := c.all
	for k, v := range sel.MatchLabels {
		if posting, ok := c.postings[[2]string{k, v}]; ok && len(posting) < len(candidates) {
			candidates = posting
		}
	}
	var out []int
	for _, i := range candidates {
		s := c.services[i]
		if s.Labels[v1.LabelSelf] == "true" && sel.MatchLabels[v1.LabelService] != s.Name {
			// swarmsec's own services are selected only by name: a broad
			// selector must not cut the controller off its engine.
			continue
		}
		if sel.Matches(s.SelectorLabels) {
			out = append(out, i)
		}
	}
	return out
}

// maxDirectionNotes bounds the notes that explain one-way rules.
const maxDirectionNotes = 20

const (
	dirIngress uint8 = 1 << iota // a rule of the selected side allows the peer in
	dirEgress                    // a rule of the selected side allows reaching the peer
)

func (c *compiler) explainDirections() {
	// Past a few, one line says it for all: a plan of thousands of
	// services must not drown in notes.
	var shown [][2]int
	more := 0
	for pair, dirs := range c.edges.all() {
		switch {
		case dirs == dirLoToHi|dirHiToLo:
		case len(shown) < maxDirectionNotes:
			shown = append(shown, pair)
		default:
			more++
		}
	}
	if more > 0 {
		c.out.Notes = append(c.out.Notes, fmt.Sprintf(
			"%d more pairs may connect one way only by their rules; overlay networks cannot tell directions, so each can connect the other way too where no node agent runs", more))
	}
	for _, k := range shown {
		lo, hi := k[0], k[1]
		from, to := c.services[lo].Name, c.services[hi].Name
		if c.edges.dirs(lo, hi) == dirHiToLo {
			from, to = to, from
		}
		c.out.Notes = append(c.out.Notes, fmt.Sprintf(
			"%s may connect to %s; overlay networks cannot tell directions, so %s can connect to %s too where no node agent runs",
			from, to, to, from))
	}
}

func pairKey(a, b int) uint64 {
	if a > b {
		a, b = b, a
	}
	return uint64(a)<<32 | uint64(b)
}

// allowed reports whether two services may share a network: a policy allows
// them to talk, or neither is isolated.
func (c *compiler) allowed(a, b int) bool {
	if a == b {
		return true
	}
	if !c.isolated[a] && !c.isolated[b] {
		return true
	}
	return c.edges.has(a, b)
}

func (c *compiler) clique(members []int) bool {
	for i, a := range members {
		for _, b := range members[i+1:] {
			if !c.allowed(a, b) {
				return false
			}
		}
	}
	return true
}

// policyNetworks covers the edges of one policy with as few networks as its
// shape allows, each a group of services that may all talk to each other:
// one network for the policy when it can, else one per service on the
// smaller side (a star), else one per pair. Networks belong to the policy,
// so a change to one policy touches only its own networks.
func (c *compiler) policyNetworks(p *v1.Policy, selected, peers []int, gateway []bool) {
	// A policy that isolates nothing changes nothing, whatever peers it
	// names.
	if len(selected) == 0 || len(peers) == 0 || (len(selected) == 1 && len(peers) == 1 && selected[0] == peers[0]) {
		return
	}
	// Today's networks first: a policy they realise in part only adds
	// what is missing.
	if len(c.covered) > 0 {
		if missing, total := c.uncovered(selected, peers); len(missing) < total {
			c.coverPartly(p, missing, gateway)
			return
		}
	}
	union := slices.Concat(selected, peers)
	slices.Sort(union)
	union = slices.Compact(union)
	if c.clique(union) {
		c.group(p.Name, policyNetworkName(p.Name), union)
		return
	}
	// Stars: {a} ∪ peers for each selected a works when peers may all talk
	// to each other; {b} ∪ selected for each peer b when selected may.
	starsOfSelected, starsOfPeers := c.clique(peers), c.clique(selected)
	if starsOfSelected && (!starsOfPeers || len(selected) <= len(peers)) {
		c.stars(p, selected, peers)
		return
	}
	if starsOfPeers {
		c.stars(p, peers, selected)
		return
	}
	for _, a := range selected {
		for _, b := range peers {
			if a == b {
				continue
			}
			lo, hi := c.services[a].Name, c.services[b].Name
			if lo > hi {
				lo, hi = hi, lo
			}
			c.group(p.Name, policyNetworkName(p.Name, lo, hi), []int{a, b})
		}
	}
}

func (c *compiler) stars(p *v1.Policy, centres, others []int) {
	for _, x := range centres {
		members := []int{x}
		for _, o := range others {
			if o != x {
				members = append(members, o)
			}
		}
		if len(members) < 2 {
			continue
		}
		slices.Sort(members)
		c.group(p.Name, policyNetworkName(p.Name, c.services[x].Name), members)
	}
}

func (c *compiler) addNetwork(owner, purpose, name string, internal bool, members []int) {
	n, ok := c.out.Networks[name]
	if !ok {
		n = &DesiredNetwork{Name: name, Purpose: purpose, Owner: owner, Internal: internal}
		c.out.Networks[name] = n
	}
	for _, m := range members {
		ds := c.desiredService(m)
		if !slices.Contains(ds.Networks, name) {
			ds.Networks = append(ds.Networks, name)
		}
		if !slices.Contains(n.Members, ds.Name) {
			n.Members = append(n.Members, ds.Name)
		}
	}
	slices.Sort(n.Members)
}

func (c *compiler) desiredService(i int) *DesiredService {
	s := c.services[i]
	ds, ok := c.out.Services[s.ID]
	if !ok {
		ds = &DesiredService{ID: s.ID, Name: s.Name, Outside: true}
		c.out.Services[s.ID] = ds
	}
	return ds
}

// group records that a policy needs members connected, under the name it
// would give the network.
func (c *compiler) group(owner, name string, members []int) {
	members = slices.Sorted(slices.Values(members))
	key := groupKey(members)
	g := c.groups[key]
	if g == nil {
		g = &group{members: members}
		c.groups[key] = g
	}
	g.candidates = append(g.candidates, candidate{name: name, owner: owner})
}

func groupKey(members []int) string { return fmt.Sprint(members) }

// policyGroups turns each group into one network. It keeps the name of a
// managed network that exists already (no rename, no rolling update), else
// takes the plainest: a policy's own network before a star, before a pair.
// The network is internal when a member may not reach outside; otherwise
// it is the gateway of its members too, and they need no network of their
// own for that.
func (c *compiler) policyGroups(gateway []bool) {
	keys := slices.Sorted(maps.Keys(c.groups))
	// Kept networks first: their names are taken.
	slices.SortStableFunc(keys, func(a, b string) int {
		return cmp.Compare(boolRank(!c.groups[a].kept), boolRank(!c.groups[b].kept))
	})
	for _, key := range keys {
		g := c.groups[key]
		internal := slices.ContainsFunc(g.members, func(i int) bool { return c.mustBeInternal(i, gateway) })
		slices.SortFunc(g.candidates, func(a, b candidate) int {
			return cmp.Or(cmp.Compare(strings.Count(a.name, nameSeparator), strings.Count(b.name, nameSeparator)), cmp.Compare(a.name, b.name))
		})
		free := func(cand candidate) bool { _, used := c.out.Networks[cand.name]; return !used }
		pick := g.candidates[0]
		if i := slices.IndexFunc(g.candidates, free); i >= 0 {
			pick = g.candidates[i]
		}
		for _, cand := range g.candidates {
			if !free(cand) {
				continue
			}
			ns := c.networks[cand.name]
			if i := slices.IndexFunc(ns, func(n *state.Network) bool {
				// An internal network serves where an open one could:
				// keep it rather than roll its members.
				return Trusted(n) && n.Labels[v1.LabelPurpose] == v1.PurposePolicy && n.Labels[v1.LabelOwner] == cand.owner && (n.Internal || !internal) && c.usable(n, g.members)
			}); i >= 0 {
				pick, internal = cand, ns[i].Internal
				break
			}
		}
		if !free(pick) {
			// Every name it could have is another group's: one network
			// per name, or the two groups would merge.
			names := []string{pick.name}
			for _, m := range g.members {
				names = append(names, c.services[m].Name)
			}
			pick.name = BoundedName(pick.name, "", true, names)
		}
		c.addNetwork(pick.owner, v1.PurposePolicy, pick.name, internal, g.members)
	}
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// isolatedServices settles what each isolated service keeps: its policies,
// published ports and outside access. It returns, by position, which need a
// gateway: those that keep outside access or publish a port (a task on
// internal networks only has neither).
func (c *compiler) isolatedServices(policies map[string]*v1.Policy) []bool {
	gateway := make([]bool, len(c.services))
	for i, s := range c.services {
		if !c.isolated[i] {
			continue
		}
		ds := c.desiredService(i)
		ds.Isolated = true
		ds.Policies = slices.Clone(c.selectedBy[i])
		slices.Sort(ds.Policies)
		var admit map[string]*Admission // most services publish nothing
		for _, name := range ds.Policies {
			spec := &policies[name].Network.Spec
			if !spec.AllowsOutside() {
				ds.Outside = false
			}
			for _, pp := range spec.Publish {
				key := PortKey(uint32(pp.Port), string(pp.EffectiveProtocol()))
				if admit == nil {
					admit = map[string]*Admission{}
				}
				if admit[key] == nil {
					admit[key] = &Admission{Log: v1.PortLogNone}
				}
				admit[key].add(pp)
				if ds.Publish == nil {
					ds.Publish = map[string]v1.PublishMode{}
				}
				// Host wins when two policies disagree: it keeps the
				// service off the shared ingress network.
				if ds.Publish[key] != v1.PublishModeHost {
					ds.Publish[key] = pp.EffectiveMode()
				}
			}
		}
		// The ports the service publishes, now or before its isolation.
		has := map[string]bool{}
		for _, p := range s.Ports {
			has[PortKey(p.PublishedPort, string(p.Protocol))] = true
		}
		if original, _, _ := c.records.Of(s, c.resolve); original != nil {
			for _, p := range original.Ports {
				has[PortKey(p.PublishedPort, string(p.Protocol))] = true
			}
		}
		publishes := false
		for key := range ds.Publish {
			publishes = publishes || has[key]
		}
		for key, a := range admit {
			// A policy's publish list names ports for all it selects:
			// the agent restricts a port for the service that has it.
			if has[key] && (!a.Any || a.Log != v1.PortLogNone) {
				if ds.Admit == nil {
					ds.Admit = map[string]*Admission{}
				}
				ds.Admit[key] = a
			}
		}
		if !ds.Outside && publishes {
			c.out.Notes = append(c.out.Notes, fmt.Sprintf(
				"%s publishes a port, which needs a gateway, so it keeps outside access although policy egress rules deny it", s.Name))
		}
		gateway[i] = ds.Outside || publishes
	}
	return gateway
}

// serviceNetworks gives each isolated service what its policy networks do
// not: a gateway network of its own when it needs one and none of its
// networks is open, and a network of its own when it has none at all (off
// the default bridge).
func (c *compiler) serviceNetworks(gateway []bool) {
	for i, s := range c.services {
		if !c.isolated[i] {
			continue
		}
		ds := c.desiredService(i)
		open := slices.ContainsFunc(ds.Networks, func(n string) bool { return !c.out.Networks[n].Internal })
		switch {
		case gateway[i] && !open:
			c.addNetwork("", v1.PurposeEgress, serviceNetworkName(s.Name, suffixEgress), false, []int{i})
		case len(ds.Networks) == 0:
			c.addNetwork("", v1.PurposeIsolated, serviceNetworkName(s.Name, suffixIsolated), true, []int{i})
		}
	}
	for _, ds := range c.out.Services {
		slices.Sort(ds.Networks)
	}
}

// PortKey names a published port as "port/protocol", tcp by default.
func PortKey(port uint32, protocol string) string {
	if protocol == "" {
		protocol = string(v1.ProtocolTCP)
	}
	return fmt.Sprintf("%d/%s", port, protocol)
}

// policyNetworkName is deterministic and readable. Names that would be too
// long, or ambiguous because a part holds the separator, end in a hash of
// their parts instead.
func policyNetworkName(policy string, services ...string) string {
	parts := append([]string{policy}, services...)
	ambiguous := slices.ContainsFunc(parts, func(p string) bool { return strings.Contains(p, nameSeparator) })
	return BoundedName(prefixPolicy+strings.Join(parts, nameSeparator), "", ambiguous, parts)
}

func serviceNetworkName(service, suffix string) string {
	return BoundedName(prefixService+service, suffix, false, []string{service, suffix})
}

// BoundedName appends suffix to name within Swarm's name limit; names that
// would be too long, or ambiguous, end in a hash of parts instead.
func BoundedName(name, suffix string, ambiguous bool, parts []string) string {
	if len(name)+len(suffix) <= maxNameLen && !ambiguous {
		return name + suffix
	}
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	tail := suffix + "-" + hex.EncodeToString(sum[:])[:10]
	keep := min(len(name), maxNameLen-len(tail))
	return strings.TrimRight(name[:keep], "-_") + tail
}

// SortedNetworks returns the desired networks in name order.
func (d *Desired) SortedNetworks() []*DesiredNetwork {
	out := make([]*DesiredNetwork, 0, len(d.Networks))
	for _, n := range d.Networks {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *DesiredNetwork) int { return cmp.Compare(a.Name, b.Name) })
	return out
}
