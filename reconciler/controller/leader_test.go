package controller

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/lease"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/state"
)

// writes counts one replica's writes to Swarm, the lease's own aside.
type writes struct {
	dockerapi.API
	n atomic.Int64
}

func (w *writes) ServiceUpdate(ctx context.Context, id string, v swarm.Version, spec swarm.ServiceSpec, o swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	w.n.Add(1)
	return w.API.ServiceUpdate(ctx, id, v, spec, o)
}

func (w *writes) NetworkCreate(ctx context.Context, name string, o network.CreateOptions) (network.CreateResponse, error) {
	w.n.Add(1)
	return w.API.NetworkCreate(ctx, name, o)
}

func (w *writes) NetworkRemove(ctx context.Context, id string) error {
	w.n.Add(1)
	return w.API.NetworkRemove(ctx, id)
}

func (w *writes) ConfigCreate(ctx context.Context, spec swarm.ConfigSpec) (swarm.ConfigCreateResponse, error) {
	if spec.Labels[v1.LabelPurpose] != v1.PurposeLease {
		w.n.Add(1)
	}
	return w.API.ConfigCreate(ctx, spec)
}

func (w *writes) ConfigRemove(ctx context.Context, id string) error {
	w.n.Add(1)
	return w.API.ConfigRemove(ctx, id)
}

// Two controllers on one Swarm whose manifest sets differ (two managers'
// copies of the GitOps repo one sync apart): the follower makes no write
// at all, and the leader's set is the one in force.
func TestFollowerMakesNoWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, ids := shop(t)
		type replica struct {
			w   *writes
			e   *lease.Elector
			c   *Controller
			run func()
		}
		var wg sync.WaitGroup
		ctx, cancel := context.WithCancel(context.Background())
		defer func() { cancel(); wg.Wait() }()
		newReplica := func(id string, policies []*v1.Policy) *replica {
			w := &writes{API: f}
			e := &lease.Elector{Docker: f, Identity: id, LeaseDuration: 600 * time.Millisecond, RenewDeadline: 400 * time.Millisecond,
				RetryPeriod: 100 * time.Millisecond, Log: slog.New(slog.DiscardHandler)}
			r := &reconcile.Reconciler{Docker: w, Store: state.New(), Mode: reconcile.ModeEnforce, Log: slog.New(slog.DiscardHandler), Leader: e}
			if err := r.SetPolicies(policies); err != nil {
				t.Fatal(err)
			}
			c := &Controller{Reconciler: r, Resync: 100 * time.Millisecond, Retry: 50 * time.Millisecond, Log: r.Log}
			e.OnStartedLeading = func() { c.Trigger("became the leader") }
			return &replica{w: w, e: e, c: c, run: func() {
				wg.Go(func() { _ = e.Run(ctx) })
				wg.Go(func() { _ = c.Run(ctx) })
			}}
		}
		older := shopPolicies()[:1] // one sync behind: only db's policy
		a := newReplica("a", shopPolicies())
		a.run()
		eventually(t, "a leads", func() bool { _, ok := a.e.Leading(); return ok })
		b := newReplica("b", older)
		b.run()
		// Let both pass many times: b plans to undo what a does, and must not.
		time.Sleep(1500 * time.Millisecond)
		if n := b.w.n.Load(); n != 0 {
			t.Errorf("the follower wrote %d times", n)
		}
		if a.w.n.Load() == 0 {
			t.Error("the leader wrote nothing")
		}
		if got := networkNames(t, f, inspect(t, f, ids["shop_web"])); len(got) == 0 || got[0] != "swarmsec-web" {
			t.Errorf("web on %v: the leader's policies are not the ones in force", got)
		}
	})
}
