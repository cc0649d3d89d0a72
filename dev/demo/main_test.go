package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/manifest"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/fake"
	"github.com/swarmsec/swarmsec/testing/policytest"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// The demo's own manifests, as make demo passes them.
const shopManifests = "../../manifests"

var (
	buildOnce   sync.Once
	swarmsecBin string
	buildErr    error
)

// swarmsecBinary builds ./cmd/swarmsec once per test binary: the wait runs
// the real plan, as the demo does.
func swarmsecBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds swarmsec")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "demo-test-")
		if err != nil {
			buildErr = err
			return
		}
		swarmsecBin = filepath.Join(dir, "swarmsec")
		buildErr = swarmtest.GoBuild(context.Background(), swarmsecBin, "./cmd/swarmsec")
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return swarmsecBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if swarmsecBin != "" {
		os.RemoveAll(filepath.Dir(swarmsecBin))
	}
	os.Exit(code)
}

// converge runs the reconciler on f until nothing is left to do, as the
// demo's controller does on the cluster.
func converge(t *testing.T, f *fake.Swarm, policies []*v1.Policy) {
	t.Helper()
	r := &reconcile.Reconciler{Docker: f, Store: state.New(), Log: slog.New(slog.DiscardHandler), Mode: reconcile.ModeEnforce,
		PendingDelay: time.Millisecond, ProgressDelay: time.Millisecond}
	if err := r.SetPolicies(policies); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, err := r.Converge(ctx, nil); err != nil {
		t.Fatalf("converge: %v", err)
	}
}

func shopPolicies(t *testing.T) []*v1.Policy {
	t.Helper()
	set, err := manifest.Load(shopManifests)
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Errors) > 0 {
		t.Fatal(set.Errors)
	}
	return state.Policies(set.Objects)
}

// demoState writes the cluster state the demo helper reads, with the
// manager's socket, and returns its folder.
func demoState(t *testing.T, managerSocket string) string {
	t.Helper()
	dir := t.TempDir()
	st := State{RunID: "test", Nodes: []NodeState{
		{Hostname: "e2e-manager", ID: "manager", Socket: managerSocket, Manager: true},
		{Hostname: "e2e-worker1", ID: "worker1", Socket: filepath.Join(dir, "no-worker.sock")},
	}}
	if err := writeState(dir, st); err != nil {
		t.Fatal(err)
	}
	return dir
}

func readyz(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// The demo helper's wait runs `swarmsec plan` against the cluster it
// waits for, not the machine's engine that DOCKER_HOST names: here that
// engine holds swarmsec state of its own (plan exits 2 there for ever), or
// is no Swarm at all (plan exits 1 there for ever), and the wait still
// ends as soon as the cluster has converged.
func TestWaitControllerAsksTheCluster(t *testing.T) {
	bin := swarmsecBinary(t)
	policies := shopPolicies(t)

	clusterSwarm, _ := policytest.Shop(t)
	converge(t, clusterSwarm, policies)
	cluster := serveEngine(t, clusterSwarm)

	withRecords, _ := policytest.Shop(t)
	converge(t, withRecords, policytest.ShopPolicies())
	noSwarm := fake.New()
	noSwarm.SetInactive()

	for name, machine := range map[string]*fake.Swarm{"machine holds swarmsec records": withRecords, "machine not a swarm": noSwarm} {
		t.Run(name, func(t *testing.T) {
			ambient := serveEngine(t, machine)
			// Asked directly, the machine's engine would never let the
			// wait end.
			code, out, err := planOnce(context.Background(), bin, shopManifests, ambient.socket)
			if err != nil || code == 0 {
				t.Fatalf("plan against the machine's engine: exit %d, %v, want non-zero:\n%s", code, err, out)
			}
			calls := len(ambient.Calls())

			t.Setenv("DOCKER_HOST", ambient.Host())
			start := time.Now()
			err = runWaitController(context.Background(), []string{
				"--state", demoState(t, cluster.socket), "--url", readyz(t), "--swarmsec", bin,
				"--manifests", shopManifests, "--timeout", "30s", "shop",
			})
			if err != nil {
				t.Fatalf("wait-controller: %v", err)
			}
			t.Logf("the wait ended after %s", time.Since(start).Round(time.Millisecond))
			if got := ambient.Calls()[calls:]; len(got) > 0 {
				t.Errorf("the wait asked the machine's engine: %v", got)
			}
			if !slices.Contains(cluster.Calls(), "GET /info") {
				t.Errorf("plan did not ask the cluster: %v", cluster.Calls())
			}
		})
	}
}

// A cluster that never converges ends the wait at --timeout, saying what
// it waited for, against which engine, and what plan said last.
func TestWaitControllerTimesOut(t *testing.T) {
	bin := swarmsecBinary(t)
	unconverged, _ := policytest.Shop(t)
	cluster := serveEngine(t, unconverged)
	machine := fake.New()
	machine.SetInactive()
	t.Setenv("DOCKER_HOST", serveEngine(t, machine).Host())

	start := time.Now()
	err := runWaitController(context.Background(), []string{
		"--state", demoState(t, cluster.socket), "--url", readyz(t), "--swarmsec", bin,
		"--manifests", shopManifests, "--timeout", "10s", "shop",
	})
	// 10 s: a plan run (race-built, on a loaded machine) takes seconds,
	// and the error must name a run that ended on its own.
	if took := time.Since(start); took > 25*time.Second {
		t.Errorf("the wait took %s with --timeout 10s", took)
	}
	if err == nil {
		t.Fatal("wait-controller ended without error on a cluster with changes pending")
	}
	t.Logf("wait-controller: %v", err)
	for _, want := range []string{"swarmsec plan", "DOCKER_HOST=" + cluster.Host(), "gave up after", "exit 2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
