package cluster

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// SwarmsecResult is what one run of the swarmsec binary gave.
type SwarmsecResult struct {
	Stdout, Stderr string
	ExitCode       int
}

// Swarmsec runs the swarmsec binary as a user would, with args, pointed at
// the manager's engine (DOCKER_HOST=unix://<manager socket>, no other
// DOCKER_ variable). The binary is built from ./cmd/swarmsec once per
// run (Start begins the build while the cluster comes up). A non-zero exit
// is not an error: it is in ExitCode.
func (c *Cluster) Swarmsec(ctx context.Context, args ...string) (SwarmsecResult, error) {
	c.swarmsecOnce.Do(c.buildSwarmsec)
	if c.swarmsecErr != nil {
		return SwarmsecResult{}, c.swarmsecErr
	}
	cmd := exec.CommandContext(ctx, c.swarmsecBin, args...)
	cmd.Env = EngineEnv(c.Manager().Socket)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := SwarmsecResult{Stdout: stdout.String(), Stderr: stderr.String()}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		res.ExitCode = exitErr.ExitCode()
		return res, nil
	}
	return res, err
}

// EngineEnv is this process's environment for a command that must talk to
// the engine listening on socket: DOCKER_HOST names it and no other DOCKER_
// variable is kept, since a DOCKER_CONTEXT, DOCKER_TLS_VERIFY or
// DOCKER_CERT_PATH from the caller's shell would aim the command elsewhere
// or break the unix socket.
func EngineEnv(socket string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_") {
			env = append(env, kv)
		}
	}
	return append(env, "DOCKER_HOST=unix://"+socket)
}

// buildSwarmsec builds ./cmd/swarmsec into the cluster's folder, as make
// build does (static).
func (c *Cluster) buildSwarmsec() {
	c.swarmsecBin = filepath.Join(c.dir, "swarmsec")
	c.swarmsecErr = swarmtest.GoBuild(c.buildCtx, c.swarmsecBin, "./cmd/swarmsec")
}

// SwarmsecCommand is the swarmsec binary with args, pointed at the engine
// listening on socket, not started: for a test that runs it in the
// background (a `run`, or an `apply` it interrupts).
func (c *Cluster) SwarmsecCommand(ctx context.Context, socket string, args ...string) (*exec.Cmd, error) {
	c.swarmsecOnce.Do(c.buildSwarmsec)
	if c.swarmsecErr != nil {
		return nil, c.swarmsecErr
	}
	cmd := exec.CommandContext(ctx, c.swarmsecBin, args...)
	cmd.Env = EngineEnv(socket)
	return cmd, nil
}
