//go:build integration

package fake

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
	"github.com/docker/docker/client"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
)

// TestFakeParityWithEngine runs the parity scenarios against the Fake and
// against the engine named by DOCKER_HOST (made a one-node Swarm manager if
// it is in no Swarm), and checks both tell the same story. Everything it
// creates is labelled swarmsec.test=1 and removed at the end; a Swarm it
// had to initialise is left in place, as other tests may be using it.
//
//	go test -tags integration -run TestFakeParityWithEngine ./testing/fake/
func TestFakeParityWithEngine(t *testing.T) {
	ctx := context.Background()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	info := engineSwarmManager(t, ctx, cli)

	run := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	img := buildParityImage(t, ctx, cli, info.Architecture, "swarmsec-test-app:"+run)
	t.Cleanup(func() { sweepRun(t, cli, run) })

	t.Run("fake", func(t *testing.T) {
		runParityScenarios(t, func(*testing.T) *parityWorld {
			w := newFakeWorld(New())
			w.run, w.image = run, img
			return w
		})
	})
	t.Run("engine", func(t *testing.T) {
		runParityScenarios(t, func(*testing.T) *parityWorld { return newEngineWorld(cli, run, img) })
	})
}

// engineSwarmManager makes sure the engine is a Swarm manager: it
// initialises a one-node Swarm on an engine in none, and skips on a worker.
func engineSwarmManager(t *testing.T, ctx context.Context, cli *client.Client) system.Info {
	t.Helper()
	info, err := cli.Info(ctx)
	if err != nil {
		t.Fatalf("engine at DOCKER_HOST: %v", err)
	}
	switch {
	case info.Swarm.ControlAvailable:
	case info.Swarm.LocalNodeState == swarm.LocalNodeStateInactive:
		if _, err := cli.SwarmInit(ctx, swarm.InitRequest{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: "127.0.0.1"}); err != nil {
			t.Fatalf("swarm init: %v", err)
		}
		t.Log("initialised a one-node Swarm on the engine; it is left in place")
	default:
		t.Skipf("the engine is in a Swarm but not a manager (%s)", info.Swarm.LocalNodeState)
	}
	return info
}

func newEngineWorld(cli *client.Client, run, img string) *parityWorld {
	return &parityWorld{
		API: cli, run: run, image: img,
		addService: func(ctx context.Context, spec swarm.ServiceSpec) (string, error) {
			resp, err := cli.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{})
			return resp.ID, err
		},
		removeService: cli.ServiceRemove,
		addContainer: func(ctx context.Context, name, network string) (string, error) {
			c, err := cli.ContainerCreate(ctx,
				&container.Config{Image: img, Labels: map[string]string{"swarmsec.test": "1", "swarmsec.test.run": run}},
				&container.HostConfig{NetworkMode: container.NetworkMode(network)}, nil, nil, name)
			if err != nil {
				return "", err
			}
			return c.ID, cli.ContainerStart(ctx, c.ID, container.StartOptions{})
		},
		removeContainer: func(ctx context.Context, id string) error {
			return cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true})
		},
		// A removed service's tasks take a moment to stop and release
		// their networks.
		removeNetwork: func(ctx context.Context, id string) error {
			deadline := time.Now().Add(60 * time.Second)
			for {
				err := cli.NetworkRemove(ctx, id)
				if err == nil || !dockerapi.IsInUse(err) || time.Now().After(deadline) {
					return err
				}
				time.Sleep(250 * time.Millisecond)
			}
		},
	}
}

// buildParityImage builds a FROM-scratch image around a static binary that
// waits for SIGTERM (a bare select{} would die as a deadlock), since there
// is no registry to pull from.
func buildParityImage(t *testing.T, ctx context.Context, cli *client.Client, arch, tag string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"go.mod": "module parityapp\n\ngo 1.22\n",
		"main.go": `package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	<-stop
}
`,
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	goarch := map[string]string{"x86_64": "amd64", "aarch64": "arm64"}[arch]
	if goarch == "" {
		goarch = arch
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", "app", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the test app: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "app"))
	if err != nil {
		t.Fatal(err)
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range []struct {
		name string
		mode int64
		body []byte
	}{
		{"Dockerfile", 0o644, []byte("FROM scratch\nCOPY app /app\nENTRYPOINT [\"/app\"]\n")},
		{"app", 0o755, bin},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}

	resp, err := cli.ImageBuild(ctx, &buf, build.ImageBuildOptions{
		Tags: []string{tag}, Labels: map[string]string{"swarmsec.test": "1"},
		Remove: true, ForceRemove: true, Version: build.BuilderV1,
	})
	if err != nil {
		t.Fatalf("docker build: %v", err)
	}
	defer resp.Body.Close()
	// The build reports failures in its output stream, not its status.
	dec := json.NewDecoder(resp.Body)
	for {
		var msg struct{ Error string }
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("docker build output: %v", err)
		}
		if msg.Error != "" {
			t.Fatalf("docker build: %s", msg.Error)
		}
	}
	t.Cleanup(func() {
		// Registered first, so it runs last: after the services are gone.
		// Swarm removes their task containers on its own time (a task on an
		// overlay waits 2s before it even stops), and a forced removal of an
		// image a container still uses only untags it, leaving it dangling.
		ctx := context.Background()
		users := filters.NewArgs(filters.Arg("ancestor", tag))
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(250 * time.Millisecond) {
			cs, err := cli.ContainerList(ctx, container.ListOptions{All: true, Filters: users})
			if err == nil && len(cs) == 0 || time.Now().After(deadline) {
				if err == nil && len(cs) > 0 {
					t.Logf("containers still using %s: %d", tag, len(cs))
				}
				break
			}
		}
		if _, err := cli.ImageRemove(ctx, tag, image.RemoveOptions{Force: true, PruneChildren: true}); err != nil {
			t.Logf("remove image %s: %v", tag, err)
		}
	})
	return tag
}

// sweepRun fails the test for, and removes, anything of this run the
// scenarios' own cleanups left behind. It gives the engine a while first:
// Swarm lets a network be removed while the last task container using it
// is still stopping, and until it is gone the engine's local list still
// shows the network.
func sweepRun(t *testing.T, cli *client.Client, run string) {
	ctx := context.Background()
	mine := filters.NewArgs(filters.Arg("label", "swarmsec.test.run="+run))
	var (
		svcs []swarm.Service
		ctrs []container.Summary
		nets []network.Summary
	)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		svcs, _ = cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: mine})
		ctrs, _ = cli.ContainerList(ctx, container.ListOptions{All: true, Filters: mine})
		nets, _ = cli.NetworkList(ctx, network.ListOptions{Filters: mine})
		if len(svcs)+len(ctrs)+len(nets) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, s := range svcs {
		t.Errorf("service %s left behind", s.Spec.Name)
		_ = cli.ServiceRemove(ctx, s.ID)
	}
	for _, c := range ctrs {
		t.Errorf("container %s left behind", c.Names)
		_ = cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{Force: true})
	}
	for _, n := range nets {
		t.Errorf("network %s left behind", n.Name)
		_ = newEngineWorld(cli, run, "").removeNetwork(ctx, n.ID)
	}
}
