package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/docker/docker/client"
	"github.com/spf13/cobra"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/internal/server"
	"github.com/swarmsec/swarmsec/reconciler/controller"
	"github.com/swarmsec/swarmsec/reconciler/lease"
	"github.com/swarmsec/swarmsec/reconciler/metrics"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/reconciler/status"
	"github.com/swarmsec/swarmsec/reconciler/watch"
	"github.com/swarmsec/swarmsec/state"
)

func init() { register(newRunCmd) }

type runOptions struct {
	mf         manifestFlags
	lf         limitFlags
	resync     time.Duration
	allowEmpty bool
	mode       string
	listen     string
	// Leader election among replicas (several managers).
	leaderElect bool
	leaseName   string
	identity    string
}

func newRunCmd(g *globalOptions) *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the controller: keep the Swarm matching the manifests",
		Long: `run is the controller. It converges on start, whenever the manifest directory
changes, on Docker service, network and record events (manual drift is
reverted within seconds) and on a periodic resync. Between resyncs a pass
re-reads only the objects events named; a resync, and the pass after a lost
events stream, lists everything. A broken manifest keeps its last good
policies in force. SIGTERM or SIGINT stops it cleanly.

It serves, on --listen (loopback by default: the process holds the Docker
socket), /healthz, /readyz, /metrics (Prometheus) and /status (the policies'
conditions as JSON, which swarmsec status prints).

With --mode audit it computes and reports everything (status reason AuditOnly,
swarmsec_audit_actions, a log line per would-be change) and writes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return o.run(ctx, g, cmd)
		},
	}
	o.mf.add(cmd)
	o.lf.add(cmd, false)
	cmd.Flags().DurationVar(&o.resync, "resync", 30*time.Second, "period of passes that list everything in Swarm (between them, a pass re-reads only what events named)")
	cmd.Flags().BoolVar(&o.allowEmpty, "allow-empty", false, "act on an empty or unreadable manifest directory (removes every policy) instead of keeping the last good set")
	cmd.Flags().StringVar(&o.mode, "mode", string(reconcile.ModeEnforce), "enforce: write changes; audit: report what would change and write nothing")
	cmd.Flags().StringVar(&o.listen, "listen", server.DefaultAddr, "address of /healthz, /readyz, /metrics and /status (empty: do not serve)")
	host, _ := os.Hostname()
	cmd.Flags().BoolVar(&o.leaderElect, "leader-elect", true, "elect one writer among the replicas through a lease on Swarm's Raft (a Swarm config); the others follow")
	cmd.Flags().StringVar(&o.leaseName, "lease", lease.DefaultName, "name of the lease config")
	cmd.Flags().StringVar(&o.identity, "identity", fmt.Sprintf("%s-%d", host, os.Getpid()), "this replica's name in the lease")
	return cmd
}

func (o *runOptions) run(ctx context.Context, g *globalOptions, cmd *cobra.Command) error {
	log, err := g.logger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	mode := reconcile.Mode(o.mode)
	if mode != reconcile.ModeEnforce && mode != reconcile.ModeAudit {
		return fmt.Errorf("--mode %q: must be enforce or audit", o.mode)
	}
	cli, err := newClient()
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	defer cli.Close()
	return newControllerProcess(o, log, mode, cli).run(ctx)
}

// controllerProcess is the process swarmsec run is: the status server,
// the wait for the engine, the manifest watcher, the leader election and
// the controller, started in that order by run.
type controllerProcess struct {
	o    *runOptions
	log  *slog.Logger
	mode reconcile.Mode
	// cli is the bare client, for the lease; api counts and times every
	// other call.
	cli     *client.Client
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

func newControllerProcess(o *runOptions, log *slog.Logger, mode reconcile.Mode, cli *client.Client) *controllerProcess {
	c := &controllerProcess{o: o, log: log, mode: mode, cli: cli, metrics: metrics.New(), store: state.New()}
	c.tracker = status.NewTracker(mode, c.store)
	c.tracker.SetStaleAfter(3 * o.resync)
	c.api = dockerapi.NewInstrumented(cli, dockerapi.ObserverFunc(c.observeCall))
	c.tracker.SetFollowerWrites(c.followerWrites.Load)
	return c
}

// observeCall records a Docker call in the metrics, and counts a write made
// while following. A write cancelled is not one: losing the lease cancels
// the pass's writes, the one in flight (begun while leading) and those not
// sent yet (TestLeaderLossAndPartition saw both counted).
func (c *controllerProcess) observeCall(op string, d time.Duration, err error) {
	c.metrics.ObserveDockerCall(op, d, err)
	if c.elector != nil && slices.Contains(dockerapi.Writes, op) && !errors.Is(err, context.Canceled) {
		if _, leading := c.elector.Leading(); !leading {
			c.followerWrites.Add(1)
		}
	}
}

func (c *controllerProcess) run(ctx context.Context) error {
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
	c.watcher = watch.New(c.o.mf.dir, watch.Options{AllowEmpty: c.o.allowEmpty, Logger: c.log})
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
	c.log.Info("swarmsec running", "manifests", c.o.mf.dir, "policies", len(first.Objects), "mode", c.mode, "resync", c.o.resync, "identity", c.o.identity, "leader-elect", c.o.leaderElect)

	c.wg.Add(1)
	go c.followManifests(ctx)
	err = c.ctrl.Run(ctx)
	cancel()
	c.log.Info("swarmsec stopped")
	return err
}

// serve starts the status server on --listen, unless it is empty.
func (c *controllerProcess) serve(ctx context.Context) error {
	if c.o.listen == "" {
		return nil
	}
	srv, err := server.Listen(server.Config{
		Addr: c.o.listen, Metrics: c.metrics.Handler(), Log: c.log,
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
func (c *controllerProcess) waitForManager(ctx context.Context) (up bool, err error) {
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
		if isNotManager(err) {
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
func (c *controllerProcess) wire() {
	o := c.o
	c.rec = &reconcile.Reconciler{Docker: c.api, Store: c.store, Log: c.log, Mode: c.mode, Limits: o.lf.limits, OnResult: c.metrics.ObserveResult, Agent: o.lf.delivery(c.api)}
	if checks := o.lf.nodeChecks(c.api); checks != nil {
		c.rec.Nodes = encryptionOf(checks)
		c.tracker.SetNodes(checks.Cached)
	}
	if o.leaderElect {
		// One replica writes; the others keep their store warm and
		// serve their status.
		// The lease's own calls go around the instrumented client: the
		// write counters then say what the reconciler wrote.
		elector := &lease.Elector{Docker: c.cli, Name: o.leaseName, Identity: o.identity, Log: c.log}
		c.elector = elector
		c.rec.Leader = elector
		c.tracker.SetRole(func() (bool, string, string) {
			_, leading := elector.Leading()
			return leading, o.identity, elector.Holder()
		})
	} else {
		c.tracker.SetRole(func() (bool, string, string) { return true, o.identity, o.identity })
	}
	c.ctrl = &controller.Controller{Reconciler: c.rec, Resync: o.resync, Log: c.log, OnPass: c.observePass}
}

// observePass records a pass in the status and metrics, and logs the drift
// it corrected.
func (c *controllerProcess) observePass(p plan.Pass) {
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
func (c *controllerProcess) observe(snap watch.Snapshot, set func([]*state.Policy) error) error {
	err := set(state.Policies(snap.Objects))
	c.tracker.ObserveSnapshot(snap)
	c.metrics.ObserveSnapshot(snap)
	c.metrics.ObserveStatus(c.tracker.Report())
	return err
}

// firstSnapshot waits for the first set of manifests in force; ok is false
// when ctx ends first or the watcher fails (err says so).
func (c *controllerProcess) firstSnapshot(ctx context.Context, watchErr <-chan error) (first watch.Snapshot, ok bool, err error) {
	// The controller starts once a set of manifests is in force, so it
	// never acts on an empty desired state by mistake: a held snapshot
	// with no policies (an empty or unreadable directory) is not one.
	for {
		select {
		case <-ctx.Done():
			return first, false, nil
		case err := <-watchErr:
			return first, false, fmt.Errorf("watch %s: %w", c.o.mf.dir, err)
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
func (c *controllerProcess) elect(ctx context.Context) {
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
func (c *controllerProcess) followManifests(ctx context.Context) {
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

func isNotManager(err error) bool {
	return err != nil && errors.Is(err, observe.ErrNotManager)
}
