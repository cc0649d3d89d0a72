package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/reconciler/traffic"
	"github.com/swarmsec/swarmsec/state"
)

// trafficCuts reads the flows the agents observed in the window and lists
// those that pass now and that the plan's policies would block.
func trafficCuts(ctx context.Context, r *reconcile.Reconciler, p *plan.Plan, agentService string, window time.Duration) ([]traffic.Cut, error) {
	obs, err := traffic.Read(ctx, r.Docker, agentService, time.Now().Add(-window), 0)
	if err != nil {
		return nil, err
	}
	var cuts []traffic.Cut
	r.Store.View(func(tx state.ReadTx) { cuts, err = traffic.Impact(tx, p.Desired, obs.Flows) })
	return cuts, err
}

// planCuts is trafficCuts for plan: a Swarm without agents has no flows
// to show, and an unreadable one is said on w, never failing the plan.
func planCuts(ctx context.Context, w io.Writer, r *reconcile.Reconciler, p *plan.Plan, agentService string, window time.Duration) []traffic.Cut {
	if window <= 0 || agentService == "" || p.Desired == nil {
		return nil
	}
	cuts, err := trafficCuts(ctx, r, p, agentService, window)
	if err != nil && !strings.Contains(err.Error(), "not found") {
		fmt.Fprintf(w, "note: the observed flows are not known, so the plan's impact on them is not shown: %v\n", err)
	}
	return cuts
}

// window writes a duration as "the last hour", "the last 30m0s".
func window(d time.Duration) string {
	switch d {
	case time.Hour:
		return "the last hour"
	case 24 * time.Hour:
		return "the last day"
	}
	return "the last " + d.String()
}

// cutLine is one cut as plan prints it: "shop_api -> legacy_svc:8080/tcp,
// 412 connections in the last hour, last 2 min ago".
func cutLine(c traffic.Cut, d time.Duration, now time.Time) string {
	s := fmt.Sprintf("%s -> %s, %d connections in %s, last %s", printable(c.From()), printable(c.Target()), c.Connections, window(d), ago(now, c.LastSeen))
	if c.Approved {
		s += " (approved: " + v1.AnnotationApproveTrafficCut + ")"
	}
	return s + ": " + c.Why
}

func printCuts(w io.Writer, cuts []traffic.Cut, d time.Duration, now time.Time) {
	if len(cuts) == 0 {
		return
	}
	fmt.Fprintf(w, "\nObserved flows this change would block (%s, from the node agents):\n", window(d))
	for _, c := range cuts {
		fmt.Fprintln(w, "  - "+cutLine(c, d, now))
	}
}

// refuseTrafficCuts stops an apply that would block flows observed in the
// window, unless a policy that cuts each approves it (the annotation) or
// --force: a change reviewed without seeing what it cuts is held, as a
// broad selector is.
func refuseTrafficCuts(ctx context.Context, w io.Writer, r *reconcile.Reconciler, agentService string, d time.Duration) error {
	if d <= 0 || r.Limits.Force {
		return nil
	}
	p, err := r.Plan(ctx)
	if err != nil {
		return err
	}
	cuts, err := trafficCuts(ctx, r, p, agentService, d)
	if err != nil {
		return fmt.Errorf("--traffic-window %s: %w; nothing was written (without agents, leave --traffic-window out)", d, err)
	}
	held := 0
	now := time.Now()
	for _, c := range cuts {
		if !c.Approved {
			held++
			fmt.Fprintln(w, "held: would block "+cutLine(c, d, now))
		}
	}
	if held == 0 {
		return nil
	}
	return fmt.Errorf("%w: the change blocks %s observed in %s; nothing was written (annotate a policy that cuts each %s: \"true\" once that is meant, or --force this once)",
		plan.ErrHeld, plural(held, "flow"), window(d), v1.AnnotationApproveTrafficCut)
}
