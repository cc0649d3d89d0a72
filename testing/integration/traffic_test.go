//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/swarmsec/agent/flows"
	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/manifest"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/reconciler/traffic"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
	"github.com/swarmsec/swarmsec/tools/adopt"
)

// TestPoliciesFromTrafficKeepEveryFlowSeen: a stack of three services on
// one network (everyone may reach everyone); traffic web -> api and
// api -> db, never web -> db. The agent's flow watcher, run in this
// process against this node's engine, reads it from conntrack inside the
// tasks' namespaces; its report, as the agent would log it, is read back
// as the leader reads the agents' logs; the manifests init --from-traffic
// writes validate, and once applied every flow seen still connects while
// web and db share no network any more.
func TestPoliciesFromTrafficKeepEveryFlowSeen(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("entering the tasks' network namespaces needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	cli := engine(ctx, t)
	a := deployApp(ctx, t, cli, 28112, "web", "api", "db")
	web, api, db := a.svc("web"), a.svc("api"), a.svc("db")
	probe := swarmtest.ServiceProbe(cli)
	drive := func() {
		t.Helper()
		for _, p := range [][2]string{{web, api}, {api, db}, {web, api}} {
			swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
				ok, out, err := probe(ctx, p[0], p[1])
				return ok && err == nil, fmt.Sprintf("%s -> %s: %v %s", p[0], p[1], err, out)
			})
		}
	}
	drive()
	t.Logf("deployed and driven in %s", time.Since(start).Round(100*time.Millisecond))

	// The agent's watcher, as `swarmsec agent` runs it, logging JSON.
	var logs bytes.Buffer
	host, _ := os.Hostname()
	w := &flows.Watcher{Docker: cli, ProcRoot: "/proc", Agg: &flows.Aggregator{}, Node: host, Log: slog.New(slog.NewJSONHandler(&logs, nil))}
	if err := w.Read(ctx, time.Now()); err != nil {
		t.Logf("some tasks not read: %v", err) // other tests' tasks may come and go
	}
	for _, l := range w.Flush(time.Now()) {
		w.Log.Info(agentv1.FlowsMessage, agentv1.FlowsKey, l)
	}
	// The leader reads the agent service's logs with timestamps and
	// details; the node ID is Swarm's.
	info, err := cli.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var lines strings.Builder
	sc := bufio.NewScanner(&logs)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fmt.Fprintf(&lines, "%s com.docker.swarm.node.id=%s,com.docker.swarm.service.id=agent %s\n", time.Now().UTC().Format(time.RFC3339Nano), info.Swarm.NodeID, sc.Text())
	}
	obs, err := traffic.Parse(strings.NewReader(lines.String()), start.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	var mine []traffic.Flow
	seen := map[string]bool{}
	for _, f := range obs.Flows {
		if strings.HasPrefix(f.Source, a.stack) || strings.HasPrefix(f.Destination, a.stack) {
			mine = append(mine, f)
			seen[f.From()+" -> "+f.Target()] = true
			t.Logf("observed %s -> %s: %d connections", f.From(), f.Target(), f.Connections)
		}
	}
	port := swarmtest.AppPort
	for _, want := range []string{fmt.Sprintf("%s -> %s:%d/tcp", web, api, port), fmt.Sprintf("%s -> %s:%d/tcp", api, db, port)} {
		if !seen[want] {
			t.Errorf("flow %s not observed; seen %v", want, seen)
		}
	}
	for k := range seen {
		if strings.HasPrefix(k, web+" -> "+db) || strings.HasPrefix(k, db+" -> ") || strings.Contains(k, " -> "+web+":") {
			t.Errorf("a flow never driven was observed: %s", k)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// init --from-traffic, for this stack.
	scope := scopedAPI{API: cli, stacks: []string{a.stack}}
	st := state.New()
	if err := observe.Observe(ctx, scope, st); err != nil {
		t.Fatal(err)
	}
	var files map[string][]byte
	st.View(func(tx state.ReadTx) { files, err = adopt.FromTraffic(tx, mine, a.stack, time.Hour) })
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
	if len(objs) != 3 {
		t.Fatalf("%d policies, want one per service", len(objs))
	}
	r := &reconcile.Reconciler{Docker: scope, Store: state.New(), Mode: reconcile.ModeEnforce,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)), Limits: plan.DefaultLimits,
		ProgressDelay: 200 * time.Millisecond, PendingDelay: time.Second}
	if err := r.SetPolicies(state.Policies(objs)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Leave the stack as deployed.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		_ = r.SetPolicies(nil)
		if _, _, err := r.Converge(ctx, nil); err != nil {
			t.Errorf("restore: %v", err)
		}
	})
	// The plan of these manifests cuts none of the flows seen.
	p, err := r.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var cuts []traffic.Cut
	r.Store.View(func(tx state.ReadTx) { cuts, err = traffic.Impact(tx, p.Desired, mine) })
	if err != nil || len(cuts) != 0 {
		t.Fatalf("the generated policies cut %+v (%v)", cuts, err)
	}
	applied := time.Now()
	if _, _, err := r.Converge(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, s := range a.services {
		swarmtest.WaitServiceConverged(ctx, t, cli, s)
	}
	t.Logf("applied in %s", time.Since(applied).Round(100*time.Millisecond))

	// Every flow seen still connects; web and db share no network and do
	// not connect.
	expect := func(from, to string) bool {
		return from == to || seen[fmt.Sprintf("%s -> %s:%d/tcp", from, to, port)] || seen[fmt.Sprintf("%s -> %s:%d/tcp", to, from, port)]
	}
	swarmtest.CheckMatrixByRows(ctx, t, a.services, a.services, expect, swarmtest.ServiceRowProbe(cli))
	_, webNets := serviceNetworks(ctx, t, cli, web)
	_, dbNets := serviceNetworks(ctx, t, cli, db)
	if shared := slices.DeleteFunc(slices.Clone(webNets), func(n string) bool { return !slices.Contains(dbNets, n) }); len(shared) > 0 {
		t.Errorf("web and db, never seen talking, still share %v", shared)
	}
	st = state.New()
	if err := observe.Observe(ctx, scope, st); err != nil {
		t.Fatal(err)
	}
	if err := st.Update(func(tx state.Tx) error { return state.ReplacePolicies(tx, state.Policies(objs)) }); err != nil {
		t.Fatal(err)
	}
	st.View(func(tx state.ReadTx) {
		var d *compile.Desired
		if d, err = compile.Compile(tx, nil); err == nil {
			err = traffic.Judge(tx, d, mine)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range mine {
		if f.Verdict != traffic.Allowed {
			t.Errorf("%s -> %s: %s (%s)", f.From(), f.Target(), f.Verdict, f.Why)
		}
	}
	t.Logf("whole test %s", time.Since(start).Round(100*time.Millisecond))
}
