//go:build integration

package integration

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/manifest"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
	"github.com/swarmsec/swarmsec/tools/adopt"
)

// TestInitFromClusterKeepsReachability: two stacks of several services,
// one network shared across them; the manifests `init --from-cluster`
// writes validate, and applying them keeps the reachability matrix, probed
// before and after, while the stack networks get encrypted.
func TestInitFromClusterKeepsReachability(t *testing.T) {
	ctx := context.Background()
	cli := engine(ctx, t)
	a := deployApp(ctx, t, cli, 28096, "api", "db", "web")
	b := deployApp(ctx, t, cli, 28098, "x", "y")
	shared := a.stack + "-shared"
	swarmtest.CreateNetwork(ctx, t, cli, shared)
	sharedNet, err := cli.NetworkInspect(ctx, shared, network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{a.svc("api"), b.svc("x")} {
		if err := updateService(ctx, cli, s, func(spec *swarm.ServiceSpec) {
			spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: sharedNet.ID})
		}); err != nil {
			t.Fatal(err)
		}
	}
	all := slices.Concat(a.services, b.services)
	for _, s := range all {
		swarmtest.WaitServiceConverged(ctx, t, cli, s)
	}
	sharing := func(from, to string) bool {
		_, fa := serviceNetworks(ctx, t, cli, from)
		_, fb := serviceNetworks(ctx, t, cli, to)
		return slices.ContainsFunc(fa, func(n string) bool { return slices.Contains(fb, n) })
	}
	before := map[[2]string]bool{}
	for _, x := range all {
		for _, y := range all {
			before[[2]string{x, y}] = x == y || sharing(x, y)
		}
	}
	expect := func(from, to string) bool { return before[[2]string{from, to}] }
	swarmtest.CheckMatrixByRows(ctx, t, all, all, expect, swarmtest.ServiceRowProbe(cli))

	scope := scopedAPI{API: cli, stacks: []string{a.stack, b.stack}}
	st := state.New()
	if err := observe.Observe(ctx, scope, st); err != nil {
		t.Fatal(err)
	}
	var files map[string][]byte
	st.View(func(tx state.ReadTx) { files, err = adopt.Files(tx, "") })
	if err != nil {
		t.Fatal(err)
	}
	var objs []v1.Policy
	for name, body := range files {
		o, errs := manifest.DecodeFile(name, body)
		if len(errs) > 0 {
			t.Fatalf("%s: %v\n%s", name, errs, body)
		}
		objs = append(objs, o...)
		t.Logf("%s:\n%s", name, body)
	}
	removeRecords(ctx, t, cli, a)
	removeRecords(ctx, t, cli, b)
	r := &reconcile.Reconciler{Docker: scope, Store: state.New(), Mode: reconcile.ModeEnforce,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)), Limits: plan.DefaultLimits,
		ProgressDelay: 200 * time.Millisecond, PendingDelay: time.Second}
	if err := r.SetPolicies(state.Policies(objs)); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if _, _, err := r.Converge(cctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range all {
		swarmtest.WaitServiceConverged(ctx, t, cli, s)
	}
	swarmtest.CheckMatrixByRows(ctx, t, all, all, expect, swarmtest.ServiceRowProbe(cli))
	for _, net := range []string{a.net, b.net} {
		n, err := cli.NetworkInspect(ctx, net, network.InspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := n.Options["encrypted"]; !ok {
			t.Errorf("%s is not encrypted after the apply", net)
		}
	}
	// Leave the stacks as declared.
	_ = r.SetPolicies(nil)
	if _, _, err := r.Converge(cctx, nil); err != nil {
		t.Errorf("restore: %v", err)
	}
}
