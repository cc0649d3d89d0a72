package traffic

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/state"
)

// Drops gives the flows the data path dropped since then (the agents'
// flow records, summed: ReadWithDrops reads them from the same logs as the
// observed flows). Its flows get the verdict Blocked, which Judge keeps.
type Drops func(ctx context.Context, since time.Time) ([]Flow, error)

// Judge sets each flow's verdict under desired, for the services in tx.
func Judge(tx state.ReadTx, desired *compile.Desired, flows []Flow) error {
	services, err := state.FindServices(tx, state.All())
	if err != nil {
		return err
	}
	byName := make(map[string]*state.Service, len(services))
	for _, s := range services {
		byName[s.Name] = s
	}
	for i := range flows {
		if flows[i].Verdict == Blocked {
			continue
		}
		flows[i].Verdict, flows[i].Why = Verdict(desired, byName, &flows[i].Flow)
	}
	return nil
}

// AddDrops merges the agents' flow records (ParseWithDrops) into obs,
// judged already: Blocked ones (what the data path dropped) as flows of
// their own; a would-block one (what an audit-mode policy's log-only
// rules would drop) turns the observed flow of the same key would-block,
// the data path's word being the exact one (ports, directions), or is
// added when none was observed; an allowed one (a rule with log: all) is
// added only when no flow of its key was observed, which counts it
// already. The nodes that reported them count as nodes that reported.
func AddDrops(obs *Observed, drops []Flow) {
	observed := make(map[string]int, len(obs.Flows))
	for i, f := range obs.Flows {
		if f.Verdict != Blocked {
			observed[f.Key()] = i
		}
	}
	for _, d := range drops {
		if d.Verdict == "" {
			d.Verdict = Blocked
		}
		i, seen := observed[d.Key()]
		switch {
		case d.Verdict == Blocked:
			if d.Why == "" {
				d.Why = "the node agent dropped it"
			}
		case seen && d.Verdict == WouldBlock:
			if obs.Flows[i].Verdict != WouldBlock {
				obs.Flows[i].Verdict, obs.Flows[i].Why = WouldBlock, d.Why
			}
			continue
		case seen:
			continue
		}
		obs.Flows = append(obs.Flows, d)
		for _, n := range d.Nodes {
			if !slices.Contains(obs.Nodes, n) {
				obs.Nodes = append(obs.Nodes, n)
			}
		}
	}
	slices.Sort(obs.Nodes)
	Sort(obs.Flows)
}

// Verdict judges one flow: whether the policies of desired let it pass.
func Verdict(desired *compile.Desired, byName map[string]*state.Service, f *agentv1.Flow) (verdict, why string) {
	switch f.Kind {
	case agentv1.FlowService:
		a, b := byName[f.Source], byName[f.Destination]
		if a == nil || b == nil {
			return Unknown, "the Swarm has no service " + map[bool]string{true: f.Source, false: f.Destination}[a == nil] + " any more"
		}
		if !isolated(desired, a) && !isolated(desired, b) {
			return Allowed, "no policy isolates either"
		}
		if desired.Allowed(a.ID, b.ID) {
			return Allowed, "a policy lets them talk (" + strings.Join(policiesOf(desired, a, b), ", ") + ")"
		}
		return WouldBlock, fmt.Sprintf("no policy lets %s and %s talk: they share no network", a.Name, b.Name)
	case agentv1.FlowExternal:
		a := byName[f.Source]
		if a == nil {
			return Unknown, "the Swarm has no service " + f.Source + " any more"
		}
		ds := desired.Services[a.ID]
		switch {
		case ds == nil || !ds.Isolated:
			return Allowed, "no policy isolates " + a.Name
		case ds.Outside:
			return Allowed, a.Name + " keeps its way outside (" + strings.Join(ds.Policies, ", ") + ")"
		}
		return WouldBlock, fmt.Sprintf("the policies of %s (%s) cut its way outside: Egress without an ipBlock 0.0.0.0/0 or ::/0", a.Name, strings.Join(ds.Policies, ", "))
	case agentv1.FlowPublished:
		b := byName[f.Destination]
		if b == nil {
			return Unknown, "the Swarm has no service " + f.Destination + " any more"
		}
		return published(desired, b, f)
	}
	return Unknown, "a flow of kind " + f.Kind
}

func isolated(d *compile.Desired, s *state.Service) bool {
	ds := d.Services[s.ID]
	return ds != nil && ds.Isolated
}

func policiesOf(d *compile.Desired, ss ...*state.Service) []string {
	var out []string
	for _, s := range ss {
		if ds := d.Services[s.ID]; ds != nil {
			for _, p := range ds.Policies {
				if !strings.Contains(","+strings.Join(out, ",")+",", ","+p+",") {
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// published judges a flow from outside to a task's port: the port must be
// published (a published port whose target is the flow's port) and its
// sources must admit the client's block.
func published(d *compile.Desired, s *state.Service, f *agentv1.Flow) (string, string) {
	ds := d.Services[s.ID]
	if ds == nil || !ds.Isolated {
		return Allowed, "no policy isolates " + s.Name
	}
	proto := f.Protocol
	for _, p := range s.Ports {
		pp := string(p.Protocol)
		if pp == "" {
			pp = string(v1.ProtocolTCP)
		}
		if p.TargetPort != uint32(f.Port) || pp != proto || p.PublishedPort == 0 {
			continue
		}
		key := compile.PortKey(p.PublishedPort, pp)
		if _, ok := ds.Publish[key]; !ok {
			continue
		}
		adm := ds.Admit[key]
		if adm == nil || adm.Any {
			return Allowed, fmt.Sprintf("%s keeps port %s published", s.Name, key)
		}
		if admits(adm.From, f.SourceBlock) {
			return Allowed, fmt.Sprintf("%s keeps port %s published, from %s", s.Name, key, adm.Sources())
		}
		return WouldBlock, fmt.Sprintf("port %s of %s admits only %s (the node agent enforces it)", key, s.Name, adm.Sources())
	}
	return WouldBlock, fmt.Sprintf("the policies of %s (%s) publish no port to %d/%s", s.Name, strings.Join(ds.Policies, ", "), f.Port, proto)
}

// admits reports whether the blocks admit every address of block.
func admits(from []v1.SourceBlock, block string) bool {
	b, err := netip.ParsePrefix(block)
	if err != nil {
		return false
	}
	for _, sb := range from {
		c, err := netip.ParsePrefix(sb.CIDR)
		if err != nil || c.Bits() > b.Bits() || !c.Contains(b.Addr()) {
			continue
		}
		cut := false
		for _, e := range sb.Except {
			if x, err := netip.ParsePrefix(e); err == nil && x.Overlaps(b) {
				cut = true
			}
		}
		if !cut {
			return true
		}
	}
	return false
}
