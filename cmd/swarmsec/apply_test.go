package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/fake"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

// TestPendingWaitBacksOff: a write waiting on Swarm is looked at again
// after 250 ms, then 0.5, 1, 2 s..., never later than the pass asked.
func TestPendingWaitBacksOff(t *testing.T) {
	for _, tc := range []struct {
		requeue time.Duration
		idle    int
		want    time.Duration
	}{
		{5 * time.Second, 0, 250 * time.Millisecond},
		{5 * time.Second, 1, 500 * time.Millisecond},
		{5 * time.Second, 3, 2 * time.Second},
		{5 * time.Second, 4, 4 * time.Second},
		{5 * time.Second, 5, 5 * time.Second},
		{5 * time.Second, 100, 5 * time.Second},
		{100 * time.Millisecond, 0, 100 * time.Millisecond},
	} {
		if got := pendingWait(tc.requeue, tc.idle); got != tc.want {
			t.Errorf("pendingWait(%s, %d) = %s, want %s", tc.requeue, tc.idle, got, tc.want)
		}
	}
}

// restoreRig converges the shop's policies on a fake Swarm, then drops
// them: the next apply restores db and web from their records.
func restoreRig(t *testing.T) (*fake.Swarm, *reconcile.Reconciler) {
	t.Helper()
	f, _ := policytest.Shop(t)
	r := &reconcile.Reconciler{Docker: f, Store: state.New(), Mode: reconcile.ModeEnforce, Log: slog.New(slog.DiscardHandler),
		PendingDelay: 5 * time.Millisecond, ProgressDelay: time.Millisecond}
	if err := r.SetPolicies(policytest.ShopPolicies()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := runApply(ctx, io.Discard, r, false, 0); err != nil {
		t.Fatal(err)
	}
	if n := records(f); n != 2 {
		t.Fatalf("%d records after isolating db and web, want 2", n)
	}
	if err := r.SetPolicies(nil); err != nil {
		t.Fatal(err)
	}
	return f, r
}

func records(f *fake.Swarm) int {
	n := 0
	for _, c := range f.Configs() {
		if strings.HasPrefix(c.Spec.Name, compile.RecordName("")) {
			n++
		}
	}
	return n
}

// apply says the cluster matches only once the restored services' records
// are gone: a record goes in the pass after its restore's rolling update.
func TestApplyRestoreEndsWithNoRecord(t *testing.T) {
	f, r := restoreRig(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var out strings.Builder
	if err := runApply(ctx, &out, r, false, 0); err != nil {
		t.Fatal(err)
	}
	if n := records(f); n != 0 || !strings.Contains(out.String(), "the cluster matches") {
		t.Errorf("%d records left; apply said:\n%s", n, out.String())
	}
}

// A restore whose rolling update Swarm rolls back fails apply, naming it,
// and the records stay: the next apply restores from them.
func TestApplyRolledBackRestoreKeepsTheRecords(t *testing.T) {
	f, r := restoreRig(t)
	f.HoldUpdates(true)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runApply(ctx, io.Discard, r, false, 0) }()
	// Once the restores are written, their updates fail.
	for rolled := 0; rolled == 0; {
		if ctx.Err() != nil {
			t.Fatal("the restores were never written")
		}
		time.Sleep(10 * time.Millisecond)
		for _, name := range []string{"shop_db", "shop_web"} {
			if f.FailUpdate(name, "rollback") == nil {
				rolled++
			}
		}
	}
	f.HoldUpdates(false)
	f.CompleteUpdates()
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "rollback") {
		t.Fatalf("apply after a rolled-back restore: %v", err)
	}
	if n := records(f); n != 2 {
		t.Fatalf("%d records after the rolled-back restore, want 2", n)
	}
	ctx2, cancel2 := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel2()
	if err := runApply(ctx2, io.Discard, r, false, 0); err != nil {
		t.Fatal(err)
	}
	if n := records(f); n != 0 {
		t.Errorf("%d records left after the second apply", n)
	}
}

// A restore whose rolling update pauses fails apply; a later apply does not
// say the cluster matches while the records wait for that update, and says
// why when it gives up.
func TestApplyPausedRestoreWaitsWithTheRecords(t *testing.T) {
	f, r := restoreRig(t)
	f.HoldUpdates(true)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runApply(ctx, io.Discard, r, false, 0) }()
	for paused := map[string]bool{}; len(paused) < 2; {
		if ctx.Err() != nil {
			t.Fatalf("the restores were never written: %v paused", paused)
		}
		time.Sleep(10 * time.Millisecond)
		for _, name := range []string{"shop_db", "shop_web"} {
			if !paused[name] && f.FailUpdate(name, "pause") == nil {
				paused[name] = true
			}
		}
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "paused") {
		t.Fatalf("apply after a paused restore: %v", err)
	}
	short, cancelShort := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancelShort()
	var out strings.Builder
	err := runApply(short, &out, r, false, 0)
	if err == nil || !strings.Contains(err.Error(), "its rolling update is paused") || strings.Contains(out.String(), "matches") {
		t.Errorf("apply while a restore is paused: %v; said:\n%s", err, out.String())
	}
	if n := records(f); n != 2 {
		t.Errorf("%d records while a restore is paused, want 2", n)
	}
}
