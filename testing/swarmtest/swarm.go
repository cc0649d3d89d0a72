package swarmtest

import (
	"context"
	"fmt"
	"testing"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// EnsureSwarm makes the engine cli talks to a Swarm manager: a no-op when it
// already is one, else the equivalent of `docker swarm init --advertise-addr
// 127.0.0.1` (listening on loopback only). It reports whether it initialized
// the Swarm; it never leaves one, so a Swarm the machine already had is left
// as it was, and one it made is reused by the next run. A caller that wants
// the engine back as it found it calls cli.SwarmLeave(ctx, true) when
// initialized is true, once its tests are done.
func EnsureSwarm(ctx context.Context, tb testing.TB, cli *client.Client) (initialized bool) {
	tb.Helper()
	initialized, err := EnsureSwarmE(ctx, cli)
	if err != nil {
		tb.Fatal(err)
	}
	return initialized
}

// EnsureSwarmE is EnsureSwarm returning an error instead of failing a test.
func EnsureSwarmE(ctx context.Context, cli *client.Client) (initialized bool, err error) {
	info, err := cli.Info(ctx)
	if err != nil {
		return false, err
	}
	switch info.Swarm.LocalNodeState {
	case swarm.LocalNodeStateActive:
		if !info.Swarm.ControlAvailable {
			return false, fmt.Errorf("engine %s is a Swarm worker; the tests need a manager", cli.DaemonHost())
		}
		return false, nil
	case swarm.LocalNodeStateInactive:
	default:
		return false, fmt.Errorf("engine %s: Swarm state %q (%s)", cli.DaemonHost(), info.Swarm.LocalNodeState, info.Swarm.Error)
	}
	if _, err := cli.SwarmInit(ctx, swarm.InitRequest{ListenAddr: "127.0.0.1:2377", AdvertiseAddr: "127.0.0.1"}); err != nil {
		return false, fmt.Errorf("swarm init: %w", err)
	}
	err = PollE(ctx, DefaultTimeout, func() (bool, string) {
		info, err := cli.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		return info.Swarm.LocalNodeState == swarm.LocalNodeStateActive && info.Swarm.ControlAvailable,
			fmt.Sprintf("Swarm state %q, manager %t", info.Swarm.LocalNodeState, info.Swarm.ControlAvailable)
	})
	return true, err
}
