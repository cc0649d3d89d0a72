package reconciler

import (
	"fmt"
	"slices"
	"strings"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/state"
)

// updatesPerService is what a migration costs each service: attach temp,
// detach old, attach new, detach temp; each a rolling update.
const updatesPerService = 4

// policyEnforced counts a policy as enforced by its own enforcement only;
// the reconciler's mode is applied to the actions afterwards.
func policyEnforced(p *state.Policy) bool { return p.Enforcement() == v1.EnforcementEnforce }

// MigrationActions lists the encryption migrations the store shows, one
// action per network: those to start, those to finish or roll back, and the
// ingress network, which is only ever reported. Actions are Audit when only
// audit-mode policies ask for them or mode is audit.
func MigrationActions(tx state.ReadTx, mode Mode, limits Limits) ([]Action, []string, error) {
	ms, ingress, notes, err := findMigrations(tx, policyEnforced)
	if err != nil {
		return nil, nil, err
	}
	return migrationActions(ms, ingress, mode, limits), notes, nil
}

func migrationActions(ms []*migration, ingress *migration, mode Mode, limits Limits) []Action {
	var out []Action
	for _, m := range ms {
		a := Action{Kind: ActionMigrateNetwork, Name: m.name, Policies: m.policies, Audit: mode == ModeAudit}
		if m.old != nil {
			a.ID = m.old.ID
		}
		if !m.started() {
			a.Audit = a.Audit || !m.enforced
			a.Reasons = startReasons(m, limits)
		} else {
			a.Reasons = []string{resumeReason(m)}
		}
		out = append(out, a)
	}
	if ingress != nil {
		out = append(out, ingressAction(ingress))
	}
	return out
}

func startReasons(m *migration, limits Limits) []string {
	users := m.users[m.old.ID]
	reasons := []string{fmt.Sprintf(
		"unencrypted overlay selected by %s: replace it with an encrypted network of the same name, keeping its labels, internal/attachable flags, driver options and subnet",
		strings.Join(m.policies, ", "))}
	if len(users) == 0 {
		return append(reasons, "no service uses it")
	}
	updates := updatesPerService * len(users)
	what := fmt.Sprintf("its %d services one at a time", len(users))
	if len(users) == 1 {
		what = "its service"
	}
	reasons = append(reasons, fmt.Sprintf(
		"move %s through temporary network %s, so they always share a network (%d service updates, each a rolling update): %s",
		what, tempName(m.name), updates, servicesOf(users)))
	if max := limits.MaxServiceUpdates; max > 0 && updates > max {
		reasons = append(reasons, fmt.Sprintf(
			"--max-service-updates=%d: it takes %d passes, each stopping where the services share a network", max, (updates+max-1)/max))
	}
	return reasons
}

func resumeReason(m *migration) string {
	st := m.next()
	switch {
	case st.kind == kindBlocked:
		return fmt.Sprintf("interrupted migration (temporary network %s) is %s", m.temp.Name, m.describe(st))
	case st.rollback:
		return fmt.Sprintf("roll back the interrupted migration: no enforce-mode policy selects %s any more; next: %s", m.name, m.describe(st))
	}
	return "finish the interrupted migration; next: " + m.describe(st)
}

// ingressAction reports the ingress network: replacing it means removing
// every service that publishes through it first, which is the operator's
// call, never swarmsec's.
func ingressAction(m *migration) Action {
	return Action{
		Kind: ActionMigrateNetwork, Name: m.name, ID: m.old.ID, Policies: m.policies, Audit: true,
		Reasons: []string{
			"the ingress network is not encrypted and is never migrated automatically: it can only be replaced once no service publishes a port through the routing mesh",
			"1. remove every service that publishes a port in ingress mode, or switch its ports to host mode (docker service update --publish-rm/--publish-add mode=host,...)",
			"2. docker network rm " + m.name,
			"3. docker network create --driver overlay --ingress --opt encrypted [--subnet/--gateway as before] " + m.name,
			"4. deploy the services again (or switch their ports back to ingress mode)",
		},
	}
}

// addMigrations adds the migrations to a plan, and keeps the NetworkPolicy
// actions off the services and networks of a migration in progress: the
// temporary network is managed, so the policy diff would detach and remove
// it, and a service restored meanwhile could miss a network that is
// briefly gone.
func addMigrations(tx state.ReadTx, plan *Plan, mode Mode, limits Limits) error {
	ms, ingress, notes, err := findMigrations(tx, policyEnforced)
	if err != nil {
		return err
	}
	actions := migrationActions(ms, ingress, mode, limits)
	// Temporary networks by ID and name, and the networks being migrated,
	// each to the name of the network being migrated.
	temps, names := map[string]string{}, map[string]string{}
	for _, m := range ms {
		if m.started() {
			temps[m.temp.ID], temps[m.temp.Name] = m.name, m.name
			names[m.name] = m.name
		}
	}
	kept := plan.Actions[:0]
	for _, a := range plan.Actions {
		switch {
		case a.Kind == ActionRemoveNetwork && temps[a.ID] != "":
			continue
		case a.Kind == ActionUpdateService:
			if n := migrating(tx, a.ID, temps, names); n != "" {
				notes = append(notes, fmt.Sprintf("service %s: its policy changes wait for the migration of network %s to finish", a.Name, n))
				continue
			}
		}
		kept = append(kept, a)
	}
	plan.Actions = append(kept, actions...)
	plan.Notes = append(plan.Notes, notes...)
	slices.Sort(plan.Notes)
	plan.Notes = slices.Compact(plan.Notes)
	return nil
}

// migrating names the migration a service takes part in: it is on a
// temporary network, or its recorded original networks name one being
// migrated.
func migrating(tx state.ReadTx, id string, temps, names map[string]string) string {
	if len(temps) == 0 {
		return ""
	}
	s := state.GetService(tx, id)
	if s == nil {
		return ""
	}
	for _, a := range s.Networks {
		if n, ok := temps[a.Target]; ok {
			return n
		}
	}
	if o := decodeOriginal(s); o != nil {
		for _, a := range o.Networks {
			if n, ok := names[a.Name]; ok {
				return n
			}
		}
	}
	return ""
}
