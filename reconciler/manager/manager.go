package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/internal/server"
	"github.com/swarmsec/swarmsec/reconciler/agentrules"
	"github.com/swarmsec/swarmsec/reconciler/controller"
	"github.com/swarmsec/swarmsec/reconciler/lease"
	"github.com/swarmsec/swarmsec/reconciler/metrics"
	"github.com/swarmsec/swarmsec/reconciler/nodecheck"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/reconciler/status"
	"github.com/swarmsec/swarmsec/reconciler/watch"
	"github.com/swarmsec/swarmsec/state"
)

// Config is what the process needs: swarmsec run's flags, a logger and
// the engine.
type Config struct {
	// Docker is the engine, as the client made it: the lease talks to it
	// directly; every other call goes through an instrumented wrapper
	// (the metrics, and the count of writes made while following).
	Docker dockerapi.API
	Log    *slog.Logger
	// Manifests is the manifest directory; AllowEmpty acts on an empty or
	// unreadable one instead of keeping the last good set.
	Manifests  string
	AllowEmpty bool
	Mode       reconcile.Mode
	Limits     plan.Limits
	// Resync is the period of passes that list everything.
	Resync time.Duration
	// Listen is the address of the status server; empty: do not serve.
	Listen string
	// AgentService is the node agent's service, which gets the
	// published-port rules and whose node checks hold unencryptable
	// changes; empty: neither.
	AgentService string
	// LeaderElect elects one writer among the replicas through the lease
	// config Lease, this replica named Identity in it.
	LeaderElect bool
	Lease       string
	Identity    string
}

// Run runs the process until ctx ends (nil) or it cannot go on: the engine
// is not a Swarm manager, the status server cannot listen, the manifest
// directory cannot be watched.
func Run(ctx context.Context, cfg Config) error {
	return newProcess(cfg).run(ctx)
}

// process is one run: what Run wires, and the goroutines it waits for.
type process struct {
	cfg Config
	log *slog.Logger
	// api counts and times every call but the lease's.
	api     *dockerapi.Instrumented
	metrics *metrics.Metrics
	store   *state.Store
	tracker *status.Tracker
	// elector is nil without leader election. followerWrites counts the
	// writes made while this replica follows: there must be none.
	elector        *lease.Elector
	followerWrites atomic.Int64

	rec     *reconcile.Reconciler
	ctrl    *controller.Controller
	watcher *watch.Watcher
	wg      sync.WaitGroup
}

func newProcess(cfg Config) *process {
	c := &process{cfg: cfg, log: cfg.Log, metrics: metrics.New(), store: state.New()}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.tracker = status.NewTracker(cfg.Mode, c.store)
	c.tracker.SetStaleAfter(3 * cfg.Resync)
	c.api = dockerapi.NewInstrumented(cfg.Docker, dockerapi.ObserverFunc(c.observeCall))
	c.tracker.SetFollowerWrites(c.followerWrites.Load)
	return c
}

// observeCall records a Docker call in the metrics, and counts a write made
// while following. A write cancelled is not one: losing the lease cancels
// the pass's writes, the one in flight (begun while leading) and those not
// sent yet (TestLeaderLossAndPartition saw both counted).
func (c *process) observeCall(op string, d time.Duration, err error) {
	c.metrics.ObserveDockerCall(op, d, err)
	if c.elector != nil && slices.Contains(dockerapi.Writes, op) && !errors.Is(err, context.Canceled) {
		if _, leading := c.elector.Leading(); !leading {
			c.followerWrites.Add(1)
		}
	}
}

func (c *process) run(ctx context.Context) error {
	defer c.wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Serve first, so /healthz answers (and /readyz says why not ready)
	// while the engine or the manifests are not there yet.
	if err := c.serve(ctx); err != nil {
		return err
	}
	if up, err := c.waitForManager(ctx); !up {
		return err
	}
	c.wire()
	c.watcher = watch.New(c.cfg.Manifests, watch.Options{AllowEmpty: c.cfg.AllowEmpty, Logger: c.log})
	watchErr := make(chan error, 1)
	go func() { watchErr <- c.watcher.Run(ctx) }()
	first, ok, err := c.firstSnapshot(ctx, watchErr)
	if !ok {
		return err
	}
	if err := c.observe(first, c.rec.SetPolicies); err != nil {
		return err
	}
	c.elect(ctx)
	c.log.Info("swarmsec running", "manifests", c.cfg.Manifests, "policies", len(first.Objects), "mode", c.cfg.Mode, "resync", c.cfg.Resync, "identity", c.cfg.Identity, "leader-elect", c.cfg.LeaderElect)

	c.wg.Add(1)
	go c.followManifests(ctx)
	err = c.ctrl.Run(ctx)
	cancel()
	c.log.Info("swarmsec stopped")
	return err
}

// serve starts the status server on Listen, unless it is empty.
func (c *process) serve(ctx context.Context) error {
	if c.cfg.Listen == "" {
		return nil
	}
	srv, err := server.Listen(server.Config{
		Addr: c.cfg.Listen, Metrics: c.metrics.Handler(), Log: c.log,
		Status: func() any { return c.tracker.Report() },
		Ready:  func() (bool, string) { return readyText(c.tracker.Ready()) },
	})
	if err != nil {
		return err
	}
	c.log.Info("serving /healthz /readyz /metrics /status", "addr", "http://"+srv.Addr())
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := srv.Serve(ctx); err != nil {
			c.log.Error("status server stopped", "error", err)
		}
	}()
	return nil
}

// waitForManager waits until the engine answers as a Swarm manager; up is
// false when ctx ends first or the engine is a worker (err says so).
func (c *process) waitForManager(ctx context.Context) (up bool, err error) {
	// The engine may be restarting: keep asking rather than give up, but a
	// worker node is a mistake worth stopping for.
	for {
		err := observe.CheckManager(ctx, c.api)
		if err == nil {
			return true, nil
		}
		if ctx.Err() != nil {
			return false, nil
		}
		if errors.Is(err, observe.ErrNotManager) {
			return false, err
		}
		c.log.Warn("docker engine not answering; retrying", "error", err)
		select {
		case <-ctx.Done():
			return false, nil
		case <-time.After(2 * time.Second):
		}
	}
}

// wire builds the reconciler, the elector and the controller.
func (c *process) wire() {
	cfg := c.cfg
	c.rec = &reconcile.Reconciler{Docker: c.api, Store: c.store, Log: c.log, Mode: cfg.Mode, Limits: cfg.Limits, OnResult: c.metrics.ObserveResult}
	if cfg.AgentService != "" {
		c.rec.Agent = &agentrules.Delivery{Docker: c.api, Service: cfg.AgentService}
		checks := &nodecheck.Reader{Docker: c.api, Service: cfg.AgentService, Swarm: c.api}
		c.rec.Nodes = checks.NodeEncryption
		c.tracker.SetNodes(checks.Cached)
		c.tracker.SetSwarmNodes(checks.SwarmNodes)
	}
	if cfg.LeaderElect {
		// One replica writes; the others keep their store warm and
		// serve their status.
		// The lease's own calls go around the instrumented client: the
		// write counters then say what the reconciler wrote.
		elector := &lease.Elector{Docker: cfg.Docker, Name: cfg.Lease, Identity: cfg.Identity, Log: c.log}
		c.elector = elector
		c.rec.Leader = elector
		c.tracker.SetRole(func() (bool, string, string) {
			_, leading := elector.Leading()
			return leading, cfg.Identity, elector.Holder()
		})
	} else {
		c.tracker.SetRole(func() (bool, string, string) { return true, cfg.Identity, cfg.Identity })
	}
	c.ctrl = &controller.Controller{Reconciler: c.rec, Resync: cfg.Resync, Log: c.log, OnPass: c.observePass}
}

// observePass records a pass in the status and metrics, and logs the drift
// it corrected.
func (c *process) observePass(p controller.Pass) {
	drift := c.tracker.ObservePass(p)
	c.metrics.ObservePass(p, drift)
	c.metrics.ObserveStatus(c.tracker.Report())
	for _, ar := range drift {
		c.log.Info("drift corrected", "action", ar.Action.Kind, "object", ar.Action.Name,
			"policy", strings.Join(ar.Action.Policies, ","), "result", ar.Outcome)
	}
}

// observe puts a snapshot's policies in the store with set, then tells the
// tracker and the metrics. Policies reach the store before the tracker
// hears of them, so no pass is taken to have seen a generation it did not
// plan from.
func (c *process) observe(snap watch.Snapshot, set func([]*v1.Policy) error) error {
	err := set(state.Policies(snap.Objects))
	c.tracker.ObserveSnapshot(snap)
	c.metrics.ObserveSnapshot(snap)
	c.metrics.ObserveStatus(c.tracker.Report())
	return err
}

// firstSnapshot waits for the first set of manifests in force; ok is false
// when ctx ends first or the watcher fails (err says so).
func (c *process) firstSnapshot(ctx context.Context, watchErr <-chan error) (first watch.Snapshot, ok bool, err error) {
	// The controller starts once a set of manifests is in force, so it
	// never acts on an empty desired state by mistake: a held snapshot
	// with no policies (an empty or unreadable directory) is not one.
	for {
		select {
		case <-ctx.Done():
			return first, false, nil
		case err := <-watchErr:
			return first, false, fmt.Errorf("watch %s: %w", c.cfg.Manifests, err)
		case first = <-c.watcher.Updates():
		}
		if first.Held == "" || len(first.Objects) > 0 {
			return first, true, nil
		}
		c.tracker.ObserveSnapshot(first)
		c.metrics.ObserveSnapshot(first)
		c.log.Warn("waiting for manifests", "reason", first.Held)
	}
}

// elect starts the leader election, when there is one.
func (c *process) elect(ctx context.Context) {
	if c.elector == nil {
		return
	}
	c.elector.OnStartedLeading = func() { c.ctrl.Relist("became the leader") }
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := c.elector.Run(ctx); err != nil {
			c.log.Error("leader election stopped", "error", err)
		}
	}()
}

// followManifests hands every later snapshot to the controller until ctx
// ends.
func (c *process) followManifests(ctx context.Context) {
	defer c.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case snap := <-c.watcher.Updates():
			if err := c.observe(snap, c.ctrl.SetPolicies); err != nil {
				c.log.Error("store policies", "error", err)
			}
		}
	}
}

// readyText renders readiness checks one per line, for /readyz.
func readyText(ok bool, checks []status.Check) (bool, string) {
	var b strings.Builder
	for _, c := range checks {
		word := "ok"
		if !c.OK {
			word = "not ok"
		}
		fmt.Fprintf(&b, "%s: %s (%s)\n", c.Name, word, c.Message)
	}
	return ok, b.String()
}
