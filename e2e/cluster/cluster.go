// Package cluster brings up the Swarm swarmsec's end-to-end tests run on:
// three Docker engines (1 manager, 2 workers), each dockerd in its own
// container on the machine's engine, joined over one user-defined bridge
// network, built without any registry (see /work/shared/ENVIRONMENT.md).
//
// The host reaches each node's API over a unix socket in a host folder
// bind-mounted into the node, so driving the nodes needs no IP traffic.
// Every object made on the machine's engine is labeled (swarmsec.test,
// swarmsec.test.run, swarmsec.test.e2e, swarmsec.test.pid) so Stop, and
// SweepLeftovers in a later run, remove it by label.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// Labels on the machine's engine, besides swarmtest's.
const (
	// LabelE2E marks the objects of an e2e cluster, with the value "1".
	LabelE2E = "swarmsec.test.e2e"
	// LabelPID is the process ID of the test binary that made the object;
	// SweepLeftovers removes only objects whose process is gone.
	LabelPID = "swarmsec.test.pid"
	// LabelDir is the run's host folder (nodes' API sockets, the swarmsec
	// binary).
	LabelDir = "swarmsec.test.dir"
)

// Config shapes a cluster. The zero value is the usual one.
type Config struct {
	// Workers is the number of worker nodes; 0 means 2.
	Workers int
	// Managers is how many nodes are managers (the first node, then the
	// first workers): 0 means 1. Three keep quorum when one goes.
	Managers int
	// Logf reports progress; nil discards it.
	Logf func(format string, args ...any)
	// SkipEncryptionCheck skips the cross-node probe on an encrypted
	// network; EncryptedCrossNode is then false.
	SkipEncryptionCheck bool
}

// Node is one Docker engine of the cluster.
type Node struct {
	// Hostname is the node's hostname in the Swarm (placement constraints
	// use it): e2e-manager, e2e-worker1, ...
	Hostname string
	// Container is the name of the node's container on the machine's engine.
	Container string
	// IP is the node's address on the cluster's bridge network.
	IP string
	// Socket is the host path of the node's API socket.
	Socket string
	// Client talks to the node's engine.
	Client *client.Client
	// ID is the node's Swarm node ID.
	ID string
	// Manager is true for the Swarm manager.
	Manager bool
}

// Outside is a test app container on the machine's engine, attached to the
// cluster's bridge network but in no Swarm: the target of egress tests.
type Outside struct {
	Container string
	// IP is its address on the bridge network; tasks reach it through
	// their node.
	IP string
}

// Addr is the outside target's app address, IP:8080.
func (o Outside) Addr() string { return o.IP + ":" + strconv.Itoa(swarmtest.AppPort) }

// Cluster is a running docker-in-docker Swarm.
type Cluster struct {
	// RunID is swarmtest.RunID(): names and labels carry it.
	RunID string
	// Host is the machine's engine.
	Host *client.Client
	// Network is the name of the bridge network the nodes share.
	Network string
	// Nodes lists the manager first, then the workers.
	Nodes []*Node
	// AppImage is the test app image ID, loaded into every node.
	AppImage string
	// Outside is the egress target.
	Outside Outside
	// EncryptedCrossNode tells whether tasks on different nodes talk over
	// an encrypted overlay network; EncryptionReport says how that was
	// found out.
	EncryptedCrossNode bool
	EncryptionReport   string
	// Timings records how long each bring-up step took.
	Timings []Timing

	cfg  Config
	mu   sync.Mutex // guards Timings during parallel steps
	dir  string     // host folder holding node sockets and the swarmsec binary
	logf func(format string, args ...any)

	buildCtx     context.Context // the swarmsec build's, ended by Stop
	buildCancel  context.CancelFunc
	swarmsecOnce sync.Once
	swarmsecBin  string
	swarmsecErr  error
}

// Timing is how long one step of bring-up or teardown took.
type Timing struct {
	Step     string
	Duration time.Duration
}

// New returns the cluster cfg describes, not started yet: Start brings it
// up, Stop removes it, and Stop may be called at any time, from another
// goroutine too (on an interrupt, after cancelling Start's context).
func New(cfg Config) *Cluster {
	if cfg.Workers == 0 {
		cfg.Workers = 2
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	c := &Cluster{RunID: swarmtest.RunID(), cfg: cfg, logf: cfg.Logf}
	c.Network = "swarmsec-e2e-" + c.RunID
	return c
}

// Start brings the cluster up. On an error the cluster is half-made: call
// Stop as always.
func (c *Cluster) Start(ctx context.Context) error {
	return c.start(ctx, c.cfg)
}

func (c *Cluster) start(ctx context.Context, cfg Config) error {
	host, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	c.Host = host
	// The folder's name carries the process ID, for SweepLeftovers.
	if c.dir, err = os.MkdirTemp("", fmt.Sprintf("%s%s-p%d-", dirPrefix, c.RunID, os.Getpid())); err != nil {
		return err
	}
	// Build the swarmsec binary while the cluster comes up: a cold build
	// takes most of a minute on two cores.
	c.buildCtx, c.buildCancel = context.WithCancel(context.WithoutCancel(ctx))
	go c.swarmsecOnce.Do(c.buildSwarmsec)

	if err := c.step("sweep leftovers", func() error { return SweepLeftovers(ctx, host, c.logf) }); err != nil {
		return err
	}

	var nodeImage string
	err = c.step("images (node skeleton, test app)", func() error {
		return parallel(
			func() (err error) { nodeImage, err = ensureNodeImage(ctx, host); return err },
			func() (err error) { c.AppImage, err = swarmtest.BuildAppImageE(ctx, host); return err },
		)
	})
	if err != nil {
		return err
	}

	err = c.step("bridge network", func() error {
		_, err := host.NetworkCreate(ctx, c.Network, network.CreateOptions{Driver: "bridge", Labels: c.labels(nil)})
		return err
	})
	if err != nil {
		return err
	}

	names := []string{"e2e-manager"}
	for i := 1; i <= cfg.Workers; i++ {
		names = append(names, fmt.Sprintf("e2e-worker%d", i))
	}
	c.Nodes = make([]*Node, len(names))
	err = c.step("node engines up", func() error {
		var fns []func() error
		for i, name := range names {
			fns = append(fns, func() (err error) { c.Nodes[i], err = c.startNode(ctx, nodeImage, name); return err })
		}
		return parallel(fns...)
	})
	if err != nil {
		return err
	}
	c.Nodes[0].Manager = true

	err = c.step("app image loaded into nodes", func() error { return c.loadAppImage(ctx) })
	if err != nil {
		return err
	}
	if err := c.step("swarm init and join", func() error { return c.formSwarm(ctx) }); err != nil {
		return err
	}
	// The outside target (machine's engine) and the encryption check (the
	// cluster) do not depend on each other.
	return parallel(
		func() error { return c.step("outside target", func() error { return c.startOutside(ctx) }) },
		func() error {
			if cfg.SkipEncryptionCheck {
				c.EncryptionReport = "encrypted overlay across nodes: not checked"
				return nil
			}
			err := c.step("encrypted overlay check", func() error {
				var err error
				c.EncryptedCrossNode, c.EncryptionReport, err = c.checkEncryption(ctx)
				return err
			})
			if err == nil {
				c.logf("e2e: %s", c.EncryptionReport)
			}
			return err
		},
	)
}

// step runs f, recording and logging how long it took.
func (c *Cluster) step(name string, f func() error) error {
	start := time.Now()
	err := f()
	d := time.Since(start)
	c.mu.Lock()
	c.Timings = append(c.Timings, Timing{name, d})
	c.mu.Unlock()
	if err != nil {
		c.logf("e2e: %s: failed after %s: %v", name, d.Round(time.Millisecond), err)
		return fmt.Errorf("%s: %w", name, err)
	}
	c.logf("e2e: %s: %s", name, d.Round(time.Millisecond))
	return nil
}

// labels are those of every object the cluster makes on the machine's
// engine.
func (c *Cluster) labels(extra map[string]string) map[string]string {
	return swarmtest.Labels(map[string]string{LabelE2E: "1", LabelPID: strconv.Itoa(os.Getpid())}, extra)
}

// Manager returns the manager node.
func (c *Cluster) Manager() *Node { return c.Nodes[0] }

// Workers returns the worker nodes.
func (c *Cluster) Workers() []*Node { return c.Nodes[1:] }

// Node returns the node with this hostname or Swarm node ID, or nil.
func (c *Cluster) Node(hostnameOrID string) *Node {
	i := slices.IndexFunc(c.Nodes, func(n *Node) bool { return n.Hostname == hostnameOrID || n.ID == hostnameOrID })
	if i < 0 {
		return nil
	}
	return c.Nodes[i]
}

// Engine returns the client of the node with this Swarm node ID: pass it to
// swarmtest.WithEngines so probes exec on whichever node runs the task.
func (c *Cluster) Engine(nodeID string) (*client.Client, error) {
	if n := c.Node(nodeID); n != nil {
		return n.Client, nil
	}
	return nil, fmt.Errorf("no node %s in the cluster", nodeID)
}

// ProbeOpts are the swarmtest.Probe options for this cluster: tasks are
// found through the manager and exec'd on their own node.
func (c *Cluster) ProbeOpts(opts ...swarmtest.ProbeOpt) []swarmtest.ProbeOpt {
	return append([]swarmtest.ProbeOpt{swarmtest.WithEngines(c.Engine)}, opts...)
}

// ProbedNode is where to place the i-th of several services that probe one
// another: spread round-robin over the workers when encrypted overlay
// traffic crosses nodes, else all on the first worker, so that probes on
// encrypted networks test policy rather than the kernel's lack of ESP.
func (c *Cluster) ProbedNode(i int) *Node {
	w := c.Workers()
	if c.EncryptedCrossNode {
		return w[i%len(w)]
	}
	return w[0]
}

// PlaceProbed is the placement option for the i-th probed service (see
// ProbedNode).
func (c *Cluster) PlaceProbed(i int) swarmtest.ServiceOpt {
	return swarmtest.OnNode(c.ProbedNode(i).Hostname)
}

// Stop removes every object of this run from the machine's engine (node
// containers with their engines and tasks, volumes, the bridge network, the
// outside target), the cgroups the nodes' engines made and the host folder.
// It is safe to call more than once, and after a failed Start.
func (c *Cluster) Stop(ctx context.Context) error {
	start := time.Now()
	if c.buildCancel != nil {
		c.buildCancel()
	}
	var errs []error
	if c.Host != nil {
		errs = append(errs, swarmtest.Sweep(ctx, c.Host, LabelE2E, swarmtest.LabelRun+"="+c.RunID))
	}
	errs = append(errs, removeCgroups(cgroupParent(c.RunID)))
	if c.dir != "" {
		errs = append(errs, os.RemoveAll(c.dir))
	}
	for _, n := range c.Nodes {
		if n != nil && n.Client != nil {
			n.Client.Close()
		}
	}
	err := errors.Join(errs...)
	c.logf("e2e: teardown: %s (err: %v)", time.Since(start).Round(time.Millisecond), err)
	return err
}

// NodesReady reports whether the manager sees every node ready and active,
// with a description for a poll.
func (c *Cluster) NodesReady(ctx context.Context) (bool, string) {
	nodes, err := c.Manager().Client.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return false, err.Error()
	}
	ready := 0
	for _, n := range nodes {
		if n.Status.State == swarm.NodeStateReady && n.Spec.Availability == swarm.NodeAvailabilityActive {
			ready++
		}
	}
	return ready == len(c.Nodes) && len(nodes) == len(c.Nodes), fmt.Sprintf("%d of %d nodes ready (%d listed)", ready, len(c.Nodes), len(nodes))
}

// parallel runs fns at once and returns all their errors.
func parallel(fns ...func() error) error {
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, f := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// RestartEngine restarts a node's dockerd by restarting its container, as
// `systemctl restart docker` would: after stop seconds of SIGTERM, SIGKILL
// (0: killed at once). It returns once the engine answers and the
// managers see every node ready again, and says how long that took.
func (c *Cluster) RestartEngine(ctx context.Context, n *Node, stop int) (time.Duration, error) {
	start := time.Now()
	if err := c.Host.ContainerRestart(ctx, n.Container, container.StopOptions{Timeout: &stop}); err != nil {
		return 0, fmt.Errorf("restart %s: %w", n.Hostname, err)
	}
	err := swarmtest.PollE(ctx, 3*time.Minute, func() (bool, string) {
		if _, err := n.Client.Ping(ctx); err != nil {
			return false, err.Error()
		}
		return c.NodesReady(ctx)
	})
	if err != nil {
		return 0, fmt.Errorf("%s after its restart: %w", n.Hostname, err)
	}
	return time.Since(start), nil
}
