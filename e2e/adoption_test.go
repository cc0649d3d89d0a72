//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// First use as a user meets it, through the binary and without --force.

func writeFile(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestApplyMigratesASixServiceNetwork: one `swarmsec apply` replaces a
// six-service stack network by an encrypted one, the whole way: no
// temporary network is left, and a second apply writes nothing.
func TestApplyMigratesASixServiceNetwork(t *testing.T) {
	ctx := context.Background()
	cli := manager()
	stack := "mig"
	net := stack + "_default"
	netID := swarmtest.CreateNetwork(ctx, t, cli, net, swarmtest.WithNetworkLabels(map[string]string{"com.docker.stack.namespace": stack}))
	t.Cleanup(func() {
		// The encrypted replacement is the user's, like the network it
		// replaced: the test removes it.
		ctx := context.WithoutCancel(ctx)
		nets, _ := cli.NetworkList(ctx, network.ListOptions{})
		for _, n := range nets {
			if (n.Name == net || strings.HasPrefix(n.Name, net+"-swarmsec-tmp")) && n.ID != netID {
				_ = swarmtest.RemoveNetworkE(ctx, cli, n.ID)
			}
		}
	})
	var services []string
	for i := range 6 {
		name := fmt.Sprintf("%s_s%d", stack, i)
		createService(ctx, t, swarmtest.WithName(name), testCluster.PlaceProbed(0),
			swarmtest.WithServiceLabels(map[string]string{"com.docker.stack.namespace": stack}),
			swarmtest.WithNetwork(net, fmt.Sprintf("s%d", i)))
		services = append(services, name)
	}
	for _, s := range services {
		swarmtest.WaitTasksRunning(ctx, t, cli, s, 1)
	}
	dir := t.TempDir()
	writeFile(t, dir, "encrypt.yaml", `apiVersion: swarmsec.io/v1
kind: EncryptionPolicy
metadata: {name: encrypt-mig}
spec:
  networkSelector:
    matchLabels: {com.docker.stack.namespace: mig}
`)
	start := time.Now()
	stdout, stderr, code := RunSwarmsec(ctx, t, "apply", "--manifests", dir, "--wait")
	if code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, stdout, stderr)
	}
	t.Logf("one apply migrated %s with 6 services in %s:\n%s", net, time.Since(start).Round(100*time.Millisecond), stdout)
	nets, err := cli.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var replaced *network.Summary
	for i, n := range nets {
		switch {
		case strings.Contains(n.Name, "swarmsec-tmp"):
			t.Errorf("temporary network %s left", n.Name)
		case n.Name == net:
			replaced = &nets[i]
		}
	}
	if replaced == nil || replaced.ID == netID {
		t.Fatalf("%s was not replaced", net)
	}
	if _, ok := replaced.Options["encrypted"]; !ok {
		t.Errorf("%s is not encrypted: %v", net, replaced.Options)
	}
	for _, s := range services {
		svc, _, err := cli.ServiceInspectWithRaw(ctx, s, swarm.ServiceInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if as := svc.Spec.TaskTemplate.Networks; len(as) != 1 || as[0].Target != replaced.ID {
			t.Errorf("%s networks %+v, want the encrypted %s only", s, as, net)
		}
	}
	stdout, stderr, code = RunSwarmsec(ctx, t, "apply", "--manifests", dir)
	if code != 0 || !strings.Contains(stdout, "Applied 0 changes") {
		t.Errorf("second apply: exit %d, want no change\n%s\n%s", code, stdout, stderr)
	}
}

// TestBroadSelectorHeldByApplyAndRun: a policy selecting all 30 services
// of a stack at once is held by apply (refused, nothing written) and by
// run (status Held, with the annotation to add), and goes through once its
// manifest carries the approval.
func TestBroadSelectorHeldByApplyAndRun(t *testing.T) {
	ctx := context.Background()
	cli := manager()
	stack := "broad"
	net := stack + "_default"
	swarmtest.CreateNetwork(ctx, t, cli, net, swarmtest.WithNetworkLabels(map[string]string{"com.docker.stack.namespace": stack}))
	var services []string
	for i := range 30 {
		name := fmt.Sprintf("%s_s%02d", stack, i)
		createService(ctx, t, swarmtest.WithName(name), swarmtest.WithReplicas(0),
			swarmtest.WithServiceLabels(map[string]string{"com.docker.stack.namespace": stack}), swarmtest.WithNetwork(net))
		services = append(services, name)
	}
	policy := `apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata:
  name: broad-all%s
spec:
  serviceSelector:
    matchLabels: {com.docker.stack.namespace: broad}
  ingress: []
`
	dir := t.TempDir()
	writeFile(t, dir, "all.yaml", fmt.Sprintf(policy, ""))
	t.Cleanup(func() {
		empty := t.TempDir()
		if _, stderr, code := RunSwarmsec(context.WithoutCancel(ctx), t, "apply", "--manifests", empty, "--allow-empty"); code != 0 {
			t.Errorf("restore: exit %d: %s", code, stderr)
		}
	})

	_, stderr, code := RunSwarmsec(ctx, t, "apply", "--manifests", dir)
	if code == 0 || !strings.Contains(stderr, "30 of 30") || !strings.Contains(stderr, "swarmsec.io/approve-broad-selector") {
		t.Fatalf("apply of a broad policy: exit %d, want a refusal with the numbers and the annotation:\n%s", code, stderr)
	}
	isolated := func() int {
		n := 0
		for _, s := range services {
			svc, _, err := cli.ServiceInspectWithRaw(ctx, s, swarm.ServiceInspectOptions{})
			if err == nil && svc.Spec.Labels["swarmsec.io/original"] != "" {
				n++
			}
		}
		return n
	}
	if n := isolated(); n != 0 {
		t.Fatalf("a refused apply isolated %d services", n)
	}

	ctl := startController(ctx, t, dir)
	swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
		reason, msg := policyReason(ctx, ctl.url, "broad-all")
		return reason == "Held" && strings.Contains(msg, "swarmsec.io/approve-broad-selector"), "reason " + reason + ": " + msg
	})
	if n := isolated(); n != 0 {
		t.Fatalf("a controller isolated %d services for a held policy", n)
	}

	writeFile(t, dir, "all.yaml", fmt.Sprintf(policy, "\n  annotations: {swarmsec.io/approve-broad-selector: \"true\"}"))
	swarmtest.Poll(ctx, t, 2*time.Minute, func() (bool, string) {
		reason, msg := policyReason(ctx, ctl.url, "broad-all")
		n := isolated()
		return reason == "Converged" && n == 30, fmt.Sprintf("reason %s (%s), %d of 30 isolated", reason, msg, n)
	})
}

// policyReason reads a policy's Ready reason and message from a
// controller's /status.
func policyReason(ctx context.Context, url, name string) (string, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/status", nil)
	if err != nil {
		return "", err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err.Error()
	}
	var r struct {
		Policies []struct {
			Name       string `json:"name"`
			Conditions []struct {
				Type, Reason, Message string
			} `json:"conditions"`
		} `json:"policies"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return "", err.Error()
	}
	for _, p := range r.Policies {
		if p.Name == name {
			for _, c := range p.Conditions {
				if c.Type == "Ready" {
					return c.Reason, c.Message
				}
			}
		}
	}
	return "", "no such policy"
}
