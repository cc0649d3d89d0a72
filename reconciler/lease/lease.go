// Package lease elects one writer among the swarmsec replicas of a Swarm.
// The lease is a Swarm config of swarmsec's own whose labels name the
// holder; a replica takes or renews it by updating the labels with the
// version it read, so Swarm's Raft decides every race. The algorithm is
// client-go's leaderelection: a lease held by another is taken over only
// once it has not changed for LeaseDuration by this replica's own clock
// (never by the time written in it); the holder stops leading RenewDeadline
// after it sent its last successful renewal (a timer, not the next retry),
// before the lease can expire anywhere; a
// clean stop releases it so another takes over at once.
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"k8s.io/apimachinery/pkg/util/wait"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
)

// Labels of the lease config.
const (
	labelHolder      = "swarmsec.io/lease-holder"
	labelRenew       = "swarmsec.io/lease-renew"
	labelDuration    = "swarmsec.io/lease-duration"
	labelTransitions = "swarmsec.io/lease-transitions"
)

// DefaultName is the lease config's name.
const DefaultName = "swarmsec-leader"

// Defaults of client-go's leaderelection.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Elector runs for one replica and says whether it leads.
type Elector struct {
	Docker   dockerapi.API
	Name     string
	Identity string
	// LeaseDuration > RenewDeadline > RetryPeriod.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	Log                                       *slog.Logger
	// OnStartedLeading, when set, runs each time the replica starts
	// leading.
	OnStartedLeading func()

	now func() time.Time

	mu        sync.Mutex
	leading   bool
	leaderCtx context.Context
	stop      context.CancelFunc
	holder    string
	// observed is the lease as last read and when it last changed, by
	// this replica's clock.
	observed   record
	observedAt time.Time
	// renewed is when the last successful renewal was sent; expiry ends
	// leadership RenewDeadline after it.
	renewed time.Time
	expiry  *time.Timer
}

// record is what the lease says.
type record struct {
	holder      string
	renew       string
	duration    time.Duration
	transitions int
}

// Leading returns a context that ends when this replica stops leading, and
// whether it leads now. Writes made under it stop when leadership goes.
func (e *Elector) Leading() (context.Context, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leaderCtx, e.leading
}

// Holder is the identity the lease last named ("" when free or unknown).
func (e *Elector) Holder() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.holder
}

func (e *Elector) defaults() {
	if e.Name == "" {
		e.Name = DefaultName
	}
	if e.LeaseDuration <= 0 {
		e.LeaseDuration = DefaultLeaseDuration
	}
	if e.RenewDeadline <= 0 {
		e.RenewDeadline = DefaultRenewDeadline
	}
	if e.RetryPeriod <= 0 {
		e.RetryPeriod = DefaultRetryPeriod
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.Log == nil {
		e.Log = slog.Default()
	}
}

// Run takes part in the election until ctx ends, then releases the lease if
// it holds it.
func (e *Elector) Run(ctx context.Context) error {
	e.defaults()
	if e.LeaseDuration <= e.RenewDeadline || e.RenewDeadline <= e.RetryPeriod {
		return fmt.Errorf("lease: want lease duration %s > renew deadline %s > retry period %s", e.LeaseDuration, e.RenewDeadline, e.RetryPeriod)
	}
	// A change of the lease (a release above all) is worth a look at
	// once, not at the next period: followers watch its events.
	changed := make(chan struct{}, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go e.watch(watchCtx, changed)
	for {
		e.tick(ctx)
		next := time.After(wait.Jitter(e.RetryPeriod, 0.2))
	wait:
		for {
			select {
			case <-ctx.Done():
				e.release()
				return nil
			case <-changed:
				// The leader's own renewals are events too: only a
				// follower looks again at once.
				if _, leading := e.Leading(); !leading {
					break wait
				}
			case <-next:
				break wait
			}
		}
	}
}

// watch signals changed on every event of the lease config, reconnecting
// with the retry period when the stream breaks.
func (e *Elector) watch(ctx context.Context, changed chan<- struct{}) {
	for ctx.Err() == nil {
		msgs, errs := e.Docker.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
			filters.Arg("type", string(events.ConfigEventType)), filters.Arg("config", e.Name))})
	stream:
		for {
			select {
			case <-ctx.Done():
				return
			case <-msgs:
				select {
				case changed <- struct{}{}:
				default:
				}
			case err := <-errs:
				e.Log.Debug("lease events stream broke; reconnecting", "error", err)
				break stream
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(e.RetryPeriod):
		}
	}
}

// tick tries to take or renew the lease, and stops leading when that has
// failed for RenewDeadline.
func (e *Elector) tick(ctx context.Context) {
	// A renewal counts from when it was sent: the others see it no
	// earlier. Its call may not outlive the deadline it would extend.
	sent := e.now()
	timeout := e.RetryPeriod
	e.mu.Lock()
	if e.leading {
		timeout = min(timeout, e.renewed.Add(e.RenewDeadline).Sub(sent))
	}
	e.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, max(timeout, 0))
	defer cancel()
	ok, err := e.tryAcquireOrRenew(cctx)
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case ok && !e.leading:
		e.leading, e.renewed = true, sent
		e.leaderCtx, e.stop = context.WithCancel(ctx)
		e.armLocked()
		e.Log.Info("leading: this replica writes", "identity", e.Identity, "lease", e.Name)
		if e.OnStartedLeading != nil {
			go e.OnStartedLeading()
		}
	case ok && e.leading:
		e.renewed = sent
		e.armLocked()
	case e.leading && (e.holder != e.Identity || now.Sub(e.renewed) >= e.RenewDeadline):
		e.loseLocked(err)
	case err != nil && ctx.Err() == nil:
		e.Log.Debug("lease not taken", "error", err)
	}
}

// armLocked stops leadership RenewDeadline after the last renewal was
// sent, on time, not at the end of the tick that finds it late (a tick's
// call and the retry period could make that up to two retry periods
// later, past the lease's expiry elsewhere).
func (e *Elector) armLocked() {
	if e.expiry != nil {
		e.expiry.Stop()
	}
	renewed := e.renewed
	e.expiry = time.AfterFunc(renewed.Add(e.RenewDeadline).Sub(e.now()), func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.leading && e.renewed.Equal(renewed) {
			e.loseLocked(fmt.Errorf("not renewed within %s", e.RenewDeadline))
		}
	})
}

// loseLocked stops leading before the lease can expire elsewhere: a pass
// in flight is cancelled with leaderCtx.
func (e *Elector) loseLocked(err error) {
	e.leading = false
	e.stop()
	if e.expiry != nil {
		e.expiry.Stop()
	}
	e.Log.Warn("lost the lease: this replica stops writing", "identity", e.Identity, "holder", e.holder, "error", err)
}

// errHeld says another replica holds the lease.
var errHeld = errors.New("held by another replica")

func (e *Elector) tryAcquireOrRenew(ctx context.Context) (bool, error) {
	cfgs, err := e.Docker.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(filters.Arg("name", e.Name))})
	if err != nil {
		return false, fmt.Errorf("lease %s: list: %w", e.Name, err)
	}
	var cur *swarm.Config
	for i := range cfgs {
		if cfgs[i].Spec.Name == e.Name {
			cur = &cfgs[i]
		}
	}
	now := e.now()
	mine := record{holder: e.Identity, renew: now.UTC().Format(time.RFC3339Nano), duration: e.LeaseDuration}
	if cur == nil {
		// Recreated if deleted: the lease is swarmsec's own.
		_, err := e.Docker.ConfigCreate(ctx, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: e.Name, Labels: mine.labels()}, Data: []byte("swarmsec leader lease\n")})
		if err != nil {
			return false, fmt.Errorf("lease %s: create: %w", e.Name, err)
		}
		e.observe(mine, now)
		return true, nil
	}
	rec := parse(cur.Spec.Labels)
	e.observe(rec, now)
	e.mu.Lock()
	changedAt := e.observedAt
	e.mu.Unlock()
	if rec.holder != "" && rec.holder != e.Identity && now.Before(changedAt.Add(rec.duration)) {
		return false, errHeld
	}
	mine.transitions = rec.transitions
	if rec.holder != e.Identity {
		mine.transitions++
	}
	labels := cur.Spec.Labels
	for k, v := range mine.labels() {
		labels[k] = v
	}
	if err := e.Docker.ConfigUpdate(ctx, cur.ID, cur.Version, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: e.Name, Labels: labels}, Data: cur.Spec.Data}); err != nil {
		return false, fmt.Errorf("lease %s: update: %w", e.Name, err)
	}
	e.observe(mine, now)
	return true, nil
}

// observe notes the lease as read, and when it last changed.
func (e *Elector) observe(rec record, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if rec != e.observed {
		e.observed, e.observedAt = rec, now
	}
	e.holder = rec.holder
}

// release frees the lease on a clean stop, so another replica takes over
// at once instead of after LeaseDuration.
func (e *Elector) release() {
	e.mu.Lock()
	leading := e.leading
	if leading {
		e.leading = false
		e.stop()
	}
	if e.expiry != nil {
		e.expiry.Stop()
	}
	e.mu.Unlock()
	if !leading {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.RetryPeriod)
	defer cancel()
	cfgs, err := e.Docker.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(filters.Arg("name", e.Name))})
	if err != nil {
		e.Log.Warn("lease not released", "error", err)
		return
	}
	for _, c := range cfgs {
		if c.Spec.Name != e.Name || parse(c.Spec.Labels).holder != e.Identity {
			continue
		}
		labels := c.Spec.Labels
		labels[labelHolder] = ""
		labels[labelRenew] = e.now().UTC().Format(time.RFC3339Nano)
		if err := e.Docker.ConfigUpdate(ctx, c.ID, c.Version, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: e.Name, Labels: labels}, Data: c.Spec.Data}); err != nil {
			e.Log.Warn("lease not released", "error", err)
			return
		}
		e.Log.Info("released the lease", "identity", e.Identity)
	}
}

func (r record) labels() map[string]string {
	return map[string]string{
		v1.LabelManaged: "true", v1.LabelPurpose: v1.PurposeLease,
		labelHolder: r.holder, labelRenew: r.renew,
		labelDuration: r.duration.String(), labelTransitions: strconv.Itoa(r.transitions),
	}
}

func parse(l map[string]string) record {
	d, err := time.ParseDuration(l[labelDuration])
	if err != nil || d <= 0 {
		d = DefaultLeaseDuration
	}
	n, _ := strconv.Atoi(l[labelTransitions])
	return record{holder: l[labelHolder], renew: l[labelRenew], duration: d, transitions: n}
}
