package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// checkEncryption finds out whether tasks on two different nodes talk over
// an encrypted overlay network, by trying it: a service on each of two
// workers, both attached to a plain and to an encrypted overlay network,
// and a probe from one to the other's address on each. The plain network is
// the control: if it fails too, the cluster is broken and that is an error.
// Kernels without ESP (CONFIG_INET_ESP) drop the encrypted traffic; the
// engines' logs then name esp, which the report quotes.
func (c *Cluster) checkEncryption(ctx context.Context) (ok bool, report string, err error) {
	w := c.Workers()
	if len(w) < 2 {
		return false, "encrypted overlay across nodes: not checked (fewer than two workers)", nil
	}
	m := c.Manager().Client
	prefix := "e2e-espcheck-"
	// Remove what the check made before the tests start (they may list
	// the Swarm's services and networks): services at once, then networks.
	var serviceIDs, networkIDs []string
	defer func() {
		ctx := context.WithoutCancel(ctx)
		var fns []func() error
		for _, id := range serviceIDs {
			fns = append(fns, func() error { return swarmtest.RemoveServiceE(ctx, m, id) })
		}
		if err := parallel(fns...); err != nil {
			c.logf("e2e: encryption check cleanup: %v", err)
		}
		fns = nil
		for _, id := range networkIDs {
			fns = append(fns, func() error { return swarmtest.RemoveNetworkE(ctx, m, id) })
		}
		if err := parallel(fns...); err != nil {
			c.logf("e2e: encryption check cleanup: %v", err)
		}
	}()
	plain, err := m.NetworkCreate(ctx, prefix+"plain", network.CreateOptions{Driver: "overlay", Labels: swarmtest.Labels()})
	if err != nil {
		return false, "", err
	}
	networkIDs = append(networkIDs, plain.ID)
	enc, err := m.NetworkCreate(ctx, prefix+"encrypted", network.CreateOptions{
		Driver: "overlay", Labels: swarmtest.Labels(), Options: map[string]string{"encrypted": ""},
	})
	if err != nil {
		return false, "", err
	}
	networkIDs = append(networkIDs, enc.ID)

	for i, node := range w[:2] {
		spec := swarmtest.ServiceSpec(
			swarmtest.WithName(fmt.Sprintf("%s%d", prefix, i)),
			swarmtest.WithImage(c.AppImage),
			swarmtest.OnNode(node.Hostname),
			swarmtest.WithNetwork(plain.ID),
			swarmtest.WithNetwork(enc.ID),
		)
		resp, err := m.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{})
		if err != nil {
			return false, "", err
		}
		serviceIDs = append(serviceIDs, resp.ID)
	}
	ids := serviceIDs
	for _, id := range ids {
		if err := swarmtest.WaitTasksRunningE(ctx, m, id, 1); err != nil {
			return false, "", fmt.Errorf("encryption check service: %w", err)
		}
	}
	// The address of the second service's task on each network.
	tasks, err := m.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", ids[1]), filters.Arg("desired-state", "running"))})
	if err != nil {
		return false, "", err
	}
	if len(tasks) != 1 {
		return false, "", fmt.Errorf("encryption check: %d tasks of the target service", len(tasks))
	}
	addrOn := func(networkID string) (string, error) {
		for _, a := range tasks[0].NetworksAttachments {
			if a.Network.ID == networkID && len(a.Addresses) > 0 {
				ip, _, err := net.ParseCIDR(a.Addresses[0])
				if err != nil {
					return "", err
				}
				return net.JoinHostPort(ip.String(), strconv.Itoa(swarmtest.AppPort)), nil
			}
		}
		return "", errors.New("encryption check: target task has no address on " + networkID)
	}
	probe := func(networkID string) (bool, string, error) {
		addr, err := addrOn(networkID)
		if err != nil {
			return false, "", err
		}
		return swarmtest.ProbeE(ctx, m, ids[0], addr, swarmtest.WithEngines(c.Engine))
	}
	if ok, out, err := probe(plain.ID); err != nil {
		return false, "", err
	} else if !ok {
		return false, "", fmt.Errorf("tasks on %s and %s do not talk even on a plain overlay network: %s", w[0].Hostname, w[1].Hostname, out)
	}
	ok, out, err := probe(enc.ID)
	if err != nil {
		return false, "", err
	}
	if ok {
		return true, "encrypted overlay across nodes: works (IPsec ESP available); probed tasks are spread across nodes", nil
	}
	report = "encrypted overlay across nodes: DROPPED (no ESP in this kernel?); probed tasks on encrypted networks are placed on one node (" + w[0].Hostname + ")"
	if line := grepLogs(ctx, c.Host, c.Nodes, "Proto: esp"); line != "" {
		// Keep the gist: the message holds the SA's key.
		if i := strings.Index(line, "Proto: esp"); i >= 0 {
			rest := line[i+len("Proto: esp"):]
			line = line[:i+len("Proto: esp")] + ", ...}"
			if j := strings.LastIndex(rest, "}: "); j >= 0 {
				line += rest[j+1:]
			}
		}
		report += "; engine log: " + strings.TrimSuffix(line, `"`)
	}
	return false, report + "; probe: " + strings.TrimSpace(out), nil
}

// grepLogs returns the first line of the nodes' engine logs that contains
// word, trimmed of its timestamp.
func grepLogs(ctx context.Context, host *client.Client, nodes []*Node, word string) string {
	for _, n := range nodes {
		for _, line := range strings.Split(containerLogs(ctx, host, n.Container, 2000), "\n") {
			if strings.Contains(line, word) {
				if i := strings.Index(line, "msg="); i >= 0 {
					line = line[i:]
				}
				return n.Hostname + ": " + line
			}
		}
	}
	return ""
}
