package cluster

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/image"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/volume"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// NodeImageRepo names the node image; the tag is a hash of its content.
const NodeImageRepo = "swarmsec-node"

// skeleton is the node image: an empty root whose bin, lib, lib64 and sbin
// point into usr/, where the host's /usr (dockerd, containerd, runc,
// iptables and their libraries) is mounted read-only.
var skeleton = []tar.Header{
	{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o755},
	{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
	{Name: "etc/alternatives/", Typeflag: tar.TypeDir, Mode: 0o755},
	{Name: "var/", Typeflag: tar.TypeDir, Mode: 0o755},
	{Name: "var/lib/", Typeflag: tar.TypeDir, Mode: 0o755},
	{Name: "var/lib/docker/", Typeflag: tar.TypeDir, Mode: 0o711},
	{Name: "var/run/", Typeflag: tar.TypeDir, Mode: 0o755},
	{Name: "var/run/dind/", Typeflag: tar.TypeDir, Mode: 0o755},
	{Name: "root/", Typeflag: tar.TypeDir, Mode: 0o700},
	{Name: "run/", Typeflag: tar.TypeDir, Mode: 0o755},
	{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777},
	{Name: "proc/", Typeflag: tar.TypeDir, Mode: 0o555},
	{Name: "sys/", Typeflag: tar.TypeDir, Mode: 0o555},
	{Name: "dev/", Typeflag: tar.TypeDir, Mode: 0o755},
	{Name: "bin", Typeflag: tar.TypeSymlink, Linkname: "usr/bin", Mode: 0o777},
	{Name: "lib", Typeflag: tar.TypeSymlink, Linkname: "usr/lib", Mode: 0o777},
	{Name: "lib64", Typeflag: tar.TypeSymlink, Linkname: "usr/lib64", Mode: 0o777},
	{Name: "sbin", Typeflag: tar.TypeSymlink, Linkname: "usr/sbin", Mode: 0o777},
}

// ensureNodeImage imports the skeleton as swarmsec-node:<hash> unless the
// engine has it already (docker import of a tar: nothing is pulled), and
// returns the image reference.
func ensureNodeImage(ctx context.Context, host *client.Client) (string, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range skeleton {
		if err := tw.WriteHeader(&h); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		return "", err
	}
	sum := sha256.Sum256(buf.Bytes())
	ref := NodeImageRepo + ":" + hex.EncodeToString(sum[:])[:16]
	if _, err := host.ImageInspect(ctx, ref); err == nil {
		return ref, nil
	} else if !cerrdefs.IsNotFound(err) {
		return "", err
	}
	rc, err := host.ImageImport(ctx, image.ImportSource{Source: &buf, SourceName: "-"}, ref, image.ImportOptions{
		Changes: []string{"LABEL " + swarmtest.LabelTest + "=1"},
		Message: "swarmsec e2e node skeleton",
	})
	if err != nil {
		return "", fmt.Errorf("import node image: %w", err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return "", err
	}
	return ref, nil
}

// dockerdPath is the host's dockerd, which the node runs from the host's
// /usr mounted into it.
func dockerdPath() (string, error) {
	p, err := exec.LookPath("dockerd")
	if err != nil {
		return "", fmt.Errorf("no dockerd on this machine (apt-get install docker.io): %w", err)
	}
	if p, err = filepath.EvalSymlinks(p); err != nil {
		return "", err
	}
	if !strings.HasPrefix(p, "/usr/") {
		return "", fmt.Errorf("dockerd is %s: the nodes mount only /usr from the host", p)
	}
	return p, nil
}

// cgroupParent is the cgroup under which the nodes' engines put their
// containers, one per run so that teardown can remove what a killed engine
// left behind (the nodes share the host's cgroup tree).
func cgroupParent(runID string) string { return "/swarmsec-e2e-" + runID }

// startNode starts one node: a volume for its /var/lib/docker, a host
// folder for its API socket, and its container running dockerd. It returns
// once the engine answers.
func (c *Cluster) startNode(ctx context.Context, nodeImage, hostname string) (*Node, error) {
	dockerd, err := dockerdPath()
	if err != nil {
		return nil, err
	}
	n := &Node{Hostname: hostname, Container: fmt.Sprintf("swarmsec-e2e-%s-%s", c.RunID, strings.TrimPrefix(hostname, "e2e-"))}
	sockDir := filepath.Join(c.dir, hostname)
	if err := os.Mkdir(sockDir, 0o700); err != nil {
		return nil, err
	}
	n.Socket = filepath.Join(sockDir, "docker.sock")

	vol, err := c.Host.VolumeCreate(ctx, volume.CreateOptions{Name: n.Container + "-data", Labels: c.labels(nil)})
	if err != nil {
		return nil, err
	}
	binds := []string{
		"/sys/fs/cgroup:/sys/fs/cgroup:rw",
		"/usr:/usr:ro",
		vol.Name + ":/var/lib/docker",
		sockDir + ":/var/run/dind",
	}
	if _, err := os.Stat("/etc/alternatives"); err == nil {
		binds = append(binds, "/etc/alternatives:/etc/alternatives:ro") // iptables -> iptables-nft or -legacy
	}
	created, err := c.Host.ContainerCreate(ctx,
		&container.Config{
			Image:    nodeImage,
			Hostname: hostname,
			Labels:   c.labels(map[string]string{LabelDir: c.dir}),
			Env: []string{
				"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				// Never try a registry for a service's image: there is none.
				"DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1",
			},
			Cmd: []string{dockerd,
				"--host", "unix:///var/run/dind/docker.sock",
				// Runtime state on the tmpfs /run: a node restarted after
				// a kill (the failover test) finds no stale pid file.
				"--pidfile", "/run/docker.pid",
				"--exec-root", "/run/docker",
				"--cgroup-parent", cgroupParent(c.RunID),
				"--log-level", "info",
			},
		},
		&container.HostConfig{
			// --privileged fails here (CAP_SYS_RESOURCE is not in the
			// bounding set): every other capability, no seccomp, AppArmor
			// or masked paths (the CLI's systempaths=unconfined is empty,
			// non-nil MaskedPaths and ReadonlyPaths), and the host's cgroup
			// tree.
			CapAdd:        []string{"ALL"},
			CapDrop:       []string{"SYS_RESOURCE"},
			SecurityOpt:   []string{"seccomp=unconfined", "apparmor=unconfined"},
			MaskedPaths:   []string{},
			ReadonlyPaths: []string{},
			CgroupnsMode:  container.CgroupnsModeHost,
			Binds:         binds,
			Tmpfs:         map[string]string{"/run": "", "/tmp": ""},
			NetworkMode:   container.NetworkMode(c.Network),
		},
		nil, nil, n.Container)
	if err != nil {
		return nil, err
	}
	if err := c.Host.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return nil, err
	}
	inspected, err := c.Host.ContainerInspect(ctx, created.ID)
	if err != nil {
		return nil, err
	}
	if ep := inspected.NetworkSettings.Networks[c.Network]; ep != nil {
		n.IP = ep.IPAddress
	}
	if n.IP == "" {
		return nil, fmt.Errorf("node %s has no address on %s", hostname, c.Network)
	}

	n.Client, err = client.NewClientWithOpts(client.WithHost("unix://"+n.Socket), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, err
	}
	err = swarmtest.PollE(ctx, time.Minute, func() (bool, string) {
		if _, err := n.Client.Ping(ctx); err != nil {
			if st, ierr := c.Host.ContainerInspect(ctx, created.ID); ierr == nil && !st.State.Running {
				return true, "" // exited: reported below
			}
			return false, err.Error()
		}
		return true, ""
	})
	if err == nil {
		if _, perr := n.Client.Ping(ctx); perr != nil {
			err = fmt.Errorf("node container exited: %w", perr)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("node %s engine: %w\n%s", hostname, err, containerLogs(ctx, c.Host, created.ID, 30))
	}
	return n, nil
}

// containerLogs returns the last lines of a container's output, for error
// messages.
func containerLogs(ctx context.Context, host *client.Client, id string, lines int) string {
	rc, err := host.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: fmt.Sprint(lines)})
	if err != nil {
		return "(no logs: " + err.Error() + ")"
	}
	defer rc.Close()
	var out bytes.Buffer
	_, _ = stdcopy.StdCopy(&out, &out, rc)
	return out.String()
}

// loadAppImage copies the test app image from the machine's engine into
// every node with docker save | docker load.
func (c *Cluster) loadAppImage(ctx context.Context) error { return c.LoadImage(ctx, c.AppImage) }

// LoadImage copies an image of the machine's engine into every node (save
// and load: nothing is pulled), under the same tags.
func (c *Cluster) LoadImage(ctx context.Context, ref string) error {
	rc, err := c.Host.ImageSave(ctx, []string{ref})
	if err != nil {
		return err
	}
	saved, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return err
	}
	img, err := c.Host.ImageInspect(ctx, ref)
	if err != nil {
		return err
	}
	var fns []func() error
	for _, n := range c.Nodes {
		fns = append(fns, func() error {
			resp, err := n.Client.ImageLoad(ctx, bytes.NewReader(saved), client.ImageLoadWithQuiet(true))
			if err != nil {
				return fmt.Errorf("%s: %w", n.Hostname, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			// docker save by ID writes no tag: put the hash tag back, so
			// swarmtest.BuildAppImage finds the image on the node too.
			for _, tag := range img.RepoTags {
				if err := n.Client.ImageTag(ctx, ref, tag); err != nil {
					return fmt.Errorf("%s: %w", n.Hostname, err)
				}
			}
			if _, err := n.Client.ImageInspect(ctx, ref); err != nil {
				return fmt.Errorf("%s: image not there after load: %w", n.Hostname, err)
			}
			return nil
		})
	}
	return parallel(fns...)
}

// formSwarm makes the first node a manager and joins the others as workers,
// all advertising their bridge address, then waits until every node is
// ready.
func (c *Cluster) formSwarm(ctx context.Context) error {
	m := c.Manager()
	if _, err := m.Client.SwarmInit(ctx, swarm.InitRequest{ListenAddr: "0.0.0.0:2377", AdvertiseAddr: m.IP}); err != nil {
		return fmt.Errorf("swarm init: %w", err)
	}
	sw, err := m.Client.SwarmInspect(ctx)
	if err != nil {
		return err
	}
	var fns []func() error
	for i, w := range c.Workers() {
		token := sw.JoinTokens.Worker
		if i+1 < c.cfg.Managers {
			token, w.Manager = sw.JoinTokens.Manager, true
		}
		fns = append(fns, func() error {
			err := w.Client.SwarmJoin(ctx, swarm.JoinRequest{
				ListenAddr:    "0.0.0.0:2377",
				AdvertiseAddr: w.IP,
				RemoteAddrs:   []string{m.IP + ":2377"},
				JoinToken:     token,
			})
			if err != nil {
				return fmt.Errorf("%s: swarm join: %w", w.Hostname, err)
			}
			return nil
		})
	}
	if err := parallel(fns...); err != nil {
		return err
	}
	for _, n := range c.Nodes {
		info, err := n.Client.Info(ctx)
		if err != nil {
			return err
		}
		n.ID = info.Swarm.NodeID
	}
	return swarmtest.PollE(ctx, 2*time.Minute, func() (bool, string) { return c.NodesReady(ctx) })
}

// startOutside runs the test app on the machine's engine, on the bridge
// network only.
func (c *Cluster) startOutside(ctx context.Context) error {
	o, err := c.StartOutside(ctx, "outside")
	if err != nil {
		return err
	}
	c.Outside = o
	return nil
}

// StartOutside starts another test app container outside the Swarm on the
// cluster's bridge network (a client of published ports, say), named
// after the run and suffix. Stop removes it with the cluster; a test may
// remove it sooner.
func (c *Cluster) StartOutside(ctx context.Context, suffix string) (Outside, error) {
	name := "swarmsec-e2e-" + c.RunID + "-" + suffix
	created, err := c.Host.ContainerCreate(ctx,
		&container.Config{Image: c.AppImage, Hostname: "e2e-" + suffix, Labels: c.labels(nil)},
		&container.HostConfig{NetworkMode: container.NetworkMode(c.Network)},
		&network.NetworkingConfig{}, nil, name)
	if err != nil {
		return Outside{}, err
	}
	if err := c.Host.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		return Outside{}, err
	}
	inspected, err := c.Host.ContainerInspect(ctx, created.ID)
	if err != nil {
		return Outside{}, err
	}
	ep := inspected.NetworkSettings.Networks[c.Network]
	if ep == nil || ep.IPAddress == "" {
		return Outside{}, errors.New(suffix + " has no address on the bridge network")
	}
	return Outside{Container: name, IP: ep.IPAddress}, nil
}
