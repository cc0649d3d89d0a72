package swarmtest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/build"
	"github.com/docker/docker/client"
)

const (
	// AppPort is the TCP port the test app serves HTTP on in every service.
	AppPort = 8080
	// AppImageRepo names the test app image; the tag is a content hash.
	AppImageRepo = "swarmsec-testapp"
)

const appDockerfile = `FROM scratch
COPY testapp /testapp
ENTRYPOINT ["/testapp"]
CMD ["serve"]
`

var appImages struct {
	sync.Mutex
	byHost map[string]string // engine address -> image ID
}

// BuildAppImage builds e2e/testapp into an image FROM scratch on the engine
// cli talks to and returns the image's ID ("sha256:..."). The image is
// tagged swarmsec-testapp:<hash of binary and Dockerfile> and labeled
// swarmsec.test=1; an engine that already has that tag (from an earlier run,
// or loaded with save/load) is not built again.
//
// Use the ID, not the tag, as a service's image: Swarm skips its registry
// lookup for an image referenced by ID, and there is no registry here. The
// ID survives docker save and load, so the same reference works on every
// node of a cluster the image was copied to.
//
// The image is a cache kept across runs: Sweep leaves it.
func BuildAppImage(ctx context.Context, tb testing.TB, cli *client.Client) string {
	tb.Helper()
	id, err := BuildAppImageE(ctx, cli)
	if err != nil {
		tb.Fatal(err)
	}
	return id
}

// BuildAppImageE is BuildAppImage returning an error instead of failing a
// test.
func BuildAppImageE(ctx context.Context, cli *client.Client) (string, error) {
	appImages.Lock()
	defer appImages.Unlock()
	if id, ok := appImages.byHost[cli.DaemonHost()]; ok {
		return id, nil
	}
	id, err := buildAppImage(ctx, cli)
	if err != nil {
		return "", fmt.Errorf("test app image: %w", err)
	}
	if appImages.byHost == nil {
		appImages.byHost = map[string]string{}
	}
	appImages.byHost[cli.DaemonHost()] = id
	return id, nil
}

func buildAppImage(ctx context.Context, cli *client.Client) (string, error) {
	info, err := cli.Info(ctx)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "swarmsec-testapp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "testapp")
	if err := GoBuild(ctx, bin, "./e2e/testapp", "GOOS=linux", "GOARCH="+goArch(info.Architecture)); err != nil {
		return "", err
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		return "", err
	}
	sum := sha256.New()
	sum.Write([]byte(appDockerfile))
	sum.Write(binary)
	tag := AppImageRepo + ":" + hex.EncodeToString(sum.Sum(nil))[:16]

	if img, err := cli.ImageInspect(ctx, tag); err == nil {
		return img.ID, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", err
	}

	var buildContext bytes.Buffer
	tw := tar.NewWriter(&buildContext)
	for _, f := range []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte(appDockerfile)},
		{"testapp", 0o755, binary},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data))}); err != nil {
			return "", err
		}
		if _, err := tw.Write(f.data); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	resp, err := cli.ImageBuild(ctx, &buildContext, build.ImageBuildOptions{
		Tags:        []string{tag},
		Labels:      map[string]string{LabelTest: "1"},
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1, // FROM scratch: nothing to pull, no BuildKit session needed
	})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if err := readJSONMessages(resp.Body); err != nil {
		return "", fmt.Errorf("docker build: %w", err)
	}
	img, err := cli.ImageInspect(ctx, tag)
	if err != nil {
		return "", err
	}
	return img.ID, nil
}

// readJSONMessages drains a build, load or import progress stream and
// returns the first error it reports.
func readJSONMessages(r io.Reader) error {
	dec := json.NewDecoder(r)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail *struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
			return errors.New(m.ErrorDetail.Message)
		}
		if m.Error != "" {
			return errors.New(m.Error)
		}
	}
}

// GoBuild builds the package pkg of this module (a path such as
// "./cmd/swarmsec", relative to the module root) into the static binary
// out, reproducibly (trimmed paths, no build ID), with env added to the
// build's environment.
func GoBuild(ctx context.Context, out, pkg string, env ...string) error {
	root, err := ModuleRoot(ctx)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, goTool(), "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// ModuleRoot returns the directory of this module's go.mod, asking the go
// command from the working directory (a test runs in its package's).
func ModuleRoot(ctx context.Context) (string, error) {
	b, err := exec.CommandContext(ctx, goTool(), "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(b))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the swarmsec module")
	}
	return filepath.Dir(gomod), nil
}

// goTool finds the go command: on PATH, else in $GOROOT/bin or
// /usr/local/go/bin.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	for _, dir := range []string{filepath.Join(os.Getenv("GOROOT"), "bin"), "/usr/local/go/bin"} {
		if p := filepath.Join(dir, "go"); dir != "bin" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	return "go"
}

// goArch maps an engine's Info.Architecture to GOARCH.
func goArch(arch string) string {
	switch arch {
	case "x86_64":
		return "amd64"
	case "aarch64":
		return "arm64"
	case "":
		return runtime.GOARCH
	}
	return arch
}
