//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"sigs.k8s.io/yaml"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/manifest"
	"github.com/swarmsec/swarmsec/reconciler/traffic"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// shopStack is the stack TestPoliciesFromObservedTraffic deploys: the demo's
// shop (e2e/demo.sh), each service listening on a second port no client
// uses.
const shopStack = "tshop"

// shopCompose is the shop as a stack file: web, api, db and cache on the
// stack's default network (everyone reaches everyone, on every port),
// DNS round robin (no IPVS here), each placed where probes work.
func shopCompose() string {
	var b strings.Builder
	b.WriteString("version: \"3.8\"\nservices:\n")
	for i, app := range []string{"web", "api", "db", "cache"} {
		fmt.Fprintf(&b, `  %s:
    image: %s
    command: ["serve", "--listen", ":8080,:9090"]
    deploy:
      endpoint_mode: dnsrr
      labels: {app: %s}
      placement: {constraints: ["node.hostname == %s"]}
`, app, testCluster.AppImage, app, testCluster.ProbedNode(i).Hostname)
	}
	return b.String()
}

// TestPoliciesFromObservedTraffic is the traffic loop as a user runs it:
// the agents (the swarmsec stack, its controller scaled to none: `apply`
// is the writer here) watch the shop while traffic is driven web -> api,
// api -> db and api -> cache on 8080; `swarmsec flows` through the
// manager shows each pair with its port; `init --from-traffic` writes
// manifests that `validate` accepts and that `apply --traffic-window`
// (no --force) applies, its check finding no observed flow cut; the same
// traffic connects again while db's second listener (9090), never used,
// web -> db and cache -> api, never seen, are blocked, and flows judges
// the used ones allowed and the unused port blocked; and `plan` of those
// manifests less the api -> cache edge lists that flow with its count.
func TestPoliciesFromObservedTraffic(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	start := time.Now()
	svc := func(app string) string { return shopStack + "_" + app }
	web, api, db, cache := svc("web"), svc("api"), svc("db"), svc("cache")

	// The agents report every 5 s what they read every 2 s; apply, not a
	// controller, writes.
	override := filepath.Join(t.TempDir(), "traffic.yml")
	if err := os.WriteFile(override, []byte(`version: "3.8"
services:
  controller:
    deploy: {mode: replicated, replicas: 0}
  agent:
    command: ["agent", "--log-format", "json", "--proc", "/host/proc", "--flows-poll", "2s", "--flows-report", "5s"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(deploySwarmsec(ctx, t, "/etc/swarmsec/traffic-manifests", override))

	stackFile := filepath.Join(t.TempDir(), "shop.yml")
	if err := os.WriteFile(stackFile, []byte(shopCompose()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := docker(ctx, testCluster.Manager(), nil, "stack", "deploy", "--resolve-image", "never", "-c", stackFile, shopStack); err != nil {
		t.Fatalf("docker stack deploy: %v\n%s", err, out)
	}
	// Registered after the swarmsec stack's: runs before it, so the
	// restore there finds no shop service to move back.
	t.Cleanup(func() { removeStack(ctx, t, shopStack) })
	for _, s := range []string{web, api, db, cache} {
		swarmtest.WaitTasksRunning(ctx, t, manager(), s, 1)
	}
	deployed := time.Since(start)

	type edge struct{ from, to string }
	used := []edge{{web, api}, {api, db}, {api, cache}}
	const rounds = 3
	probeOpts := testCluster.ProbeOpts(swarmtest.WithProbeTimeout(time.Second))
	// drive opens each used edge rounds times on 8080, each waiting for
	// a connection (a task just started may not resolve yet).
	drive := func() {
		t.Helper()
		for _, e := range used {
			for range rounds {
				swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
					ok, out, err := swarmtest.ProbeE(ctx, manager(), e.from, swarmtest.TasksAddr(e.to), probeOpts...)
					return ok && err == nil, fmt.Sprintf("%s -> %s: %v %s", e.from, e.to, err, strings.TrimSpace(out))
				})
			}
		}
	}
	// A port nobody listens on: refused, so no flow (not one to admit).
	refused := fmt.Sprintf("%s -> %s:7070/tcp", web, api)
	swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
		ok, out, err := swarmtest.ProbeE(ctx, manager(), web, fmt.Sprintf("tasks.%s:7070", api), probeOpts...)
		return err == nil && !ok && strings.Contains(out, "refused"), fmt.Sprintf("%s: connected %v, %v %s", refused, ok, err, strings.TrimSpace(out))
	})
	drive()
	t.Logf("shop deployed in %s, traffic driven %s after the start", deployed.Round(100*time.Millisecond), time.Since(start).Round(100*time.Millisecond))

	// swarmsec flows, through the manager: each used pair with its port.
	want := func(e edge) string { return fmt.Sprintf("%s -> %s:%d/tcp", e.from, e.to, swarmtest.AppPort) }
	swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
		stdout, stderr, code := RunSwarmsec(ctx, t, "flows", "--since", "10m", "-o", "json")
		if code != 0 {
			return false, stderr
		}
		var obs traffic.Observed
		if err := json.Unmarshal([]byte(stdout), &obs); err != nil {
			return false, err.Error()
		}
		got := map[string]uint64{}
		for _, f := range obs.Flows {
			got[f.From()+" -> "+f.Target()] += f.Connections
		}
		var missing []string
		if n := got[refused]; n > 0 {
			missing = append(missing, fmt.Sprintf("(and %s refused, counted as %d connections)", refused, n))
		}
		for _, e := range used {
			if got[want(e)] < rounds {
				missing = append(missing, fmt.Sprintf("%s (%d connections)", want(e), got[want(e)]))
			}
		}
		return len(missing) == 0, "not yet in swarmsec flows: " + strings.Join(missing, ", ") + "\n" + stdout
	})
	table, _, _ := RunSwarmsec(ctx, t, "flows", "--since", "10m")
	t.Logf("swarmsec flows %s after the start:\n%s", time.Since(start).Round(100*time.Millisecond), table)

	// init --from-traffic writes what validate accepts.
	dir := filepath.Join(t.TempDir(), "fitted")
	if stdout, stderr, code := RunSwarmsec(ctx, t, "init", "--from-traffic", "--since", "10m", "--stack", shopStack, "-o", dir); code != 0 {
		t.Fatalf("init --from-traffic: %s%s", stdout, stderr)
	}
	if stdout, stderr, code := RunSwarmsec(ctx, t, "validate", dir); code != 0 {
		t.Fatalf("validate: %s%s", stdout, stderr)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(files) != 1 {
		t.Fatalf("init wrote %v (%v), want one file for the stack", files, err)
	}
	fitted, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s:\n%s", filepath.Base(files[0]), fitted)

	// apply them, as written, checking the flows of the window: none cut.
	applied := time.Now()
	if stdout, stderr, code := RunSwarmsec(ctx, t, "apply", "--manifests", dir, "--traffic-window", "10m", "--wait"); code != 0 {
		t.Fatalf("apply: %s%s", stdout, stderr)
	}
	t.Logf("applied in %s", time.Since(applied).Round(100*time.Millisecond))

	// The same traffic connects; what was never used does not, once the
	// agents hold the rolled tasks' rules.
	never := []struct{ from, addr string }{
		{api, fmt.Sprintf("tasks.%s:9090", db)},    // db's second listener, never used
		{web, swarmtest.TasksAddr(db)},             // a pair never seen
		{cache, fmt.Sprintf("tasks.%s:8080", api)}, // a direction never seen
	}
	swarmtest.Poll(ctx, t, 3*time.Minute, func() (bool, string) {
		var wrong []string
		for _, e := range used {
			ok, out, err := swarmtest.ProbeE(ctx, manager(), e.from, swarmtest.TasksAddr(e.to), probeOpts...)
			if err != nil || !ok {
				wrong = append(wrong, fmt.Sprintf("%s -> %s does not connect: %v %s", e.from, e.to, err, strings.TrimSpace(out)))
			}
		}
		for _, n := range never {
			ok, out, err := swarmtest.ProbeE(ctx, manager(), n.from, n.addr, probeOpts...)
			if err != nil || ok {
				wrong = append(wrong, fmt.Sprintf("%s -> %s connects: %v %s", n.from, n.addr, err, strings.TrimSpace(out)))
			}
		}
		return len(wrong) == 0, strings.Join(wrong, "\n")
	})
	t.Logf("every used flow connects and none other %s after the apply", time.Since(applied).Round(100*time.Millisecond))

	// flows under the applied manifests: the used ones allowed, the
	// unused port blocked by the agents.
	unused := fmt.Sprintf("%s -> %s:9090/tcp", api, db)
	swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
		stdout, stderr, code := RunSwarmsec(ctx, t, "flows", "--since", "10m", "--manifests", dir, "-o", "json")
		if code != 0 {
			return false, stderr
		}
		var obs traffic.Observed
		if err := json.Unmarshal([]byte(stdout), &obs); err != nil {
			return false, err.Error()
		}
		verdicts := map[string]string{}
		for _, f := range obs.Flows {
			verdicts[f.From()+" -> "+f.Target()] = f.Verdict
		}
		var wrong []string
		for _, e := range used {
			if v := verdicts[want(e)]; v != traffic.Allowed {
				wrong = append(wrong, fmt.Sprintf("%s: %q, want allowed", want(e), v))
			}
		}
		if v := verdicts[unused]; v != traffic.Blocked {
			wrong = append(wrong, fmt.Sprintf("%s: %q, want blocked", unused, v))
		}
		return len(wrong) == 0, strings.Join(wrong, "\n") + "\n" + stdout
	})

	// plan of the same manifests less the api -> cache edge lists that
	// flow, with its count.
	cut := filepath.Join(t.TempDir(), "cut")
	if err := os.MkdirAll(cut, 0o755); err != nil {
		t.Fatal(err)
	}
	objs, errs := manifest.DecodeFile(files[0], fitted)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	selects := func(peers []v1.Peer, name string) bool {
		return slices.ContainsFunc(peers, func(p v1.Peer) bool {
			return p.ServiceSelector != nil && p.ServiceSelector.MatchLabels[v1.LabelService] == name
		})
	}
	var docs []string
	for _, o := range objs {
		np := o.Network
		if np == nil {
			t.Fatalf("%s: a %s, want NetworkPolicy only", o.Name, o.Kind)
		}
		switch np.Spec.ServiceSelector.MatchLabels[v1.LabelService] {
		case api:
			np.Spec.Egress = slices.DeleteFunc(np.Spec.Egress, func(r v1.EgressRule) bool { return selects(r.To, cache) })
		case cache:
			np.Spec.Ingress = slices.DeleteFunc(np.Spec.Ingress, func(r v1.IngressRule) bool { return selects(r.From, api) })
		}
		b, err := yaml.Marshal(np)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	if err := os.WriteFile(filepath.Join(cut, "shop.yaml"), []byte(strings.Join(docs, "---\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := RunSwarmsec(ctx, t, "plan", "--manifests", cut, "--traffic-window", "10m", "-o", "json")
	if code != 2 { // changes pending
		t.Fatalf("plan: exit %d: %s%s", code, stdout, stderr)
	}
	var p struct {
		TrafficCuts []traffic.Cut `json:"trafficCuts"`
	}
	if err := json.Unmarshal([]byte(stdout), &p); err != nil {
		t.Fatalf("plan -o json: %v\n%s", err, stdout)
	}
	var cuts []string
	for _, c := range p.TrafficCuts {
		cuts = append(cuts, fmt.Sprintf("%s -> %s (%d connections)", c.From(), c.Target(), c.Connections))
	}
	if len(p.TrafficCuts) != 1 || p.TrafficCuts[0].From()+" -> "+p.TrafficCuts[0].Target() != want(edge{api, cache}) || p.TrafficCuts[0].Connections == 0 {
		t.Fatalf("plan lists the cuts %v, want %s alone, with its count\n%s", cuts, want(edge{api, cache}), stdout)
	}
	t.Logf("plan without api -> cache: %s", cuts[0])
	t.Logf("whole test %s before cleanup", time.Since(start).Round(100*time.Millisecond))
}

// removeStack removes a stack deployed with docker stack deploy and waits
// until no node runs its tasks, then removes again what was still in use
// (its network).
func removeStack(ctx context.Context, t *testing.T, name string) {
	ctx = context.WithoutCancel(ctx)
	_, _ = docker(ctx, testCluster.Manager(), nil, "stack", "rm", name)
	f := filters.NewArgs(filters.Arg("label", labelStack+"="+name))
	if err := swarmtest.PollE(ctx, time.Minute, func() (bool, string) {
		for _, n := range testCluster.Nodes {
			cs, err := n.Client.ContainerList(ctx, container.ListOptions{Filters: f})
			if err == nil && len(cs) > 0 {
				return false, fmt.Sprintf("%s still runs %s", n.Hostname, cs[0].Names)
			}
		}
		return true, ""
	}); err != nil {
		t.Errorf("stack %s: %v", name, err)
	}
	if err := swarmtest.PollE(ctx, 30*time.Second, func() (bool, string) {
		out, err := docker(ctx, testCluster.Manager(), nil, "stack", "rm", name)
		return err == nil || strings.Contains(string(out), "Nothing found in stack"), fmt.Sprintf("stack rm %s: %v: %s", name, err, out)
	}); err != nil {
		t.Error(err)
	}
}
