package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/state"
)

// ErrMigrationBlocked marks a migration that cannot go on until the
// operator acts (a container attached outside any service, a service that
// opts out, a network recreated by someone else). It stops where every
// service still shares a network.
var ErrMigrationBlocked = errors.New("migration blocked")

// Defaults of a Migrator.
const (
	defaultConvergeTimeout = 5 * time.Minute
	defaultMigrateRemove   = time.Minute
	defaultMigratePoll     = 500 * time.Millisecond
	// firstPoll starts the checks fast: most waits are short.
	firstPoll = 10 * time.Millisecond
)

// Migrator moves the services of unencrypted overlay networks that
// encryption policies select onto encrypted networks of the same name, one
// write at a time, reading Swarm again after each, so that a migration
// killed at any point is finished (or rolled back) by the next run.
type Migrator struct {
	Docker dockerapi.API
	Store  *state.Store
	Log    *slog.Logger
	// MaxServiceUpdates caps the service updates of one run; the rest wait
	// for the next run. 0 means no cap.
	MaxServiceUpdates int
	// ConvergeTimeout bounds the wait for one service's rolling update.
	ConvergeTimeout time.Duration
	// RemoveWait bounds how long a network removal retries while tasks
	// being replaced still hold the network.
	RemoveWait time.Duration
	// Poll is the longest interval of convergence and removal checks,
	// which start at 10ms and back off.
	Poll time.Duration
	// Progress, when set, sees every write once it is made.
	Progress func(MigrationProgress)

	updates int
}

// MigrationProgress is one write of a migration.
type MigrationProgress struct {
	Network string
	// Step is the step number, 1..Steps.
	Step  int
	Steps int
	// Rollback is set while an interrupted migration is being undone.
	Rollback bool
	// Service is the service updated, if any; Done of Total services have
	// been through this step, this one included.
	Service     string
	Done, Total int
	// What describes the write.
	What string
}

// MigrationReport says what a run did to each network.
type MigrationReport struct {
	Networks []NetworkMigration
	// Updates counts the service updates written.
	Updates int
}

// Wrote reports whether the run changed anything in Swarm.
func (r *MigrationReport) Wrote() bool {
	for _, n := range r.Networks {
		if n.Writes > 0 {
			return true
		}
	}
	return false
}

// NetworkMigration is the outcome of one network's migration in a run.
type NetworkMigration struct {
	Name string
	// Outcome is configured (migrated or rolled back), unchanged, pending
	// (limits reached or a network still held by tasks: the next run goes
	// on) or failed (Err says why; ErrMigrationBlocked when the operator
	// must act).
	Outcome Outcome
	// Step is the last step written.
	Step   int
	Writes int
	Detail string
	Err    error
	// Duration is the run's time on this network, waits included.
	Duration time.Duration
}

// Migrate runs the migrations enforce-mode encryption policies ask for and
// finishes or rolls back interrupted ones, within the pass's limits. In
// audit mode it writes nothing.
func (r *Reconciler) Migrate(ctx context.Context) (*MigrationReport, error) {
	if r.Mode == ModeAudit {
		return &MigrationReport{}, nil
	}
	return r.migrator().Run(ctx)
}

func (r *Reconciler) migrator() *Migrator {
	return &Migrator{
		Docker: r.Docker, Store: r.Store, Log: r.Log,
		MaxServiceUpdates: r.Limits.MaxServiceUpdates, RemoveWait: max(r.RemoveWait, defaultMigrateRemove),
	}
}

// Run observes Swarm and drives every migration as far as it can.
func (mg *Migrator) Run(ctx context.Context) (*MigrationReport, error) {
	if err := Observe(ctx, mg.Docker, mg.Store); err != nil {
		return nil, err
	}
	var (
		ms  []*migration
		err error
	)
	mg.Store.View(func(tx state.ReadTx) { ms, _, _, err = findMigrations(tx, policyEnforced) })
	if err != nil {
		return nil, err
	}
	mg.updates = 0
	rep := &MigrationReport{}
	for _, m := range ms {
		if !m.started() && !m.enforced {
			continue // audit only
		}
		if ctx.Err() != nil || mg.budgetSpent() {
			rep.Networks = append(rep.Networks, NetworkMigration{Name: m.name, Outcome: OutcomePending,
				Detail: "waits for the next pass"})
			continue
		}
		rep.Networks = append(rep.Networks, mg.migrate(ctx, m.name))
	}
	rep.Updates = mg.updates
	return rep, nil
}

func (mg *Migrator) budgetSpent() bool {
	return mg.MaxServiceUpdates > 0 && mg.updates >= mg.MaxServiceUpdates
}

// migrate drives one network's migration: observe, take the next step,
// wait for it, observe again.
func (mg *Migrator) migrate(ctx context.Context, name string) NetworkMigration {
	start := time.Now()
	nm := NetworkMigration{Name: name}
	finish := func(o Outcome, detail string, err error) NetworkMigration {
		nm.Outcome, nm.Detail, nm.Err, nm.Duration = o, detail, err, time.Since(start)
		if err != nil {
			nm.Err = fmt.Errorf("migrate network %s: %w", name, err)
		}
		return nm
	}
	var last string // the last step written, to catch one that changes nothing
	settled, rolledBack := false, false
	done := func() NetworkMigration {
		if rolledBack {
			return finish(outcomeOf(nm.Writes), "rolled back: no enforce-mode policy selects it any more", nil)
		}
		return finish(outcomeOf(nm.Writes), "", nil)
	}
	for {
		m, err := mg.load(name)
		if err != nil {
			return finish(OutcomeFailed, "", err)
		}
		if m == nil {
			return done()
		}
		st := m.next()
		switch st.kind {
		case kindDone:
			return done()
		case kindBlocked:
			return finish(OutcomeFailed, st.why, fmt.Errorf("%w: %s", ErrMigrationBlocked, st.why))
		}
		if !settled && m.started() {
			// A run killed during a rolling update left tasks on their
			// way: the next detach is safe only once they arrived.
			settled = true
			if err := mg.settle(ctx, m); err != nil {
				return finish(OutcomeFailed, "", err)
			}
			if err := Observe(ctx, mg.Docker, mg.Store); err != nil {
				return finish(OutcomeFailed, "", err)
			}
			continue
		}
		what := m.describe(st)
		if what == last {
			if st.kind == kindCreateNetwork {
				// The name is taken by a network without the labels of
				// this migration.
				return finish(OutcomeFailed, what, fmt.Errorf("%w: %s: a network of that name exists that swarmsec did not create; rename or remove it",
					ErrMigrationBlocked, what))
			}
			return finish(OutcomeFailed, what, fmt.Errorf("%s made no difference in Swarm", what))
		}
		if (st.kind == kindAttach || st.kind == kindDetach) && mg.budgetSpent() {
			return finish(OutcomePending, fmt.Sprintf("stopped at %s: --max-service-updates=%d reached; the next pass goes on", what, mg.MaxServiceUpdates), nil)
		}
		wrote, pending, err := mg.advance(ctx, m, st, what)
		if wrote {
			nm.Writes++
			nm.Step = st.num
		}
		switch {
		case err != nil:
			return finish(OutcomeFailed, what, err)
		case pending != "":
			return finish(OutcomePending, pending, nil)
		}
		last = what
		rolledBack = rolledBack || st.rollback
	}
}

// advance writes one step, waits until Swarm has carried it out, and
// observes again.
func (mg *Migrator) advance(ctx context.Context, m *migration, st step, what string) (wrote bool, pending string, err error) {
	mg.logger().Info(fmt.Sprintf("migrate network %s: %s", m.name, what))
	wrote, pending, err = mg.write(ctx, m, st)
	if wrote {
		mg.progress(m, st, what)
	}
	if err != nil || pending != "" {
		return wrote, pending, err
	}
	if st.service != nil && wrote {
		if err := mg.waitConverged(ctx, st.service.ID, st.service.Name); err != nil {
			return wrote, "", err
		}
	}
	return wrote, "", Observe(ctx, mg.Docker, mg.Store)
}

func outcomeOf(writes int) Outcome {
	if writes > 0 {
		return OutcomeConfigured
	}
	return OutcomeUnchanged
}

// load finds the migration of a network in the store; nil when there is
// none (any more).
func (mg *Migrator) load(name string) (*migration, error) {
	var (
		ms  []*migration
		err error
	)
	mg.Store.View(func(tx state.ReadTx) { ms, _, _, err = findMigrations(tx, policyEnforced) })
	for _, m := range ms {
		if m.name == name {
			return m, err
		}
	}
	return nil, err
}

// settle waits until every service of a migration runs its current spec.
func (mg *Migrator) settle(ctx context.Context, m *migration) error {
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
			if err := mg.waitConverged(ctx, s.ID, s.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

func (mg *Migrator) progress(m *migration, st step, what string) {
	if mg.Progress == nil {
		return
	}
	p := MigrationProgress{Network: m.name, Step: st.num, Steps: migrationSteps, Rollback: st.rollback, What: what}
	if st.rollback {
		p.Steps = 3
	}
	if st.service != nil {
		p.Service, p.Done, p.Total = st.service.Name, st.done+1, st.total
	}
	mg.Progress(p)
}

func (mg *Migrator) logger() *slog.Logger {
	if mg.Log == nil {
		return slog.Default()
	}
	return mg.Log
}

func (mg *Migrator) poll() time.Duration {
	if mg.Poll <= 0 {
		return defaultMigratePoll
	}
	return mg.Poll
}
