package controller

import (
	"context"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/testing/fake"
)

var listOps = []string{"ServiceList", "NetworkList", "NodeList", "ConfigList", "TaskList"}

func listCalls(f *fake.Swarm) int {
	n := 0
	for op, c := range f.Calls() {
		if slices.Contains(listOps, op) {
			n += c
		}
	}
	return n
}

// since returns the passes after the first n.
func (l *passLog) since(n int) []Pass {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.passes[n:])
}

func (l *passLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.passes)
}

// quiet waits until no pass ran for a while: the passes that read back a
// pass's writes are done.
func quiet(t *testing.T, l *passLog) int {
	t.Helper()
	n := l.count()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(4 * eventSettle)
		m := l.count()
		if m == n {
			return n
		}
		n = m
	}
	t.Fatal("the controller never went quiet")
	return 0
}

func driftDB(t *testing.T, f *fake.Swarm, ids map[string]string) {
	t.Helper()
	if err := f.UpdateService(ids["shop_db"], func(spec *swarm.ServiceSpec) {
		spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: ids["shop_default"]})
	}); err != nil {
		t.Fatal(err)
	}
}

func TestControllerDriftPassReadsNoList(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, ids := shop(t)
		r := newTestReconciler(t, f, shopPolicies())
		r.Limits.Force = true
		passes := runController(t, r)
		dbIsolated := func() bool {
			return slices.Equal(networkNames(t, f, inspect(t, f, ids["shop_db"])), []string{"swarmsec-db"})
		}
		eventually(t, "db is isolated", dbIsolated)
		n := quiet(t, passes)

		f.ResetCalls()
		driftDB(t, f, ids)
		eventually(t, "the drift is reverted", dbIsolated)
		quiet(t, passes)
		calls := f.Calls()
		if lists := listCalls(f); lists != 0 || calls["ServiceUpdate"] != 1 {
			t.Errorf("reverting a drift made %v", calls)
		}
		after := passes.since(n)
		if len(after) == 0 {
			t.Fatal("no pass after the drift")
		}
		for _, p := range after {
			if p.Observed == nil || p.Observed.Full || p.Observed.Networks != 0 || p.Observed.Services != 1 {
				t.Errorf("pass after the drift (%s) read %+v", p.Trigger, p.Observed)
			}
		}
	})
}

func TestControllerListsAfterLostEventsStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, ids := shop(t)
		r := newTestReconciler(t, f, shopPolicies())
		r.Limits.Force = true
		passes := runController(t, r)
		dbIsolated := func() bool {
			return slices.Equal(networkNames(t, f, inspect(t, f, ids["shop_db"])), []string{"swarmsec-db"})
		}
		eventually(t, "db is isolated", dbIsolated)
		n := quiet(t, passes)

		// The stream breaks and a drift happens meanwhile: no event names it,
		// the list after reconnecting finds it.
		f.BreakEvents(nil)
		driftDB(t, f, ids)
		eventually(t, "the drift is reverted after the stream came back", dbIsolated)
		// The pass that reverted it is recorded once it returns, after
		// its write: wait for the record, not only the write.
		eventually(t, "a pass listed after the stream came back", func() bool {
			for _, p := range passes.since(n) {
				if p.Observed != nil && p.Observed.Full && p.Observed.Why == "events stream reconnected" {
					return true
				}
			}
			return false
		})
	})
}

func TestControllerResyncLists(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, ids := shop(t)
		r := newTestReconciler(t, f, shopPolicies())
		r.Limits.Force = true
		passes := &passLog{}
		ctrl := &Controller{Reconciler: r, Resync: 300 * time.Millisecond, Log: r.Log, OnPass: passes.add}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- ctrl.Run(ctx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("controller: %v", err)
			}
		}()
		eventually(t, "db is isolated", func() bool {
			return slices.Equal(networkNames(t, f, inspect(t, f, ids["shop_db"])), []string{"swarmsec-db"})
		})
		n := passes.count()
		eventually(t, "a resync that lists", func() bool {
			for _, p := range passes.since(n) {
				if p.Trigger == "resync" && p.Observed != nil && p.Observed.Full && p.Observed.Why == "resync" {
					return true
				}
			}
			return false
		})
	})
}
