package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/swarmsec/swarmsec/reconciler/lease"
	"github.com/swarmsec/swarmsec/testing/fake"
)

// apply writes nothing while a `swarmsec run` replica leads, and goes
// ahead once it stopped cleanly.
func TestApplyRefusesWhileAControllerLeads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fake.New()
		e := &lease.Elector{Docker: f, Identity: "ctl-1", LeaseDuration: 400 * time.Millisecond, RenewDeadline: 250 * time.Millisecond,
			RetryPeriod: 50 * time.Millisecond, Log: slog.New(slog.DiscardHandler)}
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = e.Run(ctx); close(done) }()
		for deadline := time.Now().Add(time.Second); ; time.Sleep(5 * time.Millisecond) {
			if _, ok := e.Leading(); ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the replica does not lead")
			}
		}
		err := refuseLeader(context.Background(), io.Discard, f)
		if err == nil || !strings.Contains(err.Error(), "ctl-1") || !strings.Contains(err.Error(), "nothing was written") {
			t.Errorf("while ctl-1 leads: %v, want a refusal naming it", err)
		}
		stop()
		<-done
		if err := refuseLeader(context.Background(), io.Discard, f); err != nil {
			t.Errorf("after a clean stop: %v, want none", err)
		}
	})
}
