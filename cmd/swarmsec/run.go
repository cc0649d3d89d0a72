package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/swarmsec/swarmsec/internal/controller"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/internal/lease"
	"github.com/swarmsec/swarmsec/internal/metrics"
	"github.com/swarmsec/swarmsec/internal/observe"
	"github.com/swarmsec/swarmsec/internal/plan"
	"github.com/swarmsec/swarmsec/internal/reconcile"
	"github.com/swarmsec/swarmsec/internal/server"
	"github.com/swarmsec/swarmsec/internal/status"
	"github.com/swarmsec/swarmsec/internal/watch"
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

	m := metrics.New()
	store := state.New()
	tracker := status.NewTracker(mode, store)
	tracker.SetStaleAfter(3 * o.resync)
	// Writes made while this replica follows: there must be none.
	var (
		elector        *lease.Elector
		followerWrites atomic.Int64
	)
	api := dockerapi.NewInstrumented(cli, dockerapi.ObserverFunc(func(op string, d time.Duration, err error) {
		m.ObserveDockerCall(op, d, err)
		if elector != nil && slices.Contains(dockerapi.Writes, op) {
			if _, leading := elector.Leading(); !leading {
				followerWrites.Add(1)
			}
		}
	}))
	tracker.SetFollowerWrites(followerWrites.Load)

	// Serve first, so /healthz answers (and /readyz says why not ready)
	// while the engine or the manifests are not there yet.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if o.listen != "" {
		srv, err := server.Listen(server.Config{
			Addr: o.listen, Metrics: m.Handler(), Log: log,
			Status: func() any { return tracker.Report() },
			Ready:  func() (bool, string) { return readyText(tracker.Ready()) },
		})
		if err != nil {
			return err
		}
		log.Info("serving /healthz /readyz /metrics /status", "addr", "http://"+srv.Addr())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(ctx); err != nil {
				log.Error("status server stopped", "error", err)
			}
		}()
	}

	// The engine may be restarting: keep asking rather than give up, but a
	// worker node is a mistake worth stopping for.
	for {
		err := observe.CheckManager(ctx, api)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		if isNotManager(err) {
			return err
		}
		log.Warn("docker engine not answering; retrying", "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(2 * time.Second):
		}
	}

	rec := &reconcile.Reconciler{Docker: api, Store: store, Log: log, Mode: mode, Limits: o.lf.limits, OnResult: m.ObserveResult, Agent: o.lf.delivery(api)}
	if checks := o.lf.nodeChecks(api); checks != nil {
		rec.Nodes = encryptionOf(checks)
		tracker.SetNodes(checks.Cached)
	}
	if o.leaderElect {
		// One replica writes; the others keep their store warm and
		// serve their status.
		// The lease's own calls go around the instrumented client: the
		// write counters then say what the reconciler wrote.
		elector = &lease.Elector{Docker: cli, Name: o.leaseName, Identity: o.identity, Log: log}
		rec.Leader = elector
		tracker.SetRole(func() (bool, string, string) {
			_, leading := elector.Leading()
			return leading, o.identity, elector.Holder()
		})
	} else {
		tracker.SetRole(func() (bool, string, string) { return true, o.identity, o.identity })
	}
	ctrl := &controller.Controller{Reconciler: rec, Resync: o.resync, Log: log, OnPass: func(p plan.Pass) {
		drift := tracker.ObservePass(p)
		m.ObservePass(p, drift)
		m.ObserveStatus(tracker.Report())
		for _, ar := range drift {
			log.Info("drift corrected", "action", ar.Action.Kind, "object", ar.Action.Name,
				"policy", strings.Join(ar.Action.Policies, ","), "result", ar.Outcome)
		}
	}}
	w := watch.New(o.mf.dir, watch.Options{AllowEmpty: o.allowEmpty, Logger: log})
	// Policies reach the store before the tracker hears of them, so no
	// pass is taken to have seen a generation it did not plan from.
	observe := func(snap watch.Snapshot, set func([]*state.Policy) error) error {
		err := set(state.Policies(snap.Objects))
		tracker.ObserveSnapshot(snap)
		m.ObserveSnapshot(snap)
		m.ObserveStatus(tracker.Report())
		return err
	}

	watchErr := make(chan error, 1)
	go func() { watchErr <- w.Run(ctx) }()

	// The controller starts once a set of manifests is in force, so it
	// never acts on an empty desired state by mistake: a held snapshot
	// with no policies (an empty or unreadable directory) is not one.
	var first watch.Snapshot
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-watchErr:
			return fmt.Errorf("watch %s: %w", o.mf.dir, err)
		case first = <-w.Updates():
		}
		if first.Held == "" || len(first.Objects) > 0 {
			break
		}
		tracker.ObserveSnapshot(first)
		m.ObserveSnapshot(first)
		log.Warn("waiting for manifests", "reason", first.Held)
	}
	if err := observe(first, rec.SetPolicies); err != nil {
		return err
	}
	if elector != nil {
		elector.OnStartedLeading = func() { ctrl.Relist("became the leader") }
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := elector.Run(ctx); err != nil {
				log.Error("leader election stopped", "error", err)
			}
		}()
	}
	log.Info("swarmsec running", "manifests", o.mf.dir, "policies", len(first.Objects), "mode", mode, "resync", o.resync, "identity", o.identity, "leader-elect", o.leaderElect)

	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case snap := <-w.Updates():
				if err := observe(snap, ctrl.SetPolicies); err != nil {
					log.Error("store policies", "error", err)
				}
			}
		}
	}()
	err = ctrl.Run(ctx)
	cancel()
	log.Info("swarmsec stopped")
	return err
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
