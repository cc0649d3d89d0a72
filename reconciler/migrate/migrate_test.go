package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

// forward is a migration of two services, pass by pass: what each pass
// writes, then the networks Swarm shows and those every service is on.
// "old" is the unencrypted network, "*" marks encrypted ones.
var forward = []struct{ step, nets, on string }{
	{"step 1/8 create-network " + tmpName, "old " + tmpName + "*", "old"},
	{"step 2/8 update-service shop_s0 shop_s1", "old " + tmpName + "*", "old " + tmpName + "*"},
	{"step 3/8 update-service shop_s0 shop_s1", "old " + tmpName + "*", tmpName + "*"},
	{"step 4/8 remove-network " + oldName, tmpName + "*", tmpName + "*"},
	{"step 5/8 create-network " + oldName, oldName + "* " + tmpName + "*", tmpName + "*"},
	{"step 6/8 update-service shop_s0 shop_s1", oldName + "* " + tmpName + "*", oldName + "* " + tmpName + "*"},
	{"step 7/8 update-service shop_s0 shop_s1", oldName + "* " + tmpName + "*", oldName + "*"},
	{"step 8/8 remove-network " + tmpName, oldName + "*", oldName + "*"},
}

// TestStepsInOrder runs a migration in one long-lived process and checks
// every step, in order, and what Swarm shows after it: a step skipped,
// reordered or merged with another fails it. Capped passes write a wave in
// parts, never two steps in one pass.
func TestStepsInOrder(t *testing.T) {
	for _, budget := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("max-service-updates=%d", budget), func(t *testing.T) {
			c := newCluster(t, 2)
			c.budget, c.store = budget, state.New()
			c.checkView("before", "old", c.all("old"))
			for i, want := range forward {
				// A capped wave takes passes; each writes within the cap
				// and the wave's services, in order, once each.
				var got []string
				step := ""
				for len(got) == 0 || (strings.Contains(want.step, "update-service") && len(got) < len(c.names)) {
					f := c.f.Calls()[dockerapi.OpServiceUpdate]
					pl := c.pass()
					s := stepOf(pl.action)
					num, names, _ := strings.Cut(strings.TrimPrefix(s, "step "), " update-service ")
					if !strings.Contains(want.step, "update-service") {
						num, names = s, ""
					}
					if step != "" && num != step {
						t.Fatalf("pass %d: %s before the wave of %s was done", i+1, s, step)
					}
					step = num
					if budget > 0 && c.f.Calls()[dockerapi.OpServiceUpdate]-f > budget {
						t.Errorf("%s: %d service updates, cap %d", s, c.f.Calls()[dockerapi.OpServiceUpdate]-f, budget)
					}
					got = append(got, strings.Fields(names)...)
					if s == "none" {
						t.Fatalf("step %d: %s", i+1, describe(pl))
					}
					if names == "" {
						got = append(got, s)
					}
				}
				if strings.Contains(want.step, "update-service") {
					if joined := "step " + step + " update-service " + strings.Join(got, " "); joined != want.step {
						t.Fatalf("pass for step %d wrote %q, want %q", i+1, joined, want.step)
					}
				} else if got[0] != want.step {
					t.Fatalf("pass for step %d wrote %q, want %q", i+1, got[0], want.step)
				}
				c.checkView(want.step, want.nets, c.all(want.on))
			}
			c.f.ResetCalls()
			if pl := c.pass(); pl.action != nil || c.f.WriteCalls() != 0 {
				t.Errorf("after step 8/8: %s, %d writes", describe(pl), c.f.WriteCalls())
			}
			c.checkReplacement()
		})
	}
}

// checkReplacement checks the end of a migration: the network of the old
// name is encrypted, keeps the old one's labels, flags and options, and
// says where it came from.
func (c *cluster) checkReplacement() {
	c.t.Helper()
	n, err := c.f.NetworkInspect(context.Background(), oldName, network.InspectOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	if _, ok := n.Options["encrypted"]; !ok || n.ID == c.oldID {
		c.t.Errorf("%s (%s, old %s) options %v: not an encrypted replacement", oldName, n.ID, c.oldID, n.Options)
	}
	if n.Labels[v1.LabelStackNamespace] != "shop" || n.Labels["team"] != "payments" || n.Labels[v1.LabelMigratedFrom] != c.oldID {
		c.t.Errorf("labels not kept: %v", n.Labels)
	}
	if !n.Attachable || n.Internal || n.Options["com.docker.network.driver.mtu"] != "1400" {
		c.t.Errorf("flags or options not kept: attachable %t internal %t options %v", n.Attachable, n.Internal, n.Options)
	}
}

// finish runs passes of new processes until one plans nothing to write,
// returning the steps they wrote.
func (c *cluster) finish() []string {
	c.t.Helper()
	var steps []string
	for range 20 {
		pl := c.pass()
		if pl.action == nil || len(pl.action.Steps) == 0 {
			if pl.action != nil && (len(pl.report.Waiting) > 0 || len(pl.report.Blocked) > 0) {
				c.t.Fatalf("stuck: %s", describe(pl))
			}
			return steps
		}
		steps = append(steps, stepOf(pl.action))
	}
	c.t.Fatal("no end after 20 passes")
	return nil
}

// TestResumeAfterStopAtEachStep kills the process after each step (and in
// the middle of each wave, and while a wave still rolls): a new process,
// from what Swarm shows, plans exactly the step that comes next and
// finishes the migration.
func TestResumeAfterStopAtEachStep(t *testing.T) {
	three := func(s string) string { return strings.ReplaceAll(s, "shop_s0 shop_s1", "shop_s0 shop_s1 shop_s2") }
	for k := 0; k <= len(forward); k++ {
		t.Run(fmt.Sprintf("after step %d", k), func(t *testing.T) {
			c := newCluster(t, 3)
			c.passes(k)
			pl := c.plan()
			want := "none"
			if k < len(forward) {
				want = three(forward[k].step)
			}
			if got := stepOf(pl.action); got != want {
				t.Fatalf("resumed after step %d: %s, want %s", k, describe(pl), want)
			}
			if k > 0 && k < len(forward) && !strings.Contains(strings.Join(pl.action.Reasons, "\n"), "migration in progress; next: "+strings.Fields(want)[0]) {
				t.Errorf("reasons %q do not say the migration resumes", pl.action.Reasons)
			}
			c.finish()
			if k < len(forward) {
				c.checkView("finished", oldName+"*", c.all(oldName+"*"))
				c.checkReplacement()
			}
		})
	}

	for k, row := range forward {
		if !strings.Contains(row.step, "update-service") {
			continue
		}
		num := strings.Join(strings.Fields(row.step)[:2], " ")
		t.Run(fmt.Sprintf("in the middle of %s", num), func(t *testing.T) {
			c := newCluster(t, 3)
			c.passes(k)
			c.write(c.plan(), 1) // shop_s0's update only, then the kill
			pl := c.plan()
			if got, want := stepOf(pl.action), num+" update-service shop_s1 shop_s2"; got != want {
				t.Fatalf("resumed: %s, want %s", describe(pl), want)
			}
			if what := pl.action.Steps[0].What; !strings.HasSuffix(what, "(1 of 3 services done)") {
				t.Errorf("first step %q, want 1 of 3 services done", what)
			}
			if err := c.sharing(); err != nil {
				t.Error(err)
			}
			c.finish()
			c.checkView("finished", oldName+"*", c.all(oldName+"*"))
		})
		t.Run(fmt.Sprintf("while %s rolls", num), func(t *testing.T) {
			c := newCluster(t, 3)
			c.passes(k)
			c.f.HoldUpdates(true)
			c.passes(1)
			// The next step must wait until the tasks run the wave:
			// detaching before the attach arrived splits the services.
			pl := c.plan()
			if pl.action == nil || len(pl.action.Steps) != 0 || !strings.Contains(pl.report.Waiting[oldName], "waiting for the rolling update of service shop_s0") {
				t.Fatalf("while the wave rolls: %s", describe(pl))
			}
			c.f.HoldUpdates(false)
			c.f.CompleteUpdates()
			pl = c.plan()
			want := three(forward[k+1].step)
			if got := stepOf(pl.action); got != want {
				t.Fatalf("once the wave ran: %s, want %s", describe(pl), want)
			}
			c.finish()
			c.checkView("finished", oldName+"*", c.all(oldName+"*"))
		})
	}
}

// TestRollback drops the encryption policy at each point before the old
// network is gone: the migration is undone in order (everyone back on the
// old network before anyone leaves the temporary one), the services end
// where they started, aliases kept, and nothing temporary is left.
func TestRollback(t *testing.T) {
	back := func(steps ...string) []string {
		var out []string
		for _, s := range steps {
			out = append(out, "rollback step "+s)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		// passes are the whole passes before the policy goes, and then
		// updates of a partial one.
		passes, updates int
		want            []string
	}{
		{"after step 1", 1, 0, back("3/3 remove-network " + tmpName)},
		{"after step 2", 2, 0, back("2/3 update-service shop_s0 shop_s1", "3/3 remove-network "+tmpName)},
		{"in the middle of step 2", 1, 1, back("2/3 update-service shop_s0", "3/3 remove-network "+tmpName)},
		{"in the middle of step 3", 2, 1, back("1/3 update-service shop_s0", "2/3 update-service shop_s0 shop_s1", "3/3 remove-network "+tmpName)},
		{"after step 3", 3, 0, back("1/3 update-service shop_s0 shop_s1", "2/3 update-service shop_s0 shop_s1", "3/3 remove-network "+tmpName)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 2)
			c.passes(tc.passes)
			if tc.updates > 0 {
				c.write(c.plan(), tc.updates)
			}
			c.dropPolicy()
			pl := c.plan()
			if pl.action == nil || !strings.Contains(strings.Join(pl.action.Reasons, "\n"), "roll back the interrupted migration") {
				t.Fatalf("after the policy went: %s", describe(pl))
			}
			if got := c.finish(); !slices.Equal(got, tc.want) {
				t.Fatalf("rollback:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			c.checkView("rolled back", "old", c.all("old"))
			c.f.ResetCalls()
			if pl := c.pass(); pl.action != nil || c.f.WriteCalls() != 0 {
				t.Errorf("after the rollback: %s, %d writes", describe(pl), c.f.WriteCalls())
			}
		})
	}

	// Once the old network is gone there is nothing to go back to: the
	// migration finishes onto the encrypted replacement.
	t.Run("after step 4", func(t *testing.T) {
		c := newCluster(t, 2)
		c.passes(4)
		c.dropPolicy()
		var want []string
		for _, row := range forward[4:] {
			want = append(want, row.step)
		}
		if got := c.finish(); !slices.Equal(got, want) {
			t.Fatalf("without the policy, after step 4:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		c.checkView("finished", oldName+"*", c.all(oldName+"*"))
		c.checkReplacement()
	})
}

// TestBlocked covers what stops a migration until the operator acts: it
// writes nothing, says why, and (once it started) leaves every service
// sharing a network.
func TestBlocked(t *testing.T) {
	ignore := func(c *cluster) {
		if err := c.f.UpdateService(c.names[1], func(s *swarm.ServiceSpec) { s.Labels[v1.LabelIgnore] = "true" }); err != nil {
			c.t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name   string
		passes int
		setup  func(c *cluster)
		// note is set when the network is only noted (no migration);
		// blocked otherwise.
		note, blocked string
	}{
		{name: "a service opts out", setup: ignore, note: "service shop_s1 opts out"},
		{name: "a service opts out midway", passes: 2, setup: ignore, blocked: "service shop_s1 opts out (swarmsec.io/ignore=true) and is on " + oldName},
		{name: "the temporary name is taken", setup: func(c *cluster) {
			if _, err := c.f.NetworkCreate(context.Background(), tmpName, network.CreateOptions{Driver: "overlay"}); err != nil {
				c.t.Fatal(err)
			}
		}, blocked: "swarmsec did not create"},
		{name: "the name is recreated by someone else", passes: 4, setup: func(c *cluster) {
			if _, err := c.f.NetworkCreate(context.Background(), oldName, network.CreateOptions{Driver: "overlay", Options: map[string]string{"encrypted": ""}}); err != nil {
				c.t.Fatal(err)
			}
		}, blocked: "created again by someone else"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 2)
			c.passes(tc.passes)
			tc.setup(c)
			c.f.ResetCalls()
			pl := c.pass()
			if n := c.f.WriteCalls(); n != 0 {
				t.Errorf("%d writes while blocked", n)
			}
			if err := c.sharing(); err != nil {
				t.Error(err)
			}
			if tc.note != "" {
				if pl.action != nil {
					t.Errorf("planned %s", describe(pl))
				}
				return
			}
			err := pl.report.Blocked[oldName]
			if pl.action == nil || !errors.Is(err, plan.ErrBlocked) || !strings.Contains(err.Error(), tc.blocked) {
				t.Errorf("%s, want blocked: %s", describe(pl), tc.blocked)
			}
		})
	}
}

// TestAuditPlansNothingToWrite: an audit-mode policy, or a pass in audit
// mode, reports the migration and plans no write.
func TestAuditPlansNothingToWrite(t *testing.T) {
	for _, tc := range []struct {
		name        string
		audit       bool
		enforcement v1.Enforcement
	}{{"audit policy", false, v1.EnforcementAudit}, {"audit mode", true, v1.EnforcementEnforce}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, 2)
			st := state.New()
			pol := policytest.EncPol("enc", policytest.Sel("team", "payments"), tc.enforcement)
			if err := st.Update(func(tx state.Tx) error { return state.ReplacePolicies(tx, []*v1.Policy{pol}) }); err != nil {
				t.Fatal(err)
			}
			if err := observeInto(c, st); err != nil {
				t.Fatal(err)
			}
			p := &plan.Plan{}
			var err error
			st.View(func(tx state.ReadTx) { _, err = Plan(tx, p, tc.audit, 0) })
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Actions) != 1 || !p.Actions[0].Audit || len(p.Actions[0].Steps) != 0 {
				t.Errorf("plan: %+v", p.Actions)
			}
		})
	}
}
