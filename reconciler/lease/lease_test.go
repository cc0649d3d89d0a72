package lease

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

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
