//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
	"github.com/swarmsec/swarmsec/tools/audit"
)

// statusPolicyYAML is a NetworkPolicy isolating app=<app>, letting
// app=<from> in when from is set.
func statusPolicyYAML(name, app, from, enforcement string) string {
	y := fmt.Sprintf(`apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata:
  name: %s
spec:
  serviceSelector:
    matchLabels:
      app: %s
`, name, app)
	if enforcement != "" {
		y += "  enforcement: " + enforcement + "\n"
	}
	if from == "" {
		return y + "  ingress: []\n"
	}
	return y + fmt.Sprintf(`  ingress:
    - from:
        - serviceSelector:
            matchLabels:
              app: %s
`, from)
}

func serviceNetworks(ctx context.Context, t *testing.T, cli *client.Client, name string) (swarm.Service, []string) {
	t.Helper()
	s, _, err := cli.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range s.Spec.TaskTemplate.Networks {
		n, err := cli.NetworkInspect(ctx, a.Target, network.InspectOptions{})
		if err != nil {
			names = append(names, a.Target)
			continue
		}
		names = append(names, n.Name)
	}
	slices.Sort(names)
	return s, names
}

// TestRunStatusMetricsDriftAndManifestErrors runs `swarmsec run` on the
// machine's Swarm and checks, with a real HTTP client, what an operator
// sees: readiness, per-policy conditions, metrics after a converge, a drift
// correction, a broken manifest, then `swarmsec status` and `swarmsec audit`.
func TestRunStatusMetricsDriftAndManifestErrors(t *testing.T) {
	ctx := context.Background()
	cli := engine(ctx, t)
	bin := statusBinary(t)
	p := "st" + swarmtest.RunID()[:6]
	shared := p + "_default"
	removeManagedNetworks(ctx, t, cli, p)
	swarmtest.CreateNetwork(ctx, t, cli, shared)
	for _, short := range []string{"web", "db", "aud"} {
		swarmtest.CreateService(ctx, t, cli, swarmtest.WithName(p+"_"+short),
			swarmtest.WithServiceLabels(map[string]string{"app": p + "-" + short}), swarmtest.WithNetwork(shared, short))
	}
	for _, short := range []string{"web", "db", "aud"} {
		swarmtest.WaitTasksRunning(ctx, t, cli, p+"_"+short, 1)
	}
	removeRecords(ctx, t, cli, &app{services: []string{p + "_web", p + "_db", p + "_aud"}})
	_, audBefore := serviceNetworks(ctx, t, cli, p+"_aud")

	dir := t.TempDir()
	statusWriteManifest(t, dir, "db.yaml", statusPolicyYAML(p+"-db", p+"-db", p+"-web", ""))
	statusWriteManifest(t, dir, "aud.yaml", statusPolicyYAML(p+"-aud", p+"-aud", "", "audit"))

	start := time.Now()
	proc := statusRun(ctx, t, bin, "--manifests", dir, "--resync", "3s", "--max-isolate-share", "0")

	if code, body := proc.get(t, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	swarmtest.Poll(ctx, t, 2*time.Minute, func() (bool, string) {
		code, body := proc.get(t, "/readyz")
		return code == http.StatusOK, fmt.Sprintf("/readyz %d: %s", code, body)
	})

	// The enforced policy converges; the audit-only one reports and writes
	// nothing.
	db := proc.waitReady(ctx, t, p+"-db", "True", v1.ReasonConverged)
	if !slices.Equal(db.Services, []string{p + "_db"}) || db.Generation == "" || db.Conditions[0].ObservedGeneration != db.Generation {
		t.Errorf("db policy status: %+v", db)
	}
	aud := proc.waitReady(ctx, t, p+"-aud", "False", v1.ReasonAuditOnly)
	if len(aud.PendingActions) == 0 || aud.PendingActions[0].State != "audit" {
		t.Errorf("audit policy pending actions: %+v", aud.PendingActions)
	}
	// Versions are no proof: other clients of a shared engine may write.
	// The spec swarmsec would change is.
	if audNow, nets := serviceNetworks(ctx, t, cli, p+"_aud"); !slices.Equal(nets, audBefore) || audNow.Spec.Labels[v1.LabelOriginal] != "" {
		t.Errorf("the audit-only policy's service was written: networks %v -> %v, labels %v", audBefore, nets, audNow.Spec.Labels)
	}
	if _, nets := serviceNetworks(ctx, t, cli, p+"_db"); slices.Contains(nets, shared) {
		t.Errorf("db still on %s after converging: %v", shared, nets)
	}

	// Metrics after the converge. A pass fails as a whole when any object
	// does, and a shared engine may hold others' broken objects: wait for
	// a clean one.
	var text string
	swarmtest.Poll(ctx, t, 2*time.Minute, func() (bool, string) {
		_, text = proc.get(t, "/metrics")
		v, _ := statusMetric(text, "swarmsec_reconcile_passes_total", map[string]string{"result": "success"})
		return v >= 1, "no successful pass yet"
	})
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "swarmsec_") && !strings.Contains(line, "_bucket") {
			t.Log(line)
		}
	}
	t.Logf("converged %s after start", time.Since(start).Round(time.Millisecond))
	must := func(name string, labels map[string]string, ok func(float64) bool, want string) {
		t.Helper()
		v, found := statusMetric(text, name, labels)
		if !found || !ok(v) {
			t.Errorf("%s%v = %v (found %t), want %s", name, labels, v, found, want)
		}
	}
	atLeast := func(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }
	equal := func(n float64) func(float64) bool { return func(v float64) bool { return v == n } }
	must("go_goroutines", nil, atLeast(1), ">= 1")
	must("process_cpu_seconds_total", nil, atLeast(0), "present")
	must("swarmsec_reconcile_passes_total", map[string]string{"result": "success"}, atLeast(1), ">= 1")
	must("swarmsec_reconcile_duration_seconds_count", nil, atLeast(1), ">= 1")
	must("swarmsec_actions_total", map[string]string{"kind": "create-network", "result": "created"}, atLeast(1), ">= 1")
	must("swarmsec_actions_total", map[string]string{"kind": "update-service", "result": "configured"}, atLeast(2), ">= 2 (db and web)")
	must("swarmsec_docker_requests_total", map[string]string{"operation": "ServiceUpdate", "result": "success"}, atLeast(2), ">= 2")
	must("swarmsec_docker_requests_total", map[string]string{"operation": "ServiceList", "result": "success"}, atLeast(1), ">= 1")
	must("swarmsec_docker_requests_total", map[string]string{"operation": "NetworkCreate", "result": "success"}, atLeast(1), ">= 1")
	must("swarmsec_policies", map[string]string{"ready": "True"}, equal(1), "1")
	must("swarmsec_policies", map[string]string{"ready": "False"}, equal(1), "1 (the audit-only policy)")
	must("swarmsec_policy_ready", map[string]string{"policy": p + "-aud", "reason": v1.ReasonAuditOnly}, equal(1), "1")
	must("swarmsec_audit_actions", map[string]string{"kind": "update-service"}, atLeast(1), ">= 1")
	must("swarmsec_manifest_errors", nil, equal(0), "0")
	must("swarmsec_last_successful_reconcile_timestamp_seconds", nil, func(v float64) bool {
		return v >= float64(start.Unix()) && v <= float64(time.Now().Unix()+1)
	}, "within the test")
	if n := len(proc.logged("change applied")); n < 3 {
		t.Errorf("%d 'change applied' events, want one per write (>= 3)", n)
	} else {
		ev := proc.logged("change applied")[0]
		for _, k := range []string{"action", "object", "policy", "reason", "result", "duration"} {
			if _, ok := ev[k]; !ok {
				t.Errorf("change event lacks %s: %v", k, ev)
			}
		}
	}

	// Drift: someone puts db back on the shared network by hand.
	driftBefore, _ := statusMetric(text, "swarmsec_drift_corrections_total", map[string]string{"kind": "update-service"})
	svc, _ := serviceNetworks(ctx, t, cli, p+"_db")
	spec := svc.Spec
	spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: shared})
	if _, err := cli.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatalf("drift by hand: %v", err)
	}
	swarmtest.Poll(ctx, t, 2*time.Minute, func() (bool, string) {
		_, text := proc.get(t, "/metrics")
		v, _ := statusMetric(text, "swarmsec_drift_corrections_total", map[string]string{"kind": "update-service"})
		_, nets := serviceNetworks(ctx, t, cli, p+"_db")
		return v > driftBefore && !slices.Contains(nets, shared), fmt.Sprintf("drift corrections %v (%v before), db on %v", v, driftBefore, nets)
	})
	proc.waitReady(ctx, t, p+"-db", "True", v1.ReasonConverged)

	// A broken manifest: listed with its error, its last good policy stays
	// in force, and the policy says InvalidSpec.
	statusWriteManifest(t, dir, "db.yaml", statusPolicyYAML(p+"-db", p+"-db", p+"-web", "")+"  bogus: 1\n")
	bad := proc.waitReady(ctx, t, p+"-db", "False", v1.ReasonInvalidSpec)
	r := proc.status(t)
	if len(r.ManifestErrors) == 0 || !slices.Contains(r.StaleFiles, dir+"/db.yaml") || !strings.Contains(bad.Conditions[0].Message, "db.yaml") {
		t.Errorf("broken manifest: errors %v, stale %v, message %q", r.ManifestErrors, r.StaleFiles, bad.Conditions[0].Message)
	}
	_, text = proc.get(t, "/metrics")
	if v, _ := statusMetric(text, "swarmsec_manifest_errors", nil); v < 1 {
		t.Errorf("swarmsec_manifest_errors = %v with a broken file", v)
	}
	if _, nets := serviceNetworks(ctx, t, cli, p+"_db"); slices.Contains(nets, shared) {
		t.Errorf("a broken manifest released db: %v", nets)
	}
	statusWriteManifest(t, dir, "db.yaml", statusPolicyYAML(p+"-db", p+"-db", p+"-web", ""))
	proc.waitReady(ctx, t, p+"-db", "True", v1.ReasonConverged)

	// swarmsec status, both formats.
	out, err := exec.CommandContext(ctx, bin, "status", "--server", proc.base).CombinedOutput()
	if err != nil || !strings.Contains(string(out), p+"-db") || !strings.Contains(string(out), v1.ReasonConverged) {
		t.Errorf("swarmsec status: %v\n%s", err, out)
	}
	out, err = exec.CommandContext(ctx, bin, "status", "--server", proc.base, "-o", "json").Output()
	var doc struct {
		Policies []struct {
			Name       string `json:"name"`
			Conditions []struct {
				Type, Status, Reason, Message, ObservedGeneration string
				LastTransitionTime                                time.Time
			} `json:"conditions"`
		} `json:"policies"`
	}
	if err != nil || json.Unmarshal(out, &doc) != nil || len(doc.Policies) != 2 {
		t.Fatalf("swarmsec status -o json: %v\n%s", err, out)
	}
	for _, pol := range doc.Policies {
		c := pol.Conditions[0]
		if c.Type != v1.ConditionReady || c.Reason == "" || c.ObservedGeneration == "" || c.LastTransitionTime.IsZero() {
			t.Errorf("condition of %s: %+v", pol.Name, c)
		}
	}

	// swarmsec audit with the manifests: the shared network is unencrypted,
	// and the audit-only policy's service still shares it with web.
	cmd := exec.CommandContext(ctx, bin, "audit", "--manifests", dir, "-o", "json")
	out, err = cmd.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("swarmsec audit: want exit status 2, got %v\n%s", err, out)
	}
	var rep audit.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("audit JSON: %v\n%s", err, out)
	}
	found := map[string]bool{}
	for _, f := range rep.Findings {
		if f.Name == shared {
			found[f.Check] = true
		}
	}
	if !found[audit.CheckOverlayUnencrypted] || !found[audit.CheckUnallowedPeers] {
		t.Errorf("audit findings on %s: %v", shared, found)
	}
}

// TestRunAuditModeWritesNothing runs `swarmsec run --mode audit` on the
// machine's Swarm: it must report what it would change and make no write
// call to Docker.
func TestRunAuditModeWritesNothing(t *testing.T) {
	ctx := context.Background()
	cli := engine(ctx, t)
	t0 := time.Now()
	bin := statusBinary(t)
	t.Logf("built swarmsec in %s", time.Since(t0).Round(time.Millisecond))
	p := "sa" + swarmtest.RunID()[:6]
	shared := p + "_default"
	removeManagedNetworks(ctx, t, cli, p)
	swarmtest.CreateNetwork(ctx, t, cli, shared)
	for _, short := range []string{"web", "db"} {
		swarmtest.CreateService(ctx, t, cli, swarmtest.WithName(p+"_"+short),
			swarmtest.WithServiceLabels(map[string]string{"app": p + "-" + short}), swarmtest.WithNetwork(shared))
	}
	_, before := serviceNetworks(ctx, t, cli, p+"_db")

	dir := t.TempDir()
	statusWriteManifest(t, dir, "db.yaml", statusPolicyYAML(p+"-db", p+"-db", p+"-web", ""))
	t0 = time.Now()
	proc := statusRun(ctx, t, bin, "--manifests", dir, "--resync", "2s", "--mode", "audit", "--max-isolate-share", "0")
	t.Logf("services ready, controller serving after %s", time.Since(t0).Round(time.Millisecond))

	pol := proc.waitReady(ctx, t, p+"-db", "False", v1.ReasonAuditOnly)
	t.Logf("AuditOnly after %s", time.Since(t0).Round(time.Millisecond))
	if len(pol.PendingActions) == 0 {
		t.Error("no would-be changes listed")
	}
	// A few passes, including resyncs, which list.
	swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
		_, text := proc.get(t, "/metrics")
		v, _ := statusMetric(text, "swarmsec_reconcile_passes_total", map[string]string{"result": "success"})
		l, _ := statusMetric(text, "swarmsec_observations_total", map[string]string{"mode": "list"})
		return v >= 3 && l >= 3, fmt.Sprintf("%v passes, %v of them listed", v, l)
	})
	_, text := proc.get(t, "/metrics")
	for _, op := range []string{"ServiceUpdate", "NetworkCreate", "NetworkRemove"} {
		if v, _ := statusMetric(text, "swarmsec_docker_requests_total", map[string]string{"operation": op}); v != 0 {
			t.Errorf("audit mode made %v %s calls", v, op)
		}
	}
	if v, _ := statusMetric(text, "swarmsec_docker_requests_total", map[string]string{"operation": "ServiceList"}); v < 3 {
		t.Errorf("ServiceList calls = %v: the metric does not count calls", v)
	}
	for _, kind := range []string{"create-network", "update-service"} {
		if v, _ := statusMetric(text, "swarmsec_audit_actions", map[string]string{"kind": kind}); v < 1 {
			t.Errorf("swarmsec_audit_actions{kind=%q} = %v", kind, v)
		}
	}
	if v, _ := statusMetric(text, "swarmsec_actions_total", nil); v != 0 {
		t.Errorf("swarmsec_actions_total = %v in audit mode", v)
	}
	if n := len(proc.logged("audit: would change")); n == 0 {
		t.Error("no 'audit: would change' log line")
	}
	// Versions are no proof: other clients of a shared engine may write.
	// The spec swarmsec would change, and the networks it would create, are.
	after, nets := serviceNetworks(ctx, t, cli, p+"_db")
	if !slices.Equal(nets, before) {
		t.Errorf("audit mode changed db's networks: %v -> %v", before, nets)
	}
	if _, ok := after.Spec.Labels[v1.LabelOriginal]; ok {
		t.Error("audit mode labeled db")
	}
	all, err := cli.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range all {
		if n.Labels[v1.LabelManaged] == "true" && strings.Contains(n.Name, p) {
			t.Errorf("audit mode created network %s", n.Name)
		}
	}
	t.Logf("checked after %s; cleaning up", time.Since(t0).Round(time.Millisecond))
}
