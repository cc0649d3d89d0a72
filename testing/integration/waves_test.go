//go:build integration

package integration

import (
	"context"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/plan"
)

// On the real engine, a wave ends when its rolling updates do: right after
// the writes the old tasks still run (and the update status is empty until
// Swarm's updater starts), so JudgeWave says not yet; once it says done,
// every service of the wave runs one task at its new networks; and the
// next wave is twice the first.
func TestWavesFollowRollingUpdatesOnRealSwarm(t *testing.T) {
	ctx := context.Background()
	cli := engine(ctx, t)
	a := deployApp(ctx, t, cli, 28280, "web", "api", "db", "cache")
	only := func(app string) v1.NetworkPolicySpec {
		return v1.NetworkPolicySpec{
			ServiceSelector: v1.LabelSelector{MatchLabels: map[string]string{v1.LabelStackNamespace: a.stack, "app": app}},
			Ingress:         []v1.IngressRule{},
		}
	}
	r := newReconciler(cli, t, a, policy(a.stack+"-db", only("db")), policy(a.stack+"-cache", only("cache")), policy(a.stack+"-web", only("web")))
	r.Limits = plan.Limits{MaxServiceUpdates: 1, Force: true}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var sizes []int
	for pass := 1; ; pass++ {
		_, res, err := r.Reconcile(cctx)
		if err != nil {
			t.Fatalf("pass %d: %v", pass, err)
		}
		if res.Writes() > 0 {
			sizes = append(sizes, res.WaveSize)
		}
		if res.RequeueAfter <= 0 {
			break
		}
		if pass > 8 {
			t.Fatal("no end")
		}
		if !r.WaveInFlight() {
			time.Sleep(res.RequeueAfter)
			continue
		}
		if pass == 1 {
			if st, err := r.JudgeWave(cctx); err != nil || st.Done {
				t.Errorf("right after the first wave's writes: %+v, %v (want still rolling)", st, err)
			}
		}
		if _, err := r.AwaitWave(cctx, 100*time.Millisecond); err != nil {
			t.Fatalf("pass %d: %v", pass, err)
		}
		// Done means done: every service of the app runs its spec.
		for _, s := range a.services {
			svc, _, err := cli.ServiceInspectWithRaw(ctx, s, swarm.ServiceInspectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if u := svc.UpdateStatus; u != nil && u.State == swarm.UpdateStateUpdating {
				t.Errorf("after wave %d, %s is still updating", len(sizes), s)
			}
			tasks, err := cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", svc.ID), filters.Arg("desired-state", "running"))})
			if err != nil {
				t.Fatal(err)
			}
			for _, task := range tasks {
				if task.Status.State != swarm.TaskStateRunning || len(task.Spec.Networks) != len(svc.Spec.TaskTemplate.Networks) {
					t.Errorf("after wave %d, %s has task %s %s on %d networks (spec %d)", len(sizes), s, task.ID, task.Status.State, len(task.Spec.Networks), len(svc.Spec.TaskTemplate.Networks))
				}
			}
		}
	}
	if len(sizes) < 2 || sizes[0] != 1 || sizes[1] != 2 {
		t.Errorf("waves of at most %v, want 1 then 2", sizes)
	}
	// End as the other tests do: the policies gone, the services back.
	if err := r.SetPolicies(nil); err != nil {
		t.Fatal(err)
	}
	r.Limits = plan.DefaultLimits
	converge(ctx, t, cli, r, a)
}
