//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/e2e/cluster"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// replica is one task of the stack-deployed controller, as it reports
// itself.
type replica struct {
	node      *cluster.Node
	container string
	Leader    bool   `json:"leader"`
	Identity  string `json:"identity"`
	Writes    int64  `json:"followerWrites"`
}

// docker runs the docker CLI against one node's engine.
func docker(ctx context.Context, n *cluster.Node, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = append(append(os.Environ(), "DOCKER_HOST=unix://"+n.Socket), env...)
	return cmd.CombinedOutput()
}

// replicas asks every controller task on the running nodes for its role.
func replicas(ctx context.Context, nodes []*cluster.Node) ([]replica, string) {
	// Every node and replica at once: a take-over is timed by these polls,
	// and one exec after another would add their time to it.
	type answer struct {
		rs  []replica
		why string
	}
	answers := make([]answer, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs, err := n.Client.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name=swarmsec_controller"))})
			if err != nil {
				answers[i].why = n.Hostname + ": " + err.Error()
				return
			}
			rs := make([]replica, len(cs))
			whys := make([]string, len(cs))
			var cwg sync.WaitGroup
			for j, c := range cs {
				cwg.Add(1)
				go func() {
					defer cwg.Done()
					b, err := docker(ctx, n, nil, "exec", c.ID, "/swarmsec", "status", "-o", "json")
					if err != nil {
						whys[j] = fmt.Sprintf("%s: %s: %v: %s", n.Hostname, c.ID[:12], err, b)
						return
					}
					rs[j] = replica{node: n, container: c.ID}
					if err := json.Unmarshal(b, &rs[j]); err != nil {
						whys[j] = err.Error()
					}
				}()
			}
			cwg.Wait()
			answers[i] = answer{rs: rs, why: strings.Join(slices.DeleteFunc(whys, func(w string) bool { return w == "" }), "; ")}
		}()
	}
	wg.Wait()
	var out []replica
	for _, a := range answers {
		if a.why != "" {
			return nil, a.why
		}
		out = append(out, a.rs...)
	}
	return out, ""
}

func leaderOf(rs []replica) *replica {
	for i := range rs {
		if rs[i].Leader {
			return &rs[i]
		}
	}
	return nil
}

// TestFailover deploys swarmsec as the stack of deploy/swarmsec.yml, from
// the image (loaded into the nodes), on the cluster's three managers;
// converges a stack under a policy; then kills the leader's node: another
// replica takes over within 20s and reverts a drift made after the kill.
// Then the new leader's task is killed (another takes over once the lease
// expires), and a leader stopped cleanly hands over within 2s. No replica
// ever writes while it is not the leader.
func TestFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	managers := slices.DeleteFunc(slices.Clone(testCluster.Nodes), func(n *cluster.Node) bool { return !n.Manager })
	if len(managers) < 3 {
		t.Skipf("the cluster has %d managers; failover needs three", len(managers))
	}
	// The stack swarmsec guards, and its policy, on every manager.
	cli := manager()
	netID := swarmtest.CreateNetwork(ctx, t, cli, "fo_default", swarmtest.WithNetworkLabels(map[string]string{"com.docker.stack.namespace": "fo"}))
	for _, app := range []string{"api", "db"} {
		createService(ctx, t, swarmtest.WithName("fo_"+app), swarmtest.WithReplicas(0),
			swarmtest.WithServiceLabels(map[string]string{"com.docker.stack.namespace": "fo", "app": app}), swarmtest.WithNetwork("fo_default", app))
	}
	policy := []byte(`apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata: {name: fo-db}
spec:
  serviceSelector: {matchLabels: {swarmsec.io/service: fo_db}}
  ingress:
    - from: [{serviceSelector: {matchLabels: {swarmsec.io/service: fo_api}}}]
`)
	writeFiles(ctx, t, managers, map[string][]byte{"etc/swarmsec/manifests/fo-db.yaml": policy})
	remove := deploySwarmsec(ctx, t, "/etc/swarmsec/manifests")
	var down *cluster.Node
	t.Cleanup(func() {
		ctx := context.WithoutCancel(ctx)
		if down != nil {
			if err := testCluster.Host.ContainerStart(ctx, down.Container, container.StartOptions{}); err != nil {
				t.Errorf("restart %s: %v", down.Hostname, err)
			}
			if err := swarmtest.PollE(ctx, 3*time.Minute, func() (bool, string) { return testCluster.NodesReady(ctx) }); err != nil {
				t.Errorf("the cluster did not come back: %v", err)
			}
		}
		remove()
	})

	alive := managers
	var rs []replica
	isolated := func(c interface {
		ServiceInspectWithRaw(context.Context, string, swarm.ServiceInspectOptions) (swarm.Service, []byte, error)
	}) (bool, string) {
		svc, _, err := c.ServiceInspectWithRaw(ctx, "fo_db", swarm.ServiceInspectOptions{})
		if err != nil {
			return false, err.Error()
		}
		on := slices.ContainsFunc(svc.Spec.TaskTemplate.Networks, func(a swarm.NetworkAttachmentConfig) bool { return a.Target == netID })
		return len(svc.Spec.TaskTemplate.Networks) > 0 && !on, fmt.Sprintf("fo_db networks %+v", svc.Spec.TaskTemplate.Networks)
	}
	swarmtest.Poll(ctx, t, 3*time.Minute, func() (bool, string) {
		var why string
		if rs, why = replicas(ctx, alive); why != "" {
			return false, why
		}
		n := 0
		for _, r := range rs {
			if r.Leader {
				n++
			}
		}
		if ok, why := isolated(cli); !ok {
			return false, why
		}
		return len(rs) == 3 && n == 1, fmt.Sprintf("%d replicas, %d leaders", len(rs), n)
	})
	noFollowerWrites := func(rs []replica) {
		for _, r := range rs {
			if r.Writes != 0 {
				t.Errorf("%s wrote %d times while it followed", r.Identity, r.Writes)
			}
		}
	}
	noFollowerWrites(rs)
	first := leaderOf(rs)
	t.Logf("the stack is up on %d managers; %s (on %s) leads and isolated fo_db", len(rs), first.Identity, first.node.Hostname)

	// The leader's node goes: its engine container stops.
	down = first.node
	killed := time.Now()
	if err := testCluster.Host.ContainerKill(ctx, down.Container, "KILL"); err != nil {
		t.Fatal(err)
	}
	alive = slices.DeleteFunc(slices.Clone(managers), func(n *cluster.Node) bool { return n == down })
	swarmtest.Poll(ctx, t, 40*time.Second, func() (bool, string) {
		var why string
		if rs, why = replicas(ctx, alive); why != "" {
			return false, why
		}
		return leaderOf(rs) != nil, "no leader among the surviving replicas"
	})
	took := time.Since(killed)
	second := leaderOf(rs)
	t.Logf("%s (on %s) took over %s after the node went", second.Identity, second.node.Hostname, took.Round(100*time.Millisecond))
	if took > 20*time.Second {
		t.Errorf("take-over after %s, want within 20s", took.Round(100*time.Millisecond))
	}
	// A drift made after the kill is reverted by the new leader.
	live := alive[0].Client
	svc, _, err := live.ServiceInspectWithRaw(ctx, "fo_db", swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := svc.Spec
	spec.TaskTemplate.Networks = append(slices.Clone(spec.TaskTemplate.Networks), swarm.NetworkAttachmentConfig{Target: netID})
	if _, err := live.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	swarmtest.Poll(ctx, t, 30*time.Second, func() (bool, string) { return isolated(live) })
	t.Log("the new leader reverted a drift made after the kill")

	// The leader's task is killed, not its node: the lease expires and
	// another replica takes over.
	killed = time.Now()
	if out, err := docker(ctx, second.node, nil, "kill", second.container); err != nil {
		t.Fatalf("kill: %v\n%s", err, out)
	}
	swarmtest.Poll(ctx, t, 40*time.Second, func() (bool, string) {
		var why string
		if rs, why = replicas(ctx, alive); why != "" {
			return false, why
		}
		l := leaderOf(rs)
		return l != nil && l.container != second.container, "no new leader"
	})
	t.Logf("%s took over %s after the leader's task was killed", leaderOf(rs).Identity, time.Since(killed).Round(100*time.Millisecond))
	if d := time.Since(killed); d > 20*time.Second {
		t.Errorf("take-over after %s, want within 20s", d.Round(100*time.Millisecond))
	}

	// Once both survivors run, a leader stopped cleanly hands over at once.
	swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
		var why string
		if rs, why = replicas(ctx, alive); why != "" {
			return false, why
		}
		return len(rs) == 2 && leaderOf(rs) != nil, fmt.Sprintf("%d replicas", len(rs))
	})
	noFollowerWrites(rs)
	third := leaderOf(rs)
	stopped := time.Now()
	if out, err := docker(ctx, third.node, nil, "stop", "-t", "10", third.container); err != nil {
		t.Fatalf("stop: %v\n%s", err, out)
	}
	var other *replica
	for i := range rs {
		if rs[i].container != third.container {
			other = &rs[i]
		}
	}
	swarmtest.Poll(ctx, t, 30*time.Second, func() (bool, string) {
		b, err := docker(ctx, other.node, nil, "exec", other.container, "/swarmsec", "status", "-o", "json")
		if err != nil {
			return false, string(b)
		}
		var r replica
		return json.Unmarshal(b, &r) == nil && r.Leader, "the other replica does not lead yet"
	})
	handover := time.Since(stopped)
	t.Logf("hand-over after a clean stop: %s", handover.Round(100*time.Millisecond))
	if handover > 2*time.Second {
		logs, _ := docker(ctx, third.node, nil, "logs", "--tail", "15", third.container)
		t.Errorf("hand-over took %s after a clean stop, want within 2s; the stopped leader's log:\n%s", handover.Round(100*time.Millisecond), logs)
	}
	noFollowerWrites(rs)
}
