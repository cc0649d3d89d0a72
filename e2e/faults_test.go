//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// The fault tests' stack: five services without tasks (a pass's writes are
// what the faults interrupt; rolling updates would only slow the test), on
// one stack network.
const fxStack = "fx"

var fxApps = []string{"a", "b", "c", "d", "e"}

// isolation is a set of policies in the model the fault tests check:
// each isolated service may share a network only with its peers (its
// policy names them in an ingress rule, and lists Ingress and Egress).
type isolation map[string][]string

func (iso isolation) allows(x, y string) bool {
	px, xi := iso[x]
	py, yi := iso[y]
	return (!xi && !yi) || (xi && slices.Contains(px, y)) || (yi && slices.Contains(py, x))
}

func (iso isolation) manifests() map[string]string {
	out := map[string]string{}
	for s, peers := range iso {
		var from strings.Builder
		for _, p := range peers {
			fmt.Fprintf(&from, "        - serviceSelector: {matchLabels: {com.docker.stack.namespace: fx, app: %s}}\n", p)
		}
		out["fx-"+s+".yaml"] = fmt.Sprintf(`apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata: {name: fx-%s}
spec:
  serviceSelector: {matchLabels: {com.docker.stack.namespace: fx, app: %s}}
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
%s`, s, s, from.String())
	}
	return out
}

// writeDir makes dir hold exactly files (and extra).
func writeDir(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if _, keep := files[e.Name()]; !keep {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, body := range files {
		tmp := filepath.Join(dir, ".tmp-"+name)
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
}

type fxPair [2]string

// liveManager is a manager that answers, the restarted one last.
func liveManager(ctx context.Context) *client.Client {
	var last *client.Client
	for i := len(testCluster.Nodes) - 1; i >= 0; i-- {
		n := testCluster.Nodes[i]
		if !n.Manager {
			continue
		}
		last = n.Client
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := n.Client.Ping(pctx)
		cancel()
		if err == nil {
			return n.Client
		}
	}
	return last
}

// fxSharing is who of the stack shares a network, by the services' specs
// (what every write changes), read from the first manager that answers
// (one may be down, or cut off from the others).
func fxSharing(ctx context.Context) (map[fxPair]bool, error) {
	var svcs []swarm.Service
	var errs []string
	for i := len(testCluster.Nodes) - 1; i >= 0 && svcs == nil; i-- {
		n := testCluster.Nodes[i]
		if !n.Manager {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		list, err := n.Client.ServiceList(lctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.stack.namespace="+fxStack))})
		cancel()
		if err != nil {
			errs = append(errs, n.Hostname+": "+err.Error())
			continue
		}
		svcs = list
	}
	if svcs == nil {
		return nil, fmt.Errorf("no manager lists the services: %s", strings.Join(errs, "; "))
	}
	on := map[string][]string{}
	for _, s := range svcs {
		for _, a := range s.Spec.TaskTemplate.Networks {
			on[a.Target] = append(on[a.Target], strings.TrimPrefix(s.Spec.Name, fxStack+"_"))
		}
	}
	out := map[fxPair]bool{}
	for _, members := range on {
		slices.Sort(members)
		for i, a := range members {
			for _, b := range members[i+1:] {
				out[fxPair{a, b}] = true
			}
		}
	}
	return out, nil
}

func fxExactly(iso isolation, now map[fxPair]bool) (bool, string) {
	var diff []string
	for i, a := range fxApps {
		for _, b := range fxApps[i+1:] {
			if now[fxPair{a, b}] != iso.allows(a, b) {
				diff = append(diff, fmt.Sprintf("%s-%s shares: %v, allowed: %v", a, b, now[fxPair{a, b}], iso.allows(a, b)))
			}
		}
	}
	return len(diff) == 0, strings.Join(diff, "; ")
}

// sampler reads who shares a network every 200 ms while a fault runs:
// a pair that shares neither as the change began nor as the target
// allows is forbidden, at any moment.
type sampler struct {
	samples, errors int
	forbidden       []string
	stop            func()
}

func sample(ctx context.Context, t *testing.T, before map[fxPair]bool, target isolation) *sampler {
	t.Helper()
	s := &sampler{}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			now, err := fxSharing(ctx)
			if err != nil {
				s.errors++ // every manager may be busy electing
			} else {
				s.samples++
				for p := range now {
					if !before[p] && !target.allows(p[0], p[1]) {
						s.forbidden = append(s.forbidden, fmt.Sprintf("%s-%s at %s", p[0], p[1], time.Now().Format(time.StampMilli)))
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	s.stop = func() {
		cancel()
		wg.Wait()
		for _, f := range s.forbidden {
			t.Errorf("forbidden pair shared a network: %s", f)
		}
	}
	return s
}

// converge runs apply until it exits 0, then checks that the stack shares
// exactly what iso allows and that a second apply writes nothing.
func fxConverge(ctx context.Context, t *testing.T, dir string, iso isolation) {
	t.Helper()
	stdout, stderr, code := RunSwarmsec(ctx, t, "apply", "--manifests", dir)
	if code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, stdout, stderr)
	}
	now, err := fxSharing(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ok, why := fxExactly(iso, now); !ok {
		t.Fatalf("after apply: %s", why)
	}
	stdout, stderr, code = RunSwarmsec(ctx, t, "apply", "--manifests", dir)
	if code != 0 || !strings.Contains(stdout, "Applied 0 changes") {
		t.Fatalf("second apply: exit %d, want no change\n%s\n%s", code, stdout, stderr)
	}
}

// fxIntact fails the test for a network name held twice, or an isolated
// service whose record of what to restore is gone.
func fxIntact(ctx context.Context, t *testing.T, iso isolation) {
	t.Helper()
	cli := manager()
	nets, err := cli.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, n := range nets {
		seen[n.Name]++
	}
	for name, k := range seen {
		if k > 1 {
			t.Errorf("network %s exists %d times", name, k)
		}
	}
	cfgs, err := cli.ConfigList(ctx, swarm.ConfigListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for s := range iso {
		svc, _, err := cli.ServiceInspectWithRaw(ctx, fxStack+"_"+s, swarm.ServiceInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rec := svc.Spec.Labels[v1.LabelOriginal]
		if rec == "" || !slices.ContainsFunc(cfgs, func(c swarm.Config) bool { return c.Spec.Name == rec }) {
			t.Errorf("%s: record %q lost", svc.Spec.Name, rec)
		}
	}
}

// applyDuringRestart starts `swarmsec apply`, restarts the manager
// engine it talks to once written() says the apply has begun writing,
// and returns apply's exit code and output and how long the engine took
// to come back.
func applyDuringRestart(ctx context.Context, t *testing.T, dir string, stop int, written func() bool, extra ...string) (int, string, time.Duration) {
	t.Helper()
	node := testCluster.Manager()
	cmd, err := testCluster.SwarmsecCommand(ctx, node.Socket, append([]string{"apply", "--manifests", dir, "--max-service-updates", "1"}, extra...)...)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var back time.Duration
	restarted := false
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-exited:
			t.Fatalf("apply ended (%v) before it was seen writing, no fault injected:\n%s", err, out.String())
		default:
		}
		if written() {
			if back, err = testCluster.RestartEngine(ctx, node, stop); err != nil {
				t.Fatal(err)
			}
			restarted = true
			break
		}
	}
	if !restarted {
		t.Fatal("apply was not seen writing within a minute")
	}
	code := 0
	select {
	case err := <-exited:
		if cmd.ProcessState != nil {
			code = cmd.ProcessState.ExitCode()
		} else if err != nil {
			code = -1
		}
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("apply did not end within 2 minutes of the restart:\n%s", out.String())
	}
	return code, out.String(), back
}

// TestEngineRestart restarts the engine of the manager swarmsec talks to
// (its node container: dockerd stops, its tasks with it, and starts
// again) during an apply, during a `run` pass and during an encryption
// migration. Each time the pass fails cleanly, the next converges, no
// network is duplicated, no record is lost, and a sampler reading who
// shares a network every 200 ms sees no forbidden pair.
func TestEngineRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	begin := time.Now()
	cli := manager()
	netID, dir := fxSetup(ctx, t)

	// The starting point: d talks only with c.
	p1 := isolation{"d": {"c"}}
	writeDir(t, dir, p1.manifests())
	fxConverge(ctx, t, dir, p1)

	// 1. During an apply: d moves to b, a and e are isolated with b. The
	// engine is killed (SIGKILL) right after apply's first write.
	p2 := isolation{"d": {"b"}, "a": {"b"}, "e": {"b", "d"}}
	writeDir(t, dir, p2.manifests())
	before, err := fxSharing(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := sample(ctx, t, before, p2)
	changed := func() bool {
		now, err := fxSharing(ctx)
		return err == nil && !maps.Equal(now, before)
	}
	code, out, back := applyDuringRestart(ctx, t, dir, 0, changed)
	t.Logf("apply during the restart: exit %d; the engine was back %s later\n%s", code, back.Round(100*time.Millisecond), out)
	restarted := time.Now()
	fxConverge(ctx, t, dir, p2)
	converged := time.Since(restarted)
	s.stop()
	fxIntact(ctx, t, p2)
	t.Logf("faults: engine restart during apply: 1 fault (SIGKILL of dockerd after the first write), apply exit %d, forbidden pairs seen: 0 in %d samples, converged %s after the engine was back (one more apply)",
		code, s.samples, converged.Round(100*time.Millisecond))

	// 2. During a `run` pass: a controller runs on the host against the
	// same engine; the manifests change and the engine restarts
	// (SIGTERM, then SIGKILL after 10 s) as the pass begins.
	runDir := t.TempDir()
	writeDir(t, runDir, p2.manifests())
	run, err := testCluster.SwarmsecCommand(ctx, testCluster.Manager().Socket, "run", "--manifests", runDir, "--listen", "", "--resync", "10m", "--log-format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var runLog syncBuffer
	run.Stdout, run.Stderr = &runLog, &runLog
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	runDone := make(chan error, 1)
	go func() { runDone <- run.Wait() }()
	stopRun := func() {
		_ = run.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-runDone:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = run.Process.Kill()
			t.Errorf("run did not stop within 30s of SIGTERM")
		}
		_ = cli.ConfigRemove(context.WithoutCancel(ctx), "swarmsec-leader")
	}
	defer func() {
		if run.ProcessState == nil {
			stopRun()
		}
	}()
	swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
		return strings.Contains(runLog.String(), "leading: this replica writes"), "run does not lead yet"
	})
	p3 := isolation{"d": {"b"}, "a": {"c"}, "e": {"b", "d"}, "c": {"a", "b"}}
	before, err = fxSharing(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s = sample(ctx, t, before, p3)
	// The watcher reads the change 150 ms later, as dockerd stops.
	writeDir(t, runDir, p3.manifests())
	if back, err = testCluster.RestartEngine(ctx, testCluster.Manager(), 10); err != nil {
		t.Fatal(err)
	}
	restarted = time.Now()
	swarmtest.Poll(ctx, t, 2*time.Minute, func() (bool, string) {
		now, err := fxSharing(ctx)
		if err != nil {
			return false, err.Error()
		}
		return fxExactly(p3, now)
	})
	converged = time.Since(restarted)
	// The events stream is back: a drift is reverted long before the
	// next resync (10 minutes).
	svc, _, err := cli.ServiceInspectWithRaw(ctx, fxStack+"_a", swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := svc.Spec
	spec.TaskTemplate.Networks = append(slices.Clone(spec.TaskTemplate.Networks), swarm.NetworkAttachmentConfig{Target: netID})
	if _, err := cli.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	drifted := time.Now()
	swarmtest.Poll(ctx, t, 30*time.Second, func() (bool, string) {
		now, err := fxSharing(ctx)
		if err != nil {
			return false, err.Error()
		}
		return fxExactly(p3, now)
	})
	reverted := time.Since(drifted)
	stopRun()
	s.stop()
	fxIntact(ctx, t, p3)
	logs := runLog.String()
	if !strings.Contains(logs, "docker events stream lost") {
		t.Errorf("run never lost its events stream:\n%s", tail(logs, 20))
	}
	failed := strings.Count(logs, "reconcile failed") + strings.Count(logs, "some changes failed")
	t.Logf("faults: engine restart during a run pass: 1 fault (dockerd stopped and started as the manifests changed, back in %s), %d passes failed and were retried, forbidden pairs seen: 0 in %d samples, converged %s after the restart, a drift then reverted in %s (events)",
		back.Round(100*time.Millisecond), failed, s.samples, converged.Round(100*time.Millisecond), reverted.Round(100*time.Millisecond))

	// 3. During an encryption migration of fx_default: the engine is
	// killed once the temporary network exists.
	writeDir(t, dir, p3.manifests())
	writeFile(t, dir, "encrypt.yaml", `apiVersion: swarmsec.io/v1
kind: EncryptionPolicy
metadata: {name: encrypt-fx}
spec:
  networkSelector:
    matchLabels: {com.docker.stack.namespace: fx}
`)
	before, err = fxSharing(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s = sample(ctx, t, before, p3)
	migrating := func() bool {
		nets, err := liveManager(ctx).NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", fxStack+"_default-swarmsec-tmp"))})
		return err == nil && len(nets) > 0
	}
	code, out, back = applyDuringRestart(ctx, t, dir, 0, migrating)
	t.Logf("apply during the migration's restart: exit %d; the engine was back %s later\n%s", code, back.Round(100*time.Millisecond), out)
	restarted = time.Now()
	fxConverge(ctx, t, dir, p3)
	converged = time.Since(restarted)
	s.stop()
	fxIntact(ctx, t, p3)
	nets, err := cli.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nets {
		switch {
		case strings.HasPrefix(n.Name, fxStack+"_default-swarmsec-tmp"):
			t.Errorf("temporary network %s left", n.Name)
		case n.Name == fxStack+"_default":
			if _, ok := n.Options["encrypted"]; !ok || n.ID == netID {
				t.Errorf("%s was not replaced by an encrypted network: %v", n.Name, n.Options)
			}
		}
	}
	t.Logf("faults: engine restart during an encryption migration: 1 fault (SIGKILL of dockerd with the temporary network made), apply exit %d, forbidden pairs seen: 0 in %d samples, the migration resumed and converged %s after the engine was back",
		code, s.samples, converged.Round(100*time.Millisecond))
	t.Logf("faults: engine restart: 3 faults tried in %s", time.Since(begin).Round(time.Second))
}

// fxSetup creates the fault tests' stack (its network, five services
// without tasks) and a manifest directory; when the test ends, an empty
// apply restores the services, which are then removed, and so are the
// networks, the encrypted replacement of fx_default too.
func fxSetup(ctx context.Context, t *testing.T) (netID, dir string) {
	t.Helper()
	cli := manager()
	netID = swarmtest.CreateNetwork(ctx, t, cli, fxStack+"_default", swarmtest.WithNetworkLabels(map[string]string{"com.docker.stack.namespace": fxStack}))
	t.Cleanup(func() {
		// The encrypted replacement is the user's, like the network it
		// replaced: removed once the services are.
		ctx := context.WithoutCancel(ctx)
		nets, _ := cli.NetworkList(ctx, network.ListOptions{})
		for _, n := range nets {
			if (n.Name == fxStack+"_default" || strings.HasPrefix(n.Name, fxStack+"_default-swarmsec-tmp")) && n.ID != netID {
				if err := swarmtest.RemoveNetworkE(ctx, cli, n.ID); err != nil {
					t.Errorf("remove %s: %v", n.Name, err)
				}
			}
		}
	})
	for _, app := range fxApps {
		createService(ctx, t, swarmtest.WithName(fxStack+"_"+app), swarmtest.WithReplicas(0),
			swarmtest.WithServiceLabels(map[string]string{"com.docker.stack.namespace": fxStack, "app": app}),
			swarmtest.WithNetwork(fxStack+"_default", app))
	}
	t.Cleanup(func() {
		ctx := context.WithoutCancel(ctx)
		if _, stderr, code := RunSwarmsec(ctx, t, "apply", "--manifests", t.TempDir(), "--allow-empty"); code != 0 {
			t.Errorf("restore: %s", stderr)
		}
		checkRestored(ctx, t)
	})
	return netID, t.TempDir()
}

// syncBuffer is a bytes.Buffer a process writes to while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
