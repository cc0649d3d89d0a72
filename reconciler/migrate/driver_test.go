package migrate

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/apply"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/fake"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

const (
	oldName = policytest.StackNetwork
	tmpName = oldName + tempSuffix
)

// cluster is a fake Swarm carrying an encryption migration, and the
// processes that plan it: each plan is made by a fresh process (an empty
// memdb store filled from what Swarm shows), as after a kill between any
// two passes.
type cluster struct {
	t        *testing.T
	f        *fake.Swarm
	names    []string
	oldID    string
	policies []*v1.Policy
	// budget caps the service updates of a pass (0: no cap).
	budget int
	// store, when set, is one long-lived process's: every plan observes
	// into it instead of starting afresh.
	store *state.Store
}

func newCluster(t *testing.T, services int) *cluster {
	t.Helper()
	f, names := policytest.UnencryptedStack(t, services)
	n, err := f.NetworkInspect(context.Background(), oldName, network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{t: t, f: f, names: names, oldID: n.ID, policies: []*v1.Policy{policytest.ShopEncryption()}}
}

// planned is what one process planned: the store it read and the
// migration of oldName (nil when none is planned).
type planned struct {
	store  *state.Store
	action *plan.Action
	report Report
}

// plan starts a process: a new store, observed from Swarm, and its plan.
func (c *cluster) plan() planned {
	c.t.Helper()
	st := c.store
	if st == nil {
		st = state.New()
	}
	if err := st.Update(func(tx state.Tx) error { return state.ReplacePolicies(tx, c.policies) }); err != nil {
		c.t.Fatal(err)
	}
	if err := observe.Observe(context.Background(), c.f, st, true); err != nil {
		c.t.Fatal(err)
	}
	p := &plan.Plan{}
	var (
		rep Report
		err error
	)
	st.View(func(tx state.ReadTx) { rep, err = Plan(tx, p, false, c.budget) })
	if err != nil {
		c.t.Fatal(err)
	}
	out := planned{store: st, report: rep}
	for i, a := range p.Actions {
		if a.Kind != plan.ActionMigrateNetwork {
			c.t.Fatalf("migrate planned a %s action: %+v", a.Kind, a)
		}
		if a.Name == oldName {
			out.action = &p.Actions[i]
		}
	}
	return out
}

// write carries out the first n steps of a plan (all when n < 0), as the
// writer does, and fails the test when one does not go through.
func (c *cluster) write(pl planned, n int) {
	c.t.Helper()
	if pl.action == nil {
		c.t.Fatal("nothing planned to write")
	}
	a := *pl.action
	if n >= 0 {
		a.Steps = a.Steps[:n]
	}
	w := &apply.Writer{Docker: c.f, Store: pl.store}
	res := w.Apply(context.Background(), []plan.Action{a}, nil)
	for _, ar := range res.Results {
		if ar.Err != nil || ar.Outcome == apply.OutcomePending || ar.Outcome == apply.OutcomeFailed {
			c.t.Fatalf("write %s: %s %v (%s)", ar.Action.Name, ar.Outcome, ar.Err, ar.Detail)
		}
	}
}

// pass plans and writes everything planned: one pass of a new process.
// It returns what was planned.
func (c *cluster) pass() planned {
	c.t.Helper()
	pl := c.plan()
	if pl.action != nil && len(pl.action.Steps) > 0 {
		c.write(pl, -1)
	}
	return pl
}

// passes runs k passes, each of which must write.
func (c *cluster) passes(k int) {
	c.t.Helper()
	for i := range k {
		if pl := c.pass(); pl.action == nil || len(pl.action.Steps) == 0 {
			c.t.Fatalf("pass %d wrote nothing: %s", i+1, describe(pl))
		}
	}
}

// stepOf names what a planned action writes in this pass, as a table
// reads it: "step 2/8 update-service shop_s0 shop_s1", "rollback step
// 3/3 remove-network shop_default-swarmsec-tmp", "none" when it writes
// nothing.
func stepOf(a *plan.Action) string {
	if a == nil || len(a.Steps) == 0 {
		return "none"
	}
	first := a.Steps[0].What
	i := strings.Index(first, "/")
	num := first[:i+2] // "step 2/8", "rollback step 1/3"
	kinds := map[plan.ActionKind]bool{}
	var names []string
	for _, st := range a.Steps {
		if !strings.HasPrefix(st.What, num+" ") {
			return fmt.Sprintf("mixed steps in one pass: %q and %q", first, st.What)
		}
		kinds[st.Kind] = true
		names = append(names, st.Name)
	}
	if len(kinds) != 1 {
		return fmt.Sprintf("mixed kinds in one pass: %v", a.Steps)
	}
	return fmt.Sprintf("%s %s %s", num, a.Steps[0].Kind, strings.Join(names, " "))
}

func describe(pl planned) string {
	if pl.action == nil {
		return "no migration planned"
	}
	return fmt.Sprintf("%s; reasons %q; waiting %q; blocked %v", stepOf(pl.action), pl.action.Reasons, pl.report.Waiting, pl.report.Blocked)
}

// view is what Swarm shows of a migration: the networks of its names that
// exist ("*" marks encrypted ones, "old" the network it started from) and
// the networks of each service, in the same notation.
type view struct {
	nets     string
	services map[string]string
}

func (c *cluster) view() view {
	c.t.Helper()
	ctx := context.Background()
	nets, err := c.f.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	label := map[string]string{}
	var names []string
	for _, n := range nets {
		if n.Name != oldName && n.Name != tmpName {
			continue
		}
		l := n.Name
		if n.ID == c.oldID {
			l = "old"
		}
		if _, ok := n.Options["encrypted"]; ok {
			l += "*"
		}
		label[n.ID] = l
		names = append(names, l)
	}
	slices.Sort(names)
	v := view{nets: strings.Join(names, " "), services: map[string]string{}}
	for _, name := range c.names {
		s, _, err := c.f.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
		if err != nil {
			c.t.Fatal(err)
		}
		var on []string
		for _, a := range s.Spec.TaskTemplate.Networks {
			l, ok := label[a.Target]
			if !ok {
				l = "?" + a.Target
			}
			short := strings.TrimPrefix(name, "shop_")
			if !slices.Equal(a.Aliases, []string{short}) {
				l += fmt.Sprintf("(aliases %v)", a.Aliases)
			}
			on = append(on, l)
		}
		slices.Sort(on)
		v.services[name] = strings.Join(on, " ")
	}
	return v
}

// all says that every service is on nets.
func (c *cluster) all(nets string) map[string]string {
	out := map[string]string{}
	for _, n := range c.names {
		out[n] = nets
	}
	return out
}

// checkView compares what Swarm shows with what a table wants, and that
// every two services share a network in their specs and in the tasks
// Swarm runs.
func (c *cluster) checkView(when, nets string, services map[string]string) {
	c.t.Helper()
	v := c.view()
	if v.nets != nets {
		c.t.Errorf("%s: networks %q, want %q", when, v.nets, nets)
	}
	for _, name := range c.names {
		if v.services[name] != services[name] {
			c.t.Errorf("%s: %s on %q, want %q", when, name, v.services[name], services[name])
		}
	}
	if err := c.sharing(); err != nil {
		c.t.Errorf("%s: %v", when, err)
	}
}

// sharing checks that every two services share a network, in their specs
// and in the tasks Swarm wants running.
func (c *cluster) sharing() error { return policytest.Sharing(c.f, c.names) }

// observeInto reads what Swarm shows into a store, as a pass does.
func observeInto(c *cluster, st *state.Store) error {
	return observe.Observe(context.Background(), c.f, st, true)
}

// dropPolicy removes the encryption policy: what follows is a rollback,
// or, once the old network is gone, the end of the migration.
func (c *cluster) dropPolicy() { c.policies = nil }
