package lease

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"go.uber.org/goleak"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/testing/fake"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func elector(api dockerapi.API, id string) *Elector {
	return &Elector{Docker: api, Identity: id, LeaseDuration: 400 * time.Millisecond, RenewDeadline: 250 * time.Millisecond,
		RetryPeriod: 50 * time.Millisecond, Log: slog.New(slog.DiscardHandler)}
}

func start(t *testing.T, e *Elector) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = e.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

func eventually(t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func leads(e *Elector) bool { _, ok := e.Leading(); return ok }

// One replica leads; the other follows and takes over at once when the
// leader stops cleanly.
func TestOneLeaderAndCleanHandOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fake.New()
		a, b := elector(f, "a"), elector(f, "b")
		stopA := start(t, a)
		eventually(t, "a leads", time.Second, func() bool { return leads(a) })
		stopB := start(t, b)
		defer stopB()
		time.Sleep(600 * time.Millisecond) // longer than the lease
		if leads(b) || !leads(a) {
			t.Fatalf("a leads %v, b leads %v: want a only, renewing", leads(a), leads(b))
		}
		ctx, _ := a.Leading()
		stopA()
		if ctx.Err() == nil {
			t.Error("a's leader context survived its stop")
		}
		took := eventually(t, "b takes over", time.Second, func() bool { return leads(b) })
		if took > 300*time.Millisecond {
			t.Errorf("hand-over took %s, want well under the lease duration after a clean stop", took)
		}
	})
}

// A leader that cannot renew stops writing before its lease can expire
// elsewhere; the other takes over only after the lease expired by its own
// clock.
func TestLeaderThatCannotRenewStops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fake.New()
		a, b := elector(f, "a"), elector(f, "b")
		stopA := start(t, a)
		defer stopA()
		eventually(t, "a leads", time.Second, func() bool { return leads(a) })
		ctx, _ := a.Leading()
		stopB := start(t, b)
		defer stopB()
		// a's engine stops answering its lease writes.
		for range 100 {
			f.FailNext(dockerapi.OpConfigList, errors.New("Cannot connect to the Docker daemon"))
		}
		lost := time.Now()
		eventually(t, "a stops leading", time.Second, func() bool { return !leads(a) })
		if ctx.Err() == nil {
			t.Error("a's leader context was not cancelled")
		}
		if leads(b) && time.Since(lost) < a.RenewDeadline {
			t.Error("b led while a still could")
		}
		eventually(t, "someone leads again", 3*time.Second, func() bool { return leads(a) || leads(b) })
	})
}

// partitioned is an engine cut off from the other managers: while cut,
// lease calls hang until their deadline, as they do on a manager without
// quorum (TestLeaderLossAndPartition). It notes when the last successful
// renewal was sent.
type partitioned struct {
	*fake.Swarm
	mu      sync.Mutex
	cut     bool
	renewed time.Time
}

func (p *partitioned) isCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

func (p *partitioned) ConfigList(ctx context.Context, o swarm.ConfigListOptions) ([]swarm.Config, error) {
	if p.isCut() {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return p.Swarm.ConfigList(ctx, o)
}

func (p *partitioned) ConfigUpdate(ctx context.Context, id string, v swarm.Version, spec swarm.ConfigSpec) error {
	sent := time.Now()
	if p.isCut() {
		<-ctx.Done()
		return ctx.Err()
	}
	err := p.Swarm.ConfigUpdate(ctx, id, v, spec)
	if err == nil {
		p.mu.Lock()
		p.renewed = sent
		p.mu.Unlock()
	}
	return err
}

// A leader cut off stops leading RenewDeadline after it sent its last
// renewal, whatever its calls' timeouts and its retry period: the other
// replicas count the lease from when they saw that renewal, which is
// later. (It stopped only once a tick's call had timed out, up to a retry
// period and a call's timeout late: 16 s after the cut where the lease is
// 15 s.)
func TestPartitionedLeaderStopsWithinTheRenewDeadline(t *testing.T) {
	f := fake.New()
	p := &partitioned{Swarm: f}
	a := &Elector{Docker: p, Identity: "a", LeaseDuration: 300 * time.Millisecond, RenewDeadline: 200 * time.Millisecond,
		RetryPeriod: 90 * time.Millisecond, Log: slog.New(slog.DiscardHandler)}
	stopA := start(t, a)
	defer stopA()
	eventually(t, "a leads", time.Second, func() bool { return leads(a) })
	// Cut right after a renewal, so the next calls hang to their timeout.
	eventually(t, "a renews", time.Second, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.renewed.IsZero() && time.Since(p.renewed) < 10*time.Millisecond {
			p.cut = true
			return true
		}
		return false
	})
	eventually(t, "a stops leading", time.Second, func() bool { return !leads(a) })
	p.mu.Lock()
	late := time.Since(p.renewed) - a.RenewDeadline
	p.mu.Unlock()
	if late > 30*time.Millisecond {
		t.Errorf("a led %s past the renew deadline after its last renewal was sent (lease %s, renew deadline %s)", late, a.LeaseDuration, a.RenewDeadline)
	}
}
