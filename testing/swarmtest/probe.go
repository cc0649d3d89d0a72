package swarmtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

// DefaultProbeTimeout is how long one probe tries to connect. Policies drop
// packets rather than refuse connections, so a blocked probe lasts this long.
const DefaultProbeTimeout = 2 * time.Second

// TasksAddr is the address that reaches the app in every task of service
// without a VIP (there is no IPVS here): tasks.<service>:8080.
func TasksAddr(service string) string {
	return net.JoinHostPort("tasks."+service, strconv.Itoa(AppPort))
}

// EngineFunc returns a client of the engine on the Swarm node with this ID.
type EngineFunc func(nodeID string) (*client.Client, error)

// ProbeOpt adjusts Probe.
type ProbeOpt func(*probeConfig)

type probeConfig struct {
	engines EngineFunc
	timeout time.Duration
	all     bool
}

// WithEngines lets Probe use a task on any node: the manager's client lists
// the tasks and engines gives the client of the node a task runs on, to exec
// there. Without it Probe only uses tasks on the node of the client it is
// given.
func WithEngines(engines EngineFunc) ProbeOpt {
	return func(c *probeConfig) { c.engines = engines }
}

// WithProbeTimeout replaces DefaultProbeTimeout.
func WithProbeTimeout(d time.Duration) ProbeOpt { return func(c *probeConfig) { c.timeout = d } }

// WithAllAddresses makes the probe succeed only when every address the name
// resolves to connects (`testapp probe --all`), not just one.
func WithAllAddresses() ProbeOpt { return func(c *probeConfig) { c.all = true } }

// Probe runs `/testapp probe addr` inside a running task of fromService
// (name or ID) and reports whether it connected, with the probe's output
// (one line per address tried). Errors other than a failed connection (no
// running task, exec failed) fail the test.
func Probe(ctx context.Context, tb testing.TB, cli *client.Client, fromService, addr string, opts ...ProbeOpt) (ok bool, out string) {
	tb.Helper()
	ok, out, err := ProbeE(ctx, cli, fromService, addr, opts...)
	if err != nil {
		tb.Fatalf("probe %s from %s: %v", addr, fromService, err)
	}
	return ok, out
}

// ProbeE is Probe returning an error instead of failing the test; it may be
// called from any goroutine.
func ProbeE(ctx context.Context, cli *client.Client, fromService, addr string, opts ...ProbeOpt) (ok bool, out string, err error) {
	cfg := probeConfig{timeout: DefaultProbeTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	engine, containerID, err := taskContainer(ctx, cli, cfg.engines, fromService)
	if err != nil {
		return false, "", err
	}
	cmd := []string{"/testapp", "probe", addr, "--timeout", cfg.timeout.String()}
	if cfg.all {
		cmd = append(cmd, "--all")
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout+30*time.Second)
	defer cancel()
	code, out, err := Exec(ctx, engine, containerID, cmd...)
	if err != nil {
		return false, out, err
	}
	switch code {
	case 0:
		return true, out, nil
	case 1:
		return false, out, nil
	}
	return false, out, fmt.Errorf("%v exited %d: %s", cmd, code, out)
}

// ProbeResult is what probing one address gave (see ProbeE).
type ProbeResult struct {
	OK     bool
	Output string
	Err    error
}

// ProbeEachE probes each of addrs from one running task of fromService in a
// single exec (`/testapp probe-each`): each address is probed as ProbeE
// would, concurrently, for the price of one exec. The results are by
// address; err is set when the exec itself failed (then there are none).
func ProbeEachE(ctx context.Context, cli *client.Client, fromService string, addrs []string, opts ...ProbeOpt) (map[string]ProbeResult, error) {
	cfg := probeConfig{timeout: DefaultProbeTimeout}
	for _, o := range opts {
		o(&cfg)
	}
	engine, containerID, err := taskContainer(ctx, cli, cfg.engines, fromService)
	if err != nil {
		return nil, err
	}
	cmd := []string{"/testapp", "probe-each", "--timeout", cfg.timeout.String()}
	if cfg.all {
		cmd = append(cmd, "--all")
	}
	cmd = append(cmd, addrs...)
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout+30*time.Second)
	defer cancel()
	code, out, err := Exec(ctx, engine, containerID, cmd...)
	if err != nil {
		return nil, err
	}
	if code != 0 {
		return nil, fmt.Errorf("%v exited %d: %s", cmd, code, out)
	}
	return parseProbeEach(out, addrs, cmd)
}

// parseProbeEach reads probe-each's output: for each address, a line
// "=== ADDR exit N", then that probe's output.
func parseProbeEach(out string, addrs []string, cmd []string) (map[string]ProbeResult, error) {
	res := map[string]ProbeResult{}
	var (
		cur   string
		code  int
		lines []string
	)
	flush := func() {
		if cur == "" {
			return
		}
		r := ProbeResult{OK: code == 0, Output: strings.Join(lines, "")}
		if code > 1 {
			r.Err = fmt.Errorf("%v: probe of %s exited %d: %s", cmd[:2], cur, code, r.Output)
		}
		res[cur] = r
	}
	for _, line := range strings.SplitAfter(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "=== "); ok {
			addr, n, found := strings.Cut(strings.TrimSpace(rest), " exit ")
			c, err := strconv.Atoi(n)
			if found && err == nil {
				flush()
				cur, code, lines = addr, c, nil
				continue
			}
		}
		lines = append(lines, line)
	}
	flush()
	for _, a := range addrs {
		if _, ok := res[a]; !ok {
			return nil, fmt.Errorf("%v: no result for %s in its output: %s", cmd[:2], a, out)
		}
	}
	return res, nil
}

// taskContainer picks a running task of service and returns the engine
// running it and its container ID. Tasks are tried in slot order.
func taskContainer(ctx context.Context, cli *client.Client, engines EngineFunc, service string) (*client.Client, string, error) {
	tasks, err := ServiceTasks(ctx, cli, service)
	if err != nil {
		return nil, "", err
	}
	slices.SortFunc(tasks, func(a, b swarm.Task) int { return a.Slot - b.Slot })
	localNode := ""
	if engines == nil {
		info, err := cli.Info(ctx)
		if err != nil {
			return nil, "", err
		}
		localNode = info.Swarm.NodeID
	}
	for _, t := range tasks {
		if t.DesiredState != swarm.TaskStateRunning || t.Status.State != swarm.TaskStateRunning ||
			t.Status.ContainerStatus == nil || t.Status.ContainerStatus.ContainerID == "" {
			continue
		}
		if engines == nil {
			if t.NodeID == localNode {
				return cli, t.Status.ContainerStatus.ContainerID, nil
			}
			continue
		}
		engine, err := engines(t.NodeID)
		if err != nil {
			return nil, "", err
		}
		return engine, t.Status.ContainerStatus.ContainerID, nil
	}
	if engines == nil {
		return nil, "", fmt.Errorf("no running task of service %s on this engine's node %s (pass WithEngines to use other nodes): %s", service, localNode, describeTasks(tasks))
	}
	return nil, "", fmt.Errorf("no running task of service %s: %s", service, describeTasks(tasks))
}

// Exec runs cmd in a container and returns its exit code and combined
// output.
func Exec(ctx context.Context, cli *client.Client, containerID string, cmd ...string) (exitCode int, output string, err error) {
	created, err := cli.ContainerExecCreate(ctx, containerID, container.ExecOptions{Cmd: cmd, AttachStdout: true, AttachStderr: true})
	if err != nil {
		return -1, "", fmt.Errorf("exec in %.12s: %w", containerID, err)
	}
	attached, err := cli.ContainerExecAttach(ctx, created.ID, container.ExecAttachOptions{})
	if err != nil {
		return -1, "", fmt.Errorf("exec in %.12s: %w", containerID, err)
	}
	defer attached.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, attached.Reader); err != nil {
		return -1, out.String(), fmt.Errorf("exec in %.12s: reading output: %w", containerID, err)
	}
	// The stream ends when the process does; its exit code may lag a little.
	var inspected container.ExecInspect
	err = PollE(ctx, 10*time.Second, func() (bool, string) {
		var err error
		inspected, err = cli.ContainerExecInspect(ctx, created.ID)
		if err != nil {
			return false, err.Error()
		}
		return !inspected.Running, "exec still running"
	})
	if err != nil {
		return -1, out.String(), fmt.Errorf("exec in %.12s: %w", containerID, err)
	}
	return inspected.ExitCode, out.String(), nil
}
