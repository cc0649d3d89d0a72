//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// TestSmoke proves the harness: services on one overlay network reach one
// another through tasks.<name> both ways, a service on another network is
// out of reach, a task reaches the outside target, and a host-mode
// published port answers on its node's bridge address.
func TestSmoke(t *testing.T) {
	ctx := context.Background()
	m := manager()
	node := testCluster.Workers()[0]

	swarmtest.CreateNetwork(ctx, t, m, "smoke-front")
	swarmtest.CreateNetwork(ctx, t, m, "smoke-back")
	network := map[string]string{"smoke-x": "smoke-front", "smoke-y": "smoke-front", "smoke-z": "smoke-back"}
	services := []string{"smoke-x", "smoke-y", "smoke-z"}
	for _, name := range services {
		createService(ctx, t,
			swarmtest.WithName(name),
			swarmtest.WithNetwork(network[name]),
			swarmtest.WithReplicas(2),
			swarmtest.OnNode(node.Hostname),
		)
	}
	for _, name := range services {
		swarmtest.WaitServiceConverged(ctx, t, m, name)
	}

	t.Run("reachability", func(t *testing.T) {
		// Every replica of the target must answer (--all); across networks
		// the name does not even resolve.
		swarmtest.CheckMatrixByRows(ctx, t, services, services,
			func(from, to string) bool { return network[from] == network[to] },
			swarmtest.ServiceRowProbe(m, testCluster.ProbeOpts(swarmtest.WithAllAddresses())...))
	})

	t.Run("egress to the outside target", func(t *testing.T) {
		ok, out := probe(ctx, t, "smoke-x", testCluster.Outside.Addr())
		if !ok || !strings.Contains(out, "hostname=e2e-outside") {
			t.Fatalf("smoke-x did not reach the outside target %s:\n%s", testCluster.Outside.Addr(), out)
		}
	})

	t.Run("probe through one engine, across nodes", func(t *testing.T) {
		// The one-node style of the integration tests: no WithEngines, so
		// the task probed from runs on the node of the client given.
		if swarmtest.EnsureSwarm(ctx, t, m) {
			t.Fatal("EnsureSwarm initialized a Swarm on the manager, which has one")
		}
		createService(ctx, t,
			swarmtest.WithName("smoke-m"),
			swarmtest.WithNetwork("smoke-front"),
			swarmtest.OnNode(testCluster.Manager().Hostname),
		)
		swarmtest.WaitTasksRunning(ctx, t, m, "smoke-m", 1)
		// A plain overlay network carries traffic between nodes.
		if ok, out := swarmtest.Probe(ctx, t, m, "smoke-m", swarmtest.TasksAddr("smoke-x"), swarmtest.WithAllAddresses()); !ok {
			t.Fatalf("smoke-m on %s did not reach both smoke-x tasks on %s:\n%s", testCluster.Manager().Hostname, node.Hostname, out)
		}
	})

	t.Run("host-mode published port", func(t *testing.T) {
		const port = 18080
		web := testCluster.Workers()[1]
		createService(ctx, t,
			swarmtest.WithName("smoke-web"),
			swarmtest.WithNetwork("smoke-front"),
			swarmtest.WithHostPort(port),
			swarmtest.OnNode(web.Hostname),
		)
		swarmtest.WaitServiceConverged(ctx, t, m, "smoke-web")
		addr := net.JoinHostPort(web.IP, strconv.Itoa(port))

		// From a container of the machine's engine on the bridge network.
		code, out, err := swarmtest.Exec(ctx, testCluster.Host, testCluster.Outside.Container, "/testapp", "probe", addr)
		if err != nil || code != 0 {
			t.Fatalf("probe %s from the outside target: exit %d, %v:\n%s", addr, code, err, out)
		}
		// And from this test process, through the bridge.
		tasks, err := swarmtest.ServiceTasks(ctx, m, "smoke-web")
		if err != nil {
			t.Fatal(err)
		}
		var want []string // task containers' hostnames: their ID prefix
		for _, task := range tasks {
			if cs := task.Status.ContainerStatus; cs != nil && len(cs.ContainerID) >= 12 {
				want = append(want, cs.ContainerID[:12])
			}
		}
		var body string
		swarmtest.Poll(ctx, t, 30*time.Second, func() (bool, string) {
			body, err = httpGet(ctx, "http://"+addr+"/")
			if err != nil {
				return false, err.Error()
			}
			return true, ""
		})
		if !slices.Contains(want, body) {
			t.Fatalf("GET http://%s/ answered %q, want one of the task hostnames %v", addr, body, want)
		}
		t.Logf("GET http://%s/ answered by task %s", addr, body)
	})
}

func httpGet(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	// No proxy from the environment: the request goes to the node only.
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", url, resp.Status)
	}
	return strings.TrimSpace(string(b)), nil
}

// TestRunSwarmsec runs the swarmsec binary as a user would.
func TestRunSwarmsec(t *testing.T) {
	stdout, stderr, code := RunSwarmsec(context.Background(), t, "--help")
	if code != 0 {
		t.Fatalf("swarmsec --help: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "Usage:") || !strings.Contains(stdout, "swarmsec") {
		t.Fatalf("swarmsec --help printed no usage:\n%s", stdout)
	}
}
