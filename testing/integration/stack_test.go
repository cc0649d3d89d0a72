//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"

	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// TestStackDeployWithLeaderElection builds the image (make image), deploys
// deploy/swarmsec.yml as a stack with two replicas on this one-node Swarm,
// and checks that exactly one leads, that both are healthy, and that a
// clean stop of the leader hands over within 2s. Its manifests select
// nothing, so it changes nothing.
func TestStackDeployWithLeaderElection(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cli := engine(ctx, t)
	dir := t.TempDir()
	manifests := filepath.Join(dir, "manifests")
	if err := os.Mkdir(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(manifests, "nothing.yaml"), []byte(`apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata: {name: nothing}
spec:
  serviceSelector: {matchLabels: {swarmsec.test.nothing: "x"}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	override := filepath.Join(dir, "two-replicas.yml")
	if err := os.WriteFile(override, []byte(`version: "3.8"
services:
  controller:
    deploy:
      mode: replicated
      replicas: 2
`), 0o644); err != nil {
		t.Fatal(err)
	}
	stack := "ssst" + swarmtest.RunID()[:4]
	deployStack(ctx, t, stack, manifests, override)
	t.Cleanup(func() { removeStack(stack) })

	type role struct {
		container, identity string
		leader, ready       bool
	}
	roles := func() ([]role, string) {
		cs, err := cli.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name="+stack+"_controller"))})
		if err != nil {
			return nil, err.Error()
		}
		var out []role
		for _, c := range cs {
			b, err := exec.CommandContext(ctx, "docker", "exec", c.ID, "/swarmsec", "status", "-o", "json").Output()
			if err != nil {
				return nil, c.ID[:12] + ": status: " + err.Error()
			}
			var st struct {
				Leader   bool   `json:"leader"`
				Identity string `json:"identity"`
				Ready    bool   `json:"ready"`
			}
			if err := json.Unmarshal(b, &st); err != nil {
				return nil, err.Error()
			}
			out = append(out, role{c.ID, st.Identity, st.Leader, st.Ready})
		}
		return out, ""
	}
	leaders := func(rs []role) (n int, leader, follower string) {
		for _, r := range rs {
			if r.leader {
				n, leader = n+1, r.container
			} else {
				follower = r.container
			}
		}
		return n, leader, follower
	}
	var rs []role
	swarmtest.Poll(ctx, t, 2*time.Minute, func() (bool, string) {
		var why string
		if rs, why = roles(); why != "" {
			return false, why
		}
		n, _, _ := leaders(rs)
		return len(rs) == 2 && n == 1 && rs[0].ready && rs[1].ready, fmt.Sprintf("roles %+v", rs)
	})
	_, leader, follower := leaders(rs)
	health := func(id string) string {
		in, err := cli.ContainerInspect(ctx, id)
		if err != nil || in.State == nil || in.State.Health == nil {
			return "unknown"
		}
		return in.State.Health.Status
	}
	swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
		return health(leader) == "healthy" && health(follower) == "healthy", "health " + health(leader) + "/" + health(follower)
	})

	stopped := time.Now()
	timeout := 10
	if err := cli.ContainerStop(ctx, leader, container.StopOptions{Timeout: &timeout}); err != nil {
		t.Fatal(err)
	}
	swarmtest.Poll(ctx, t, 30*time.Second, func() (bool, string) {
		b, err := exec.CommandContext(ctx, "docker", "exec", follower, "/swarmsec", "status", "-o", "json").Output()
		var st struct {
			Leader bool `json:"leader"`
		}
		return err == nil && json.Unmarshal(b, &st) == nil && st.Leader, "the follower does not lead yet"
	})
	took := time.Since(stopped)
	t.Logf("hand-over after a clean stop of the leader: %s", took.Round(10*time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("hand-over took %s, want within 2s", took.Round(10*time.Millisecond))
	}
}

// removeStack removes a deployed swarmsec stack and its lease. A replica
// still stopping renews (or releases) the lease: it is removed once they
// are gone, or it comes back.
func removeStack(stack string) {
	_ = exec.Command("docker", "stack", "rm", stack).Run()
	for range 60 {
		out, _ := exec.Command("docker", "ps", "-q", "--filter", "label=com.docker.stack.namespace="+stack).Output()
		if len(bytes.TrimSpace(out)) == 0 {
			break
		}
		time.Sleep(time.Second)
	}
	_ = exec.Command("docker", "config", "rm", "swarmsec-leader").Run()
}

// deployStack builds the image (make image) and deploys deploy/swarmsec.yml
// with the override files as stack on this engine, reading manifests.
func deployStack(ctx context.Context, t *testing.T, stack, manifests string, overrides ...string) {
	t.Helper()
	root, err := swarmtest.ModuleRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "make", "-C", root, "image").CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	fi, err := os.Stat("/var/run/docker.sock")
	if err != nil {
		t.Skip("no local Docker socket to bind-mount:", err)
	}
	args := []string{"stack", "deploy", "--resolve-image", "never", "-c", filepath.Join(root, "deploy/swarmsec.yml")}
	for _, o := range overrides {
		args = append(args, "-c", o)
	}
	deploy := exec.CommandContext(ctx, "docker", append(args, stack)...)
	deploy.Env = append(os.Environ(), "SWARMSEC_MANIFESTS="+manifests, "SWARMSEC_DOCKER_GID="+fileGID(fi))
	if out, err := deploy.CombinedOutput(); err != nil {
		t.Fatalf("docker stack deploy: %v\n%s", err, out)
	}
}
