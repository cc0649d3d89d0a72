//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/e2e/cluster"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// TestAgentEnforcesPortsAndDirections deploys the stack with "db accepts
// api on 8080 only" and "api accepts nobody", on services that listen on
// 8080, 8085 and 9090 (DNS round robin: no IPVS here). The network layer
// connects api and db both ways on every port; the agents narrow it: api
// reaches db on 8080 and not on 9090, db opens nothing to api, and each
// refused attempt shows in `swarmsec flows` as blocked with the policy and
// the node. db's rule says log: all, so api's admitted connections to
// db:8080 show as allowed; an audit-mode policy that would limit api's
// egress to db:7070 cuts nothing and shows them as would-block. Then, on
// the same stack and with one manifest change, cases of Kubernetes' netpol
// e2e suite: a port range (endPort), egress to a service only (web, which
// accepts api, drops out of api's reach) and an egress block with an
// except (one outside target reached, the excepted one not).
func TestAgentEnforcesPortsAndDirections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	managers := slices.DeleteFunc(slices.Clone(testCluster.Nodes), func(n *cluster.Node) bool { return !n.Manager })
	apiNode, dbNode := testCluster.ProbedNode(0), testCluster.ProbedNode(1)
	// A second outside target: the address an egress block's except takes out.
	excepted, err := testCluster.StartOutside(ctx, "dp-except")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = testCluster.Host.ContainerRemove(context.WithoutCancel(ctx), excepted.Container, container.RemoveOptions{Force: true})
	})
	for _, s := range []struct{ name, node string }{{"dp_api", apiNode.Hostname}, {"dp_db", dbNode.Hostname}, {"dp_web", dbNode.Hostname}} {
		createService(ctx, t, swarmtest.WithName(s.name), swarmtest.WithCommand("serve", "--listen", ":8080,:8085,:9090"),
			swarmtest.WithServiceLabels(map[string]string{"app": s.name}), swarmtest.WithEndpointMode(swarm.ResolutionModeDNSRR),
			swarmtest.OnNode(s.node))
	}
	swarmtest.WaitTasksRunning(ctx, t, manager(), "dp_api", 1)
	swarmtest.WaitTasksRunning(ctx, t, manager(), "dp_db", 1)
	swarmtest.WaitTasksRunning(ctx, t, manager(), "dp_web", 1)
	writeFiles(ctx, t, managers, map[string][]byte{
		"etc/swarmsec/dp-manifests/db.yaml": dbAccepts("[{port: 8080}]"),
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
		"etc/swarmsec/dp-manifests/web.yaml": []byte(`apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata: {name: web-accepts-api}
spec:
  serviceSelector: {matchLabels: {app: dp_web}}
  ingress:
    - from: [{serviceSelector: {matchLabels: {app: dp_api}}}]
`),
	})
	deployed := time.Now()
	t.Cleanup(deploySwarmsec(ctx, t, "/etc/swarmsec/dp-manifests"))

	cells := []cell{
		{"dp_api", "tasks.dp_db:8080", true},
		{"dp_api", "tasks.dp_db:8085", false},
		{"dp_api", "tasks.dp_db:9090", false},
		{"dp_api", "tasks.dp_web:8080", true},
		{"dp_db", "tasks.dp_api:8080", false},
		{"dp_db", "tasks.dp_api:9090", false},
	}
	pollCells(ctx, t, 4*time.Minute, cells)
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

	// Cases of Kubernetes' network-policy e2e suite (test/e2e/network/netpol)
	// that Swarm can express. The stack as deployed is the first (Swarm has
	// no named container ports: the port is a number); one manifest change
	// (each change rolls the agents: one for all) then gives db a port range
	// and api an egress to db and to a block holding the outside targets
	// less one (the netpol suite lets DNS out the same way), and each case
	// checks its probes. web accepts api: only api's egress keeps it out.
	block := commonBlock(t, testCluster.Outside.IP, excepted.IP)
	outside, except := testCluster.Outside.Addr(), excepted.Addr()
	t.Logf("netpol %q: holds as deployed", "should allow ingress access on one named port")
	netpolStart := time.Now()
	writeFiles(ctx, t, managers, map[string][]byte{
		"etc/swarmsec/dp-manifests/db.yaml": dbAccepts("[{port: 8080, endPort: 8090}]"),
		"etc/swarmsec/dp-manifests/api-egress.yaml": []byte(fmt.Sprintf(`apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata: {name: api-egress}
spec:
  serviceSelector: {matchLabels: {app: dp_api}}
  egress:
    - to: [{serviceSelector: {matchLabels: {app: dp_db}}}]
    - to: [{ipBlock: {cidr: %s, except: [%s/32]}}]
`, block, excepted.IP)),
	})
	for _, c := range []struct {
		netpol string
		cells  []cell
	}{
		{"should enforce policy to allow traffic only from a port range", []cell{{"dp_api", "tasks.dp_db:8085", true}, {"dp_api", "tasks.dp_db:9090", false}}},
		{"should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector", []cell{{"dp_api", "tasks.dp_db:8080", true}, {"dp_api", "tasks.dp_web:8080", false}}},
		{"should enforce except clause while egress access to server in CIDR block", []cell{{"dp_api", outside, true}, {"dp_api", except, false}}},
	} {
		pollCells(ctx, t, 2*time.Minute, c.cells)
		t.Logf("netpol %q: holds %s after the manifest change", c.netpol, time.Since(netpolStart).Round(100*time.Millisecond))
	}
	t.Logf("netpol cases: %s", time.Since(netpolStart).Round(100*time.Millisecond))
}

// dbAccepts is the policy "db accepts api on ports".
func dbAccepts(ports string) []byte {
	return []byte(`apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata: {name: db-accepts-api}
spec:
  serviceSelector: {matchLabels: {app: dp_db}}
  ingress:
    - from: [{serviceSelector: {matchLabels: {app: dp_api}}}]
      ports: ` + ports + `
      log: all
`)
}

// commonBlock is the smallest IPv4 block holding both addresses, written
// as its network address.
func commonBlock(t *testing.T, a, b string) string {
	t.Helper()
	x, err := netip.ParseAddr(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := netip.ParseAddr(b)
	if err != nil {
		t.Fatal(err)
	}
	for bits := x.BitLen(); bits >= 0; bits-- {
		if p, _ := x.Prefix(bits); p.Contains(y) {
			return p.String()
		}
	}
	t.Fatalf("no block holds %s and %s", a, b)
	return ""
}

// cell is a probe from a service's task to an address and whether it
// must connect.
type cell struct {
	from, addr string
	want       bool
}

// pollCells probes the cells, one exec per source service, until every
// one gives what it wants.
func pollCells(ctx context.Context, t *testing.T, limit time.Duration, cells []cell) {
	t.Helper()
	rows := map[string][]string{}
	for _, c := range cells {
		rows[c.from] = append(rows[c.from], c.addr)
	}
	swarmtest.Poll(ctx, t, limit, func() (bool, string) {
		var wrong []string
		for from, addrs := range rows {
			// A task may be rolling onto its new networks: not yet.
			got, err := swarmtest.ProbeEachE(ctx, manager(), from, addrs, testCluster.ProbeOpts(swarmtest.WithProbeTimeout(time.Second))...)
			if err != nil {
				return false, err.Error()
			}
			for _, c := range cells {
				if r, ok := got[c.addr]; ok && c.from == from && r.OK != c.want {
					wrong = append(wrong, fmt.Sprintf("%s -> %s: connected %v, want %v: %s", c.from, c.addr, r.OK, c.want, strings.TrimSpace(r.Output)))
				}
			}
		}
		return len(wrong) == 0, strings.Join(wrong, "\n")
	})
}
