// Package controller is the loop that drives reconcile passes: on start,
// when the policies change, on Docker service, network and record events,
// after the delay a pass asks for, and on a periodic resync. Events only
// say "look again", and at what: a pass re-reads the objects they named,
// and lists everything on start, on each resync and after the events
// stream was lost (list, then watch). It is the one place that decides
// retries and logs a pass's failure. Each pass gets a logger naming it
// (pass=<id>, see logctx) in its ctx: every line the pass logs carries it.
package controller

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/docker/docker/api/types/events"
	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/workqueue"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/logctx"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
)

// clusterKey is the only work item: a pass compiles the whole cluster, so
// every trigger asks for the same thing and bursts coalesce in the queue.
const clusterKey = "cluster"

// Controller converges continuously: on start, when policies change, when
// Docker reports a service, network or record event, and on a periodic
// resync. Events only say "look again" at an object; the pass reads it.
type Controller struct {
	// Reconciler runs the passes. The controller gives it Changes, fed
	// by the events, unless it has them already.
	Reconciler *reconcile.Reconciler
	// Resync is the period of passes that list everything, without any
	// other trigger.
	Resync time.Duration
	// Retry, when set, caps the delay before the next pass when a pass
	// left work pending (tests use it to go faster).
	Retry time.Duration
	// StartWait bounds how long the first pass waits for the events
	// stream to be subscribed (default 10s).
	StartWait time.Duration
	Log       *slog.Logger
	// OnPass sees every pass (status, metrics).
	OnPass func(Pass)

	queue workqueue.TypedRateLimitingInterface[string]
	once  sync.Once

	mu      sync.Mutex
	trigger string
	// lastPass is when the last pass started (processNext only).
	lastPass time.Time
}

func (c *Controller) init() {
	c.once.Do(func() {
		// Failed passes back off per key, exponentially up to a minute,
		// under an overall rate limit so nothing retries in a hot loop.
		limiter := workqueue.NewTypedMaxOfRateLimiter(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](500*time.Millisecond, time.Minute),
			&workqueue.TypedBucketRateLimiter[string]{Limiter: rate.NewLimiter(rate.Limit(2), 5)},
		)
		c.queue = workqueue.NewTypedRateLimitingQueue(limiter)
		if c.Resync <= 0 {
			c.Resync = 30 * time.Second
		}
		if c.StartWait <= 0 {
			c.StartWait = 10 * time.Second
		}
		if c.Reconciler.Changes == nil {
			c.Reconciler.Changes = observe.NewChanges()
		}
	})
}

// logger is Log, else the reconciler's: a pass logs through the one the
// loop gives it.
func (c *Controller) logger() *slog.Logger {
	switch {
	case c.Log != nil:
		return c.Log
	case c.Reconciler.Log != nil:
		return c.Reconciler.Log
	}
	return slog.Default()
}

// Trigger asks for a pass soon; triggers before it runs coalesce.
func (c *Controller) Trigger(why string) {
	c.init()
	c.setTrigger(why)
	c.queue.Add(clusterKey)
}

func (c *Controller) setTrigger(why string) {
	c.mu.Lock()
	c.trigger = why
	c.mu.Unlock()
}

// Relist asks for a pass that lists everything in Swarm, not only what
// events named: the periodic safety net for a lost event, or a new leader.
func (c *Controller) Relist(why string) {
	c.init()
	c.Reconciler.Changes.Resync(why)
	c.Trigger(why)
}

// eventsReplay is how far back a new events stream starts (see watchEvents).
const eventsReplay = 5 * time.Second

// eventSettle delays a pass after a Docker event so a burst makes one pass.
const eventSettle = 250 * time.Millisecond

func (c *Controller) triggerAfter(why string, d time.Duration) {
	c.init()
	c.setTrigger(why)
	c.queue.AddAfter(clusterKey, d)
}

// SetPolicies replaces the desired policies and asks for a pass.
func (c *Controller) SetPolicies(ps []*v1.Policy) error {
	if err := c.Reconciler.SetPolicies(ps); err != nil {
		return err
	}
	c.Trigger("manifests changed")
	return nil
}

// Run converges until ctx is done, then returns nil.
func (c *Controller) Run(ctx context.Context) error {
	c.init()
	var wg sync.WaitGroup
	wg.Add(3)
	subscribed := make(chan struct{})
	go func() { defer wg.Done(); c.watchEvents(ctx, subscribed) }()
	go func() {
		// An engine that takes the connection and never answers must not
		// hold the first pass back: it would find that out itself.
		defer wg.Done()
		select {
		case <-subscribed:
		case <-ctx.Done():
		case <-time.After(c.StartWait):
			c.Trigger("start, the events stream not subscribed yet")
		}
	}()
	go func() {
		defer wg.Done()
		t := time.NewTicker(c.Resync)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				c.Relist("resync")
			}
		}
	}()
	go func() {
		<-ctx.Done()
		c.queue.ShutDown()
	}()
	// The first pass is asked for by watchEvents once it has subscribed, so
	// nothing that changes between that pass's reads and the subscription
	// is missed.
	for c.processNext(ctx) {
	}
	wg.Wait()
	return nil
}

func (c *Controller) processNext(ctx context.Context) bool {
	key, shutdown := c.queue.Get()
	if shutdown {
		return false
	}
	defer c.queue.Done(key)
	c.mu.Lock()
	why := c.trigger
	c.mu.Unlock()
	rolling := false
	switch c.waveOver(ctx, key) {
	case waveWait:
		return true
	case waveRolling:
		rolling = true
	}

	// Every line the pass logs, here and in what it calls, names it.
	ctx, log := logctx.ForPass(ctx, c.logger())
	start := time.Now()
	c.lastPass = start
	run := c.Reconciler.Reconcile
	if rolling {
		run = c.Reconciler.ReconcileDuringWave
	}
	p, res, err := run(ctx)
	pass := Pass{Start: start, Duration: time.Since(start), Plan: p, Err: err, Trigger: why}
	if res != nil {
		pass.Result, pass.Follower, pass.Requeue, pass.Agent = &res.Result, res.Follower, res.RequeueAfter > 0, res.Agent
		pass.Observed = res.Observed
	}
	if c.OnPass != nil {
		c.OnPass(pass)
	}
	var werr *reconcile.WriteError
	switch {
	case ctx.Err() != nil:
		// Shutting down: the pass was cut short on purpose.
	case reconcile.IsTerminal(err):
		// Not a failure to retry: it stands until the manifests or Swarm
		// change, and every trigger re-evaluates it.
		c.queue.Forget(key)
		log.Warn("pass stopped until something changes", "trigger", why, "error", err)
	case errors.As(err, &werr):
		// Each failed write was logged with its object already.
		log.Warn("some changes failed; retrying with backoff", "trigger", why, "failed", werr.Failed,
			"of", werr.Total, "retries", c.queue.NumRequeues(key))
		c.queue.AddRateLimited(key)
	case err != nil:
		// Logged once, here, where the loop handles it.
		log.Error("reconcile failed; retrying with backoff", "trigger", why, "error", err,
			"retries", c.queue.NumRequeues(key))
		c.queue.AddRateLimited(key)
	case res != nil && res.RequeueAfter > 0:
		c.queue.Forget(key)
		after := res.RequeueAfter
		if c.Reconciler.WaveInFlight() {
			// The next pass follows the end of the wave (waveOver).
			after = 0
		}
		if c.Retry > 0 {
			after = min(after, c.Retry)
		}
		c.setTrigger("requeue")
		c.queue.AddAfter(key, after)
	default:
		c.queue.Forget(key)
		log.Debug("reconciled", "trigger", why, "duration", pass.Duration.Round(time.Millisecond),
			"actions", len(p.Pending()))
	}
	return true
}

// wavePoll is how often a wave in flight is judged: one service list and
// one task list for the whole wave.
const wavePoll = 250 * time.Millisecond

// What a pass does about the last wave.
type waveVerdict int

const (
	waveOver    waveVerdict = iota // none rolls: the pass runs
	waveWait                       // the pass waits for the wave (requeued)
	waveRolling                    // the pass runs, writing no service update
)

// waveOver says whether the pass may run: no wave the last pass wrote is
// still rolling. While one is, the pass waits for it (the blast radius
// counts a drift's revert too) and looks again in wavePoll; once a resync
// period went by without a pass, one runs that writes no service update,
// so status and readiness stay current through a long wave. A wave with a
// failed rolling update ends the growth, and the next pass comes after
// the pending delay, at the cap.
func (c *Controller) waveOver(ctx context.Context, key string) waveVerdict {
	r := c.Reconciler
	if !r.WaveInFlight() {
		return waveOver
	}
	st, err := r.JudgeWave(ctx)
	if err == nil && !st.Done && time.Since(c.lastPass) >= c.Resync {
		c.queue.AddAfter(key, wavePoll)
		return waveRolling
	}
	switch {
	case ctx.Err() != nil:
		return waveWait
	case errors.Is(err, reconcile.ErrWaveFailed):
		after := r.PendingDelay
		if after <= 0 {
			after = reconcile.DefaultPendingDelay
		}
		if c.Retry > 0 {
			after = min(after, c.Retry)
		}
		c.logger().Warn("a rolling update of the last wave failed; the next waves go at the cap", "error", err, "next", after)
		c.queue.AddAfter(key, after)
		return waveWait
	case err != nil:
		c.logger().Warn("the last wave's rolling updates not read; looking again", "error", err)
		c.queue.AddAfter(key, wavePoll)
		return waveWait
	case !st.Done:
		c.queue.AddAfter(key, wavePoll)
		return waveWait
	case st.Waiting != "":
		c.logger().Warn("the last wave did not end in time", "waiting", st.Waiting)
	}
	return waveOver
}

// watchEvents turns Docker's service, network and record events into
// triggers, noting which object each names for the next pass to re-read.
// When the stream breaks (an engine restart), passes list everything until
// it is back; it reconnects with backoff and asks for a pass that lists,
// since events may have been missed meanwhile.
func (c *Controller) watchEvents(ctx context.Context, subscribed chan<- struct{}) {
	backoff := reconnectBackoff()
	why := "start"
	changes := c.Reconciler.Changes
	for ctx.Err() == nil {
		f := observe.EventFilters()
		streamCtx, cancel := context.WithCancel(ctx)
		// Events returns once the engine answered (or failed), and the
		// engine answers just before it subscribes: asking for the last
		// seconds again closes that gap, so a pass asked for now and the
		// stream together see every change. A replayed event only asks
		// for one more pass.
		since := strconv.FormatInt(time.Now().Add(-eventsReplay).Unix(), 10)
		msgs, errs := c.Reconciler.Docker.Events(streamCtx, events.ListOptions{Filters: f, Since: since})
		connected := time.Now()
		changes.Watch(why)
		c.Trigger(why)
		if why == "start" {
			close(subscribed)
		}
		why = "events stream reconnected"
	stream:
		for {
			select {
			case <-ctx.Done():
				cancel()
				return
			case m := <-msgs:
				if !changes.Event(m) {
					continue // a config that is no record: the lease, the agents' rules
				}
				// A rolling update emits a burst of events: let them settle.
				c.triggerAfter(string(m.Type)+" "+string(m.Action)+" "+m.Actor.Attributes["name"], eventSettle)
			case err := <-errs:
				if ctx.Err() != nil {
					cancel()
					return
				}
				changes.Unwatch()
				c.logger().Warn("docker events stream lost; reconnecting", "error", err)
				break stream
			}
		}
		cancel()
		if time.Since(connected) > time.Minute {
			backoff = reconnectBackoff()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff.Step()):
		}
	}
}

// reconnectBackoff spaces reconnections of the events stream: 1s doubling
// up to 30s, with jitter so managers restarted together do not reconnect
// in step.
func reconnectBackoff() *wait.Backoff {
	return &wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: math.MaxInt32, Cap: 30 * time.Second}
}
