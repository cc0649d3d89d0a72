package migrate

import (
	"fmt"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/state"
)

// Report is what the migrations of a pass plan.
type Report struct {
	// Updates counts the service updates planned.
	Updates int
	// Waiting says, by network, why a migration waits (a rolling update
	// on its way, the policy changes of its services first, the blast
	// radius): the pass should look again soon.
	Waiting map[string]string
	// Blocked holds, by network and wrapping plan.ErrBlocked, the
	// migrations that cannot go on until the operator acts.
	Blocked map[string]error
}

// Plan adds the migrations to p: one migrate-network action per network,
// carrying the writes this pass can make within budget service updates (0:
// no cap), and the ingress network, which is only ever reported. It keeps
// p's NetworkPolicy actions off a migration in progress, and starts no
// migration while the policies still change one of its services: those
// changes go first, and a network they empty is then replaced without a
// single rolling update. With audit set, or for networks only audit-mode
// policies select, it plans nothing to write.
func Plan(tx State, p *plan.Plan, audit bool, budget int) (Report, error) {
	rep := Report{Waiting: map[string]string{}, Blocked: map[string]error{}}
	ms, ingress, notes, err := find(tx)
	if err != nil {
		return rep, err
	}
	changing := map[string]bool{} // services with NetworkPolicy updates
	for _, a := range p.Actions {
		if a.Kind == plan.ActionUpdateService && !a.Audit {
			changing[a.ID] = true
		}
	}
	if err := keepPolicyOffMigrations(tx, p, ms, &notes); err != nil {
		return rep, err
	}

	for _, m := range ms {
		a := plan.Action{Kind: plan.ActionMigrateNetwork, Name: m.name, Policies: m.policies, Audit: audit}
		if m.old != nil {
			a.ID = m.old.ID
		}
		if !m.started() {
			a.Audit = a.Audit || !m.enforced
			a.Reasons = startReasons(m, budget)
		}
		st := m.next()
		switch {
		case a.Audit:
		case !m.started() && slices.ContainsFunc(m.users[m.old.ID], func(s *state.Service) bool { return changing[s.ID] }):
			rep.Waiting[m.name] = "waits for the policy changes of its services"
			a.Reasons = append(a.Reasons, "waits until the policy changes of its services are written")
		case st.kind == kindBlocked:
			rep.Blocked[m.name] = fmt.Errorf("migrate network %s: %w: %s", m.name, plan.ErrBlocked, st.why)
			a.Reasons = append(a.Reasons, m.describe(st))
		case st.kind == kindWait:
			rep.Waiting[m.name] = st.why
			a.Reasons = append(a.Reasons, m.describe(st))
		case st.kind != kindDone:
			a.Steps = m.steps(st, budget-rep.Updates, budget > 0)
			for _, s := range a.Steps {
				if s.Kind == plan.ActionUpdateService {
					rep.Updates++
				}
			}
			if m.started() {
				a.Reasons = []string{resumeReason(m, st)}
			}
			if len(a.Steps) == 0 {
				rep.Waiting[m.name] = "--max-service-updates reached; the next pass goes on"
				a.Reasons = append(a.Reasons, "stopped at "+m.describe(st)+": --max-service-updates reached; the next pass goes on")
			}
		}
		p.Actions = append(p.Actions, a)
	}
	if ingress != nil {
		p.Actions = append(p.Actions, ingressAction(ingress))
	}
	p.Notes = append(p.Notes, notes...)
	slices.Sort(p.Notes)
	p.Notes = slices.Compact(p.Notes)
	return rep, nil
}

// steps turns a step into the writes of this pass: one network operation,
// or a wave of service updates (at most budget when capped).
func (m *migration) steps(st step, budget int, capped bool) []plan.Step {
	what := m.describe(st)
	switch st.kind {
	case kindCreateNetwork:
		if st.num == stepCreateTemp {
			opts := m.tempOptions()
			return []plan.Step{{Kind: plan.ActionCreateNetwork, Name: TempName(m.name), What: what, Create: &opts, Guard: m.old.ID}}
		}
		opts := m.newOptions()
		return []plan.Step{{Kind: plan.ActionCreateNetwork, Name: m.name, What: what, Create: &opts}}
	case kindRemoveNetwork:
		return []plan.Step{{Kind: plan.ActionRemoveNetwork, Name: st.network.Name, ID: st.network.ID, What: what}}
	}
	services := st.services
	if capped {
		services = services[:min(len(services), max(budget, 0))]
	}
	out := make([]plan.Step, 0, len(services))
	for i, s := range services {
		nets := slices.Clone(s.Networks)
		if st.kind == kindAttach {
			// The service keeps its aliases (a stack's short names) and
			// driver options on the network that replaces the one it leaves.
			att := swarm.NetworkAttachmentConfig{Target: st.network.ID}
			if j := onNetwork(nets, st.from); j >= 0 {
				att.Aliases, att.DriverOpts = nets[j].Aliases, nets[j].DriverOpts
			}
			nets = append(nets, att)
		} else if j := onNetwork(nets, st.network); j >= 0 {
			nets = slices.Delete(nets, j, j+1)
		}
		t := plan.Target{Ports: s.Ports, Original: s.Labels[v1.LabelOriginal]}
		for _, a := range nets {
			t.Networks = append(t.Networks, plan.Attachment{Network: a.Target, ID: a.Target, Aliases: a.Aliases, DriverOpts: a.DriverOpts})
		}
		verb := "attach %s to %s"
		if st.kind == kindDetach {
			verb = "detach %s from %s"
		}
		out = append(out, plan.Step{
			Kind: plan.ActionUpdateService, Name: s.Name, ID: s.ID,
			What:    fmt.Sprintf("%s "+verb+" (%d of %d services done)", st.prefix(), st.network.Name, s.Name, st.done+i, st.total),
			Service: &plan.ServiceChange{Version: s.Version, Target: t, Owned: plan.OwnedOf(s.Spec)},
		})
	}
	return out
}

func startReasons(m *migration, budget int) []string {
	users := m.users[m.old.ID]
	reasons := []string{fmt.Sprintf(
		"unencrypted overlay selected by %s: replace it with an encrypted network of the same name, keeping its labels, internal/attachable flags, driver options and subnet",
		strings.Join(m.policies, ", "))}
	if len(users) == 0 {
		return append(reasons, "no service uses it")
	}
	updates := UpdatesPerService * len(users)
	what := fmt.Sprintf("its %d services in four waves", len(users))
	if len(users) == 1 {
		what = "its service"
	}
	reasons = append(reasons, fmt.Sprintf(
		"move %s through temporary network %s, so they always share a network (%d service updates, each a rolling update): %s",
		what, TempName(m.name), updates, servicesOf(users)))
	if budget > 0 && updates > budget {
		reasons = append(reasons, fmt.Sprintf(
			"--max-service-updates=%d: it takes more passes, each stopping where the services share a network", budget))
	}
	return reasons
}

func resumeReason(m *migration, st step) string {
	if st.rollback {
		return fmt.Sprintf("roll back the interrupted migration: no enforce-mode policy selects %s any more; next: %s", m.name, m.describe(st))
	}
	return "migration in progress; next: " + m.describe(st)
}

// ingressAction reports the ingress network: replacing it means removing
// every service that publishes through it first, which is the operator's
// call, never swarmsec's.
func ingressAction(m *migration) plan.Action {
	return plan.Action{
		Kind: plan.ActionMigrateNetwork, Name: m.name, ID: m.old.ID, Policies: m.policies, Audit: true,
		Reasons: []string{
			"the ingress network is not encrypted and is never migrated automatically: it can only be replaced once no service publishes a port through the routing mesh",
			"1. remove every service that publishes a port in ingress mode, or switch its ports to host mode (docker service update --publish-rm/--publish-add mode=host,...)",
			"2. docker network rm " + m.name,
			"3. docker network create --driver overlay --ingress --opt encrypted [--subnet/--gateway as before] " + m.name,
			"4. deploy the services again (or switch their ports back to ingress mode)",
		},
	}
}

// keepPolicyOffMigrations drops the NetworkPolicy actions on the services
// and networks of a migration in progress: the temporary network is
// managed, so the policy diff would detach and remove it, and a service
// restored meanwhile could miss a network that is briefly gone.
func keepPolicyOffMigrations(tx State, p *plan.Plan, ms []*migration, notes *[]string) error {
	// Temporary networks by ID and name, and the networks being migrated,
	// each to the name of the network being migrated.
	temps, names := map[string]string{}, map[string]string{}
	for _, m := range ms {
		if m.started() {
			temps[m.temp.ID], temps[m.temp.Name] = m.name, m.name
			names[m.name] = m.name
		}
	}
	if len(temps) == 0 {
		return nil
	}
	records, err := compile.LoadRecords(tx)
	if err != nil {
		return fmt.Errorf("records: %w", err)
	}
	resolve := compile.Resolver(tx)
	original := func(s *state.Service) *compile.Original {
		o, _, _ := records.Of(s, resolve) // a record that does not parse names no network
		return o
	}
	kept := p.Actions[:0]
	for _, a := range p.Actions {
		switch {
		case a.Kind == plan.ActionRemoveNetwork && temps[a.ID] != "":
			continue
		case a.Kind == plan.ActionUpdateService:
			if n := migrating(tx.Service(a.ID), original, temps, names); n != "" {
				*notes = append(*notes, fmt.Sprintf("service %s: its policy changes wait for the migration of network %s to finish", a.Name, n))
				continue
			}
		}
		kept = append(kept, a)
	}
	p.Actions = kept
	return nil
}

// migrating names the migration a service takes part in: it is on a
// temporary network, or its recorded original networks name one being
// migrated.
func migrating(s *state.Service, original func(*state.Service) *compile.Original, temps, names map[string]string) string {
	if s == nil {
		return ""
	}
	for _, a := range s.Networks {
		if n, ok := temps[a.Target]; ok {
			return n
		}
	}
	if o := original(s); o != nil {
		for _, a := range o.Networks {
			if n, ok := names[a.Name]; ok {
				return n
			}
		}
	}
	return ""
}
