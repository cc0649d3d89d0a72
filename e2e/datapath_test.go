//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/e2e/cluster"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// TestAgentEnforcesPortsAndDirections deploys the stack with "db accepts
// api on 8080 only" and "api accepts nobody", on services that listen on
// 8080 and 9090 (DNS round robin: no IPVS here). The network layer
// connects api and db both ways on every port; the agents narrow it: api
// reaches db on 8080 and not on 9090, db opens nothing to api, and each
// refused attempt shows in `swarmsec flows` as blocked with the policy and
// the node. db's rule says log: all, so api's admitted connections to
// db:8080 show as allowed; an audit-mode policy that would limit api's
// egress to db:7070 cuts nothing and shows them as would-block.
func TestAgentEnforcesPortsAndDirections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	managers := slices.DeleteFunc(slices.Clone(testCluster.Nodes), func(n *cluster.Node) bool { return !n.Manager })
	apiNode, dbNode := testCluster.ProbedNode(0), testCluster.ProbedNode(1)
	for _, s := range []struct{ name, node string }{{"dp_api", apiNode.Hostname}, {"dp_db", dbNode.Hostname}} {
		createService(ctx, t, swarmtest.WithName(s.name), swarmtest.WithCommand("serve", "--listen", ":8080,:9090"),
			swarmtest.WithServiceLabels(map[string]string{"app": s.name}), swarmtest.WithEndpointMode(swarm.ResolutionModeDNSRR),
			swarmtest.OnNode(s.node))
	}
	swarmtest.WaitTasksRunning(ctx, t, manager(), "dp_api", 1)
	swarmtest.WaitTasksRunning(ctx, t, manager(), "dp_db", 1)
	writeFiles(ctx, t, managers, map[string][]byte{
		"etc/swarmsec/dp-manifests/db.yaml": []byte(`apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata: {name: db-accepts-api}
spec:
  serviceSelector: {matchLabels: {app: dp_db}}
  ingress:
    - from: [{serviceSelector: {matchLabels: {app: dp_api}}}]
      ports: [{port: 8080}]
      log: all
`),
		"etc/swarmsec/dp-manifests/api-audit.yaml": []byte(`apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata: {name: api-egress-audit}
spec:
  serviceSelector: {matchLabels: {app: dp_api}}
  policyTypes: [Egress]
  enforcement: audit
  egress:
    - to: [{serviceSelector: {matchLabels: {app: dp_db}}}]
      ports: [{port: 7070}]
`),
		"etc/swarmsec/dp-manifests/api.yaml": []byte(`apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata: {name: api-accepts-nobody}
spec:
  serviceSelector: {matchLabels: {app: dp_api}}
  policyTypes: [Ingress]
`),
	})
	deployed := time.Now()
	t.Cleanup(deploySwarmsec(ctx, t, "/etc/swarmsec/dp-manifests"))

	type cell struct {
		from, addr string
		want       bool
	}
	cells := []cell{
		{"dp_api", "tasks.dp_db:8080", true},
		{"dp_api", "tasks.dp_db:9090", false},
		{"dp_db", "tasks.dp_api:8080", false},
		{"dp_db", "tasks.dp_api:9090", false},
	}
	swarmtest.Poll(ctx, t, 4*time.Minute, func() (bool, string) {
		var wrong []string
		for _, c := range cells {
			// A task may be rolling onto its new networks: not yet.
			got, out, err := swarmtest.ProbeE(ctx, manager(), c.from, c.addr, testCluster.ProbeOpts(swarmtest.WithProbeTimeout(time.Second))...)
			if err != nil {
				return false, err.Error()
			}
			if got != c.want {
				wrong = append(wrong, fmt.Sprintf("%s -> %s: connected %v, want %v: %s", c.from, c.addr, got, c.want, strings.TrimSpace(out)))
			}
		}
		return len(wrong) == 0, strings.Join(wrong, "\n")
	})
	t.Logf("ports and directions enforced %s after the stack deploy", time.Since(deployed).Round(100*time.Millisecond))

	// Each verdict's flow records, from the agents through the manager:
	// the probe's attempt, then the record naming the policy and node.
	for _, c := range []struct {
		verdict, port, policy string
		args                  []string
	}{
		{"blocked", "9090", "db-accepts-api", nil},
		{"allowed", "8080", "db-accepts-api/ingress[0]", []string{"--records"}},
		{"would-block", "8080", "api-egress-audit", []string{"--records"}},
	} {
		swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
			_, _, _ = swarmtest.ProbeE(ctx, manager(), "dp_api", "tasks.dp_db:"+c.port, testCluster.ProbeOpts(swarmtest.WithProbeTimeout(time.Second))...)
			stdout, stderr, code := RunSwarmsec(ctx, t, append([]string{"flows", "--since", "10m", "-o", "json", "--verdict", c.verdict}, c.args...)...)
			if code != 0 {
				return false, stderr
			}
			sc := bufio.NewScanner(strings.NewReader(stdout))
			for sc.Scan() {
				var f struct {
					Node        string                   `json:"node"`
					NodeID      string                   `json:"nodeID"`
					Verdict     string                   `json:"verdict"`
					Policy      string                   `json:"policy"`
					Source      struct{ Service string } `json:"source"`
					Destination struct {
						Service string
						Port    int
					} `json:"destination"`
				}
				if json.Unmarshal(sc.Bytes(), &f) != nil {
					continue
				}
				if f.Verdict == c.verdict && f.Source.Service == "dp_api" && f.Destination.Service == "dp_db" && fmt.Sprint(f.Destination.Port) == c.port &&
					strings.Contains(f.Policy, c.policy) && f.Node != "" && f.NodeID != "" {
					t.Logf("flow: %s", sc.Text())
					return true, ""
				}
			}
			return false, fmt.Sprintf("no %s flow dp_api -> dp_db:%s naming %s:\n%s", c.verdict, c.port, c.policy, stdout)
		})
	}
}
