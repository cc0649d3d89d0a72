//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// outsideClient is a network namespace of this test's own with one veth
// to the host: a client outside the Swarm with an address of its choosing.
type outsideClient struct {
	ns   string
	addr string // its own address
	host string // the host's end, the address it connects to
}

func newOutsideClient(ctx context.Context, t *testing.T, name string, subnet int) *outsideClient {
	t.Helper()
	c := &outsideClient{ns: name, addr: fmt.Sprintf("198.18.%d.2", subnet), host: fmt.Sprintf("198.18.%d.1", subnet)}
	hostEnd, nsEnd := name+"h", name+"n"
	steps := [][]string{
		{"ip", "netns", "add", name},
		{"ip", "link", "add", hostEnd, "type", "veth", "peer", "name", nsEnd},
		{"ip", "link", "set", nsEnd, "netns", name},
		{"ip", "addr", "add", c.host + "/30", "dev", hostEnd},
		{"ip", "link", "set", hostEnd, "up"},
		{"ip", "netns", "exec", name, "ip", "addr", "add", c.addr + "/30", "dev", nsEnd},
		{"ip", "netns", "exec", name, "ip", "link", "set", nsEnd, "up"},
		{"ip", "netns", "exec", name, "ip", "route", "add", "default", "via", c.host},
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", hostEnd).Run()
		_ = exec.Command("ip", "netns", "del", name).Run()
	})
	for _, s := range steps {
		if out, err := exec.CommandContext(ctx, s[0], s[1:]...).CombinedOutput(); err != nil {
			t.Skipf("cannot make a client namespace (%s): %v %s", strings.Join(s, " "), err, out)
		}
	}
	return c
}

// connects reports whether a TCP connection from the client to the host's
// port opens within two seconds.
//
//nolint:unparam // one test uses it today; the port is that test's, not the client's
func (c *outsideClient) connects(ctx context.Context, port uint32) bool {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", c.ns, "timeout", "2", "bash", "-c",
		fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", c.host, port))
	return cmd.Run() == nil
}

// agentPackets reads swarmsec_agent_packets_total for a port and verdict
// from the agent's /metrics on this host's loopback.
func agentPackets(ctx context.Context, port, verdict string) (float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:9478/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`swarmsec_agent_packets_total\{port="` + regexp.QuoteMeta(port) + `",service="[^"]*",verdict="` + verdict + `"\} (\S+)`)
	m := re.FindSubmatch(body)
	if m == nil {
		return 0, nil
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// TestAgentEnforcesSourcesOnRealSwarm deploys deploy/swarmsec.yml (the
// controller and the node agent) on this one-node Swarm, and a service
// publishing a host-mode port that a policy admits from one address. Two
// clients outside the Swarm (network namespaces with their own addresses)
// connect: the admitted one does, the other does not and its attempts are
// counted and reported by swarmsec events; restarting the agent opens no
// window; dropping `from` from the
// manifest opens the port again and the agent removes its chains.
func TestAgentEnforcesSourcesOnRealSwarm(t *testing.T) {
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("no ip command (iproute2) for the outside clients")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cli := engine(ctx, t)
	id := swarmtest.RunID()[:4]
	stack, label := "ssag"+id, "swarmsec.test.agent"
	admitted := newOutsideClient(ctx, t, "ssa"+id+"a", 1)
	other := newOutsideClient(ctx, t, "ssa"+id+"b", 2)

	const port = 47613
	web := stack + "web"
	removeManagedNetworks(ctx, t, cli, web)
	swarmtest.CreateService(ctx, t, cli, swarmtest.WithName(web),
		swarmtest.WithServiceLabels(map[string]string{label: id}),
		swarmtest.WithPublishedPort(port, swarmtest.AppPort, swarm.PortConfigPublishModeHost))
	swarmtest.WaitTasksRunning(ctx, t, cli, web, 1)
	removeRecords(ctx, t, cli, &app{stack: web, services: []string{web}})
	swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
		return admitted.connects(ctx, port) && other.connects(ctx, port), "the port does not answer yet"
	})

	dir := t.TempDir()
	manifests := filepath.Join(dir, "manifests")
	if err := os.Mkdir(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	policy := func(from string) []byte {
		return []byte(fmt.Sprintf(`apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata: {name: %s}
spec:
  serviceSelector: {matchLabels: {%s: "%s"}}
  publish:
    - port: %d
      mode: host
%s`, web, label, id, port, from))
	}
	write := func(b []byte) {
		// Written beside, then renamed: the controller never reads half a file.
		tmp := filepath.Join(dir, "web.yaml")
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(manifests, "web.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	write(policy(fmt.Sprintf("      from: [{ipBlock: {cidr: %s/32}}]\n      log: blocked\n", admitted.addr)))

	override := filepath.Join(dir, "agent.yml")
	if err := os.WriteFile(override, []byte(fmt.Sprintf(`version: "3.8"
services:
  controller:
    command: ["run", "--manifests", "/manifests", "--log-format", "json", "--agent-service", "%s_agent"]
  agent:
    command: ["agent", "--log-format", "json", "--events-window", "3s", "--proc", "/host/proc"]
`, stack)), 0o644); err != nil {
		t.Fatal(err)
	}
	deployStack(ctx, t, stack, manifests, override)
	t.Cleanup(func() { removeAgentStack(stack) })

	// Enforced: the admitted client connects, the other does not.
	deployed := time.Now()
	swarmtest.Poll(ctx, t, 2*time.Minute, func() (bool, string) {
		a, o := admitted.connects(ctx, port), other.connects(ctx, port)
		return a && !o, fmt.Sprintf("admitted connects: %v, other connects: %v", a, o)
	})
	t.Logf("stack deployed to port restricted: %s", time.Since(deployed).Round(10*time.Millisecond))
	swarmtest.Poll(ctx, t, 30*time.Second, func() (bool, string) {
		other.connects(ctx, port)
		n, err := agentPackets(ctx, fmt.Sprintf("%d/tcp", port), "blocked")
		return err == nil && n > 0, fmt.Sprintf("blocked packets counted: %v (%v)", n, err)
	})
	if n, _ := agentPackets(ctx, fmt.Sprintf("%d/tcp", port), "admitted"); n == 0 {
		t.Errorf("no admitted packets counted")
	}
	// The blocked attempts, per source, through the controller.
	swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
		cs, err := cli.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name="+stack+"_controller"))})
		if err != nil || len(cs) == 0 {
			return false, fmt.Sprintf("controller container: %v", err)
		}
		out, err := exec.CommandContext(ctx, "docker", "exec", cs[0].ID, "/swarmsec", "events", "--agent-service", stack+"_agent", "--since", "10m").CombinedOutput()
		want := regexp.MustCompile(web + `\s+` + strconv.Itoa(port) + `/tcp\s+` + regexp.QuoteMeta(other.addr) + `\s+blocked\s+[1-9]`)
		return err == nil && want.Match(out), fmt.Sprintf("swarmsec events (%v):\n%s", err, out)
	})

	// The node checks reach the controller's status.
	swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
		cs, err := cli.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name="+stack+"_controller"))})
		if err != nil || len(cs) == 0 {
			return false, fmt.Sprintf("controller container: %v", err)
		}
		out, err := exec.CommandContext(ctx, "docker", "exec", cs[0].ID, "/swarmsec", "status", "-o", "json").Output()
		var st struct {
			Nodes []agentv1.Report `json:"nodes"`
		}
		if err != nil || json.Unmarshal(out, &st) != nil || len(st.Nodes) != 1 {
			return false, fmt.Sprintf("status nodes (%v): %s", err, out)
		}
		esp, ok := st.Nodes[0].Get(agentv1.CheckESP)
		t.Logf("node %s: esp %s: %s", st.Nodes[0].Node, esp.Result, esp.Message)
		return ok && esp.Result != agentv1.Unknown, "esp check " + esp.Result
	})

	// Killing the agent opens nothing: the rules stay in the kernel while
	// Swarm starts another task, and the new one finds them in place.
	agents, err := cli.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name="+stack+"_agent"))})
	if err != nil || len(agents) != 1 {
		t.Fatalf("agent containers: %v, %v", agents, err)
	}
	if err := cli.ContainerKill(ctx, agents[0].ID, "KILL"); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	for time.Since(restarted) < 20*time.Second {
		if other.connects(ctx, port) {
			t.Fatalf("the other client connected %s after the agent was killed", time.Since(restarted).Round(time.Millisecond))
		}
	}
	swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
		cs, err := cli.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.swarm.service.name="+stack+"_agent"))})
		return err == nil && len(cs) == 1 && cs[0].ID != agents[0].ID, "no new agent task yet"
	})
	if other.connects(ctx, port) || !admitted.connects(ctx, port) {
		t.Fatal("the rules changed across the agent's restart")
	}

	// No sources listed: the port admits any again and the chains go.
	write(policy(""))
	opened := time.Now()
	swarmtest.Poll(ctx, t, 2*time.Minute, func() (bool, string) {
		return other.connects(ctx, port), "the other client still cannot connect"
	})
	t.Logf("manifest without from to port open: %s", time.Since(opened).Round(10*time.Millisecond))
	swarmtest.Poll(ctx, t, 30*time.Second, func() (bool, string) {
		out, _ := exec.CommandContext(ctx, "iptables", "-S", "DOCKER-USER").CombinedOutput()
		return !bytes.Contains(out, []byte("SWARMSEC-PORTS")), "DOCKER-USER still jumps to the agent's chains:\n" + string(out)
	})
}

// removeAgentStack removes the stack (see removeStack), then the rules
// configs and, should the agent have died holding them, its chains.
func removeAgentStack(stack string) {
	removeStack(stack)
	if out, _ := exec.Command("docker", "config", "ls", "-q", "--filter", "name=swarmsec-agent-rules-").Output(); len(bytes.TrimSpace(out)) > 0 {
		_ = exec.Command("docker", append([]string{"config", "rm"}, strings.Fields(string(out))...)...).Run()
	}
	for _, c := range []string{"SWARMSEC-PORTS-A", "SWARMSEC-PORTS-B"} {
		// -D removes one jump a call: repeat until none is left.
		for {
			if err := exec.Command("iptables", "-D", "DOCKER-USER", "-j", c).Run(); err != nil {
				break
			}
		}
		_ = exec.Command("iptables", "-F", c).Run()
		_ = exec.Command("iptables", "-X", c).Run()
	}
}
