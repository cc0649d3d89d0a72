//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/e2e/cluster"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

const (
	agentHostPort    = 18081 // ag_host, host mode, a task on every node
	agentIngressPort = 18082 // ag_ingress, the routing mesh
)

// connects probes addr from an outside client.
func connects(ctx context.Context, t *testing.T, from cluster.Outside, addr string) bool {
	t.Helper()
	code, out, err := swarmtest.Exec(ctx, testCluster.Host, from.Container, "/testapp", "probe", addr, "--timeout", "2s")
	if err != nil || code > 1 {
		t.Fatalf("probe %s from %s: exit %d, %v: %s", addr, from.IP, code, err, out)
	}
	return code == 0
}

// agentMetric reads an agent's counter on a node, from the node's own
// loopback (the agent shares the node's network namespace).
func agentMetric(ctx context.Context, n *cluster.Node, port int, verdict string) float64 {
	// The node's tools are the machine's (its /usr): curl, else wget.
	code, out, err := swarmtest.Exec(ctx, testCluster.Host, n.Container, "curl", "-s", "http://127.0.0.1:9478/metrics")
	if err != nil || code != 0 {
		if code, out, err = swarmtest.Exec(ctx, testCluster.Host, n.Container, "wget", "-qO-", "http://127.0.0.1:9478/metrics"); err != nil || code != 0 {
			return 0
		}
	}
	re := regexp.MustCompile(`swarmsec_agent_packets_total\{port="` + strconv.Itoa(port) + `/tcp",service="[^"]*",verdict="` + verdict + `"\} (\S+)`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

func agentPolicies(from string) map[string][]byte {
	policy := func(name, svc string, port int, mode string) []byte {
		return []byte(fmt.Sprintf(`apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata: {name: %s}
spec:
  serviceSelector: {matchLabels: {swarmsec.io/service: %s}}
  publish:
    - port: %d
      mode: %s
%s`, name, svc, port, mode, from))
	}
	return map[string][]byte{
		"etc/swarmsec/agent-manifests/ag-host.yaml":    policy("ag-host", "ag_host", agentHostPort, "host"),
		"etc/swarmsec/agent-manifests/ag-ingress.yaml": policy("ag-ingress", "ag_ingress", agentIngressPort, "ingress"),
	}
}

// TestAgentAdmitsOnlyListedSources deploys the stack (controllers on the
// managers, an agent on every node) with policies that admit one client
// address to a host-mode port (a task on every node) and an ingress-mode
// port. Two clients outside the Swarm probe every node: the admitted one
// connects, the other does not, and its attempts show in the agents'
// counters (the admitted one's in the admitted counter) and in swarmsec
// events. The node checks reach the leader's status, and the global
// service, whose tasks span nodes that cannot encrypt, is held rather than
// cut off. Killing an agent opens nothing; dropping `from` opens the port
// again and every agent removes its chains from DOCKER-USER. (The test is
// the one of published-port sources: on three real engines with an agent
// each, it holds all a one-node integration version did.)
func TestAgentAdmitsOnlyListedSources(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	managers := slices.DeleteFunc(slices.Clone(testCluster.Nodes), func(n *cluster.Node) bool { return !n.Manager })
	var (
		clients [2]cluster.Outside
		err     error
	)
	for i, name := range []string{"client-admitted", "client-other"} {
		if clients[i], err = testCluster.StartOutside(ctx, name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = testCluster.Host.ContainerRemove(context.WithoutCancel(ctx), clients[i].Container, container.RemoveOptions{Force: true})
		})
	}
	admitted, other := clients[0], clients[1]
	t.Logf("clients: admitted %s, other %s", admitted.IP, other.IP)

	createService(ctx, t, swarmtest.WithName("ag_host"), swarmtest.WithGlobal(),
		swarmtest.WithPublishedPort(agentHostPort, swarmtest.AppPort, swarm.PortConfigPublishModeHost))
	createService(ctx, t, swarmtest.WithName("ag_ingress"),
		swarmtest.WithPublishedPort(agentIngressPort, swarmtest.AppPort, swarm.PortConfigPublishModeIngress))
	swarmtest.WaitTasksRunning(ctx, t, manager(), "ag_host", len(testCluster.Nodes))
	swarmtest.WaitTasksRunning(ctx, t, manager(), "ag_ingress", 1)
	hostAddr := func(n *cluster.Node) string { return fmt.Sprintf("%s:%d", n.IP, agentHostPort) }
	swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
		for _, n := range testCluster.Nodes {
			if !connects(ctx, t, other, hostAddr(n)) {
				return false, n.Hostname + " does not answer yet"
			}
		}
		return true, ""
	})

	writeFiles(ctx, t, managers, agentPolicies(fmt.Sprintf("      from: [{ipBlock: {cidr: %s/32}}]\n      log: blocked\n", admitted.IP)))
	override := filepath.Join(t.TempDir(), "agent.yml")
	if err := os.WriteFile(override, []byte(`version: "3.8"
services:
  agent:
    command: ["agent", "--log-format", "json", "--events-window", "3s", "--proc", "/host/proc"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	deployed := time.Now()
	t.Cleanup(deploySwarmsec(ctx, t, "/etc/swarmsec/agent-manifests", override))

	// Every node admits the one client and refuses the other.
	swarmtest.Poll(ctx, t, 3*time.Minute, func() (bool, string) {
		for _, n := range testCluster.Nodes {
			if a, o := connects(ctx, t, admitted, hostAddr(n)), connects(ctx, t, other, hostAddr(n)); !a || o {
				return false, fmt.Sprintf("%s: admitted connects %v, other connects %v", n.Hostname, a, o)
			}
		}
		return true, ""
	})
	t.Logf("the host-mode port is restricted on all %d nodes %s after the stack deploy", len(testCluster.Nodes), time.Since(deployed).Round(100*time.Millisecond))

	// Each node counts the other client's attempts. The ingress port's
	// rules are on every node; they see traffic only where the routing
	// mesh DNATs it, which needs IPVS (this machine's kernel has none, and
	// Docker then programs no DOCKER-INGRESS rule).
	for _, n := range testCluster.Nodes {
		ingress := fmt.Sprintf("%s:%d", n.IP, agentIngressPort)
		_, rules, _ := swarmtest.Exec(ctx, testCluster.Host, n.Container, "iptables", "-S")
		if !strings.Contains(rules, "--ctorigdstport "+strconv.Itoa(agentIngressPort)) {
			t.Errorf("%s: no agent rule for the ingress port:\n%s", n.Hostname, rules)
		}
		_, nat, _ := swarmtest.Exec(ctx, testCluster.Host, n.Container, "iptables", "-t", "nat", "-S")
		mesh := strings.Contains(nat, "DOCKER-INGRESS") && strings.Contains(nat, "--dport "+strconv.Itoa(agentIngressPort))
		swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
			connects(ctx, t, other, hostAddr(n))
			connects(ctx, t, admitted, hostAddr(n))
			connects(ctx, t, other, ingress)
			connects(ctx, t, admitted, ingress)
			h, ha := agentMetric(ctx, n, agentHostPort, "blocked"), agentMetric(ctx, n, agentHostPort, "admitted")
			i, a := agentMetric(ctx, n, agentIngressPort, "blocked"), agentMetric(ctx, n, agentIngressPort, "admitted")
			return h > 0 && ha > 0 && (!mesh || i > 0 && a > 0),
				fmt.Sprintf("%s: blocked %v, admitted %v (host); blocked %v, admitted %v (ingress)", n.Hostname, h, ha, i, a)
		})
		if !mesh {
			t.Logf("%s: no routing mesh DNAT for %d (no IPVS): the ingress rules are in place, and nothing reaches them", n.Hostname, agentIngressPort)
		}
	}
	// The events, per source, through a manager.
	swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
		stdout, stderr, code := RunSwarmsec(ctx, t, "events", "--since", "10m")
		want := regexp.MustCompile(`ag_host\s+` + strconv.Itoa(agentHostPort) + `/tcp\s+` + regexp.QuoteMeta(other.IP) + `\s+blocked\s+[1-9]`)
		return code == 0 && want.MatchString(stdout), "swarmsec events:\n" + stdout + stderr
	})

	// The node checks reach the leader, and the global service's move onto
	// an encrypted network is held where its nodes cannot encrypt.
	var st struct {
		Nodes    []agentv1.Report  `json:"nodes"`
		Policies []v1.PolicyStatus `json:"policies"`
	}
	swarmtest.Poll(ctx, t, 2*time.Minute, func() (bool, string) {
		rs, why := replicas(ctx, managers)
		l := leaderOf(rs)
		if why != "" || l == nil {
			return false, "no leader yet " + why
		}
		b, err := docker(ctx, l.node, nil, "exec", l.container, "/swarmsec", "status", "-o", "json")
		if err != nil || json.Unmarshal(b, &st) != nil {
			return false, fmt.Sprintf("status: %v: %s", err, b)
		}
		return len(st.Nodes) == len(testCluster.Nodes), fmt.Sprintf("%d node reports", len(st.Nodes))
	})
	wantESP := agentv1.Failed
	if testCluster.EncryptedCrossNode {
		wantESP = agentv1.OK
	}
	for _, r := range st.Nodes {
		esp, _ := r.Get(agentv1.CheckESP)
		t.Logf("node %s: esp %s: %s", r.Node, esp.Result, esp.Message)
		if esp.Result != wantESP {
			t.Errorf("node %s: esp check %s, want %s (%s)", r.Node, esp.Result, wantESP, testCluster.EncryptionReport)
		}
	}
	if !testCluster.EncryptedCrossNode {
		i := slices.IndexFunc(st.Policies, func(p v1.PolicyStatus) bool { return p.Name == "ag-host" })
		if i < 0 || st.Policies[i].Ready() == nil || st.Policies[i].Ready().Reason != plan.ReasonEncryptionUnavailable {
			t.Errorf("ag-host is not held for EncryptionUnavailable: %+v", st.Policies)
		} else {
			t.Logf("ag-host: %s", st.Policies[i].Ready().Message)
		}
		svc, _, err := manager().ServiceInspectWithRaw(ctx, "ag_host", swarm.ServiceInspectOptions{})
		if err != nil || len(svc.Spec.TaskTemplate.Networks) != 0 {
			t.Errorf("ag_host was moved although held: %+v, %v", svc.Spec.TaskTemplate.Networks, err)
		}
	}

	// An agent killed opens nothing on its node while Swarm replaces it.
	w := testCluster.Workers()[0]
	agents, err := w.Client.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name=swarmsec_agent"))})
	if err != nil || len(agents) != 1 {
		t.Fatalf("agent on %s: %v, %v", w.Hostname, agents, err)
	}
	if err := w.Client.ContainerKill(ctx, agents[0].ID, "KILL"); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	for time.Since(killed) < 15*time.Second {
		if connects(ctx, t, other, hostAddr(w)) {
			t.Fatalf("the other client connected to %s %s after its agent was killed", w.Hostname, time.Since(killed).Round(time.Millisecond))
		}
	}
	swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
		cs, err := w.Client.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name=swarmsec_agent"))})
		return err == nil && len(cs) == 1 && cs[0].ID != agents[0].ID, "no new agent yet"
	})
	if connects(ctx, t, other, hostAddr(w)) || !connects(ctx, t, admitted, hostAddr(w)) {
		t.Fatalf("%s: the rules changed across the agent's restart", w.Hostname)
	}

	// Without `from` every source may connect again, on every node.
	writeFiles(ctx, t, managers, agentPolicies(""))
	opened := time.Now()
	swarmtest.Poll(ctx, t, 2*time.Minute, func() (bool, string) {
		for _, n := range testCluster.Nodes {
			if !connects(ctx, t, other, hostAddr(n)) {
				return false, n.Hostname + " still refuses the other client"
			}
		}
		return true, ""
	})
	t.Logf("every node admits any source again %s after the manifests dropped from", time.Since(opened).Round(100*time.Millisecond))
	// And every agent removes its chains from DOCKER-USER.
	swarmtest.Poll(ctx, t, 30*time.Second, func() (bool, string) {
		for _, n := range testCluster.Nodes {
			_, out, _ := swarmtest.Exec(ctx, testCluster.Host, n.Container, "iptables", "-S", "DOCKER-USER")
			if strings.Contains(out, "SWARMSEC-PORTS") {
				return false, fmt.Sprintf("%s: DOCKER-USER still jumps to the agent's chains:\n%s", n.Hostname, out)
			}
		}
		return true, ""
	})
}
