package swarmtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// WaitTasksRunning waits until exactly n tasks of service (name or ID) run
// with desired state running, failing the test after DefaultTimeout with the
// tasks' states and errors.
func WaitTasksRunning(ctx context.Context, tb testing.TB, cli *client.Client, service string, n int) {
	tb.Helper()
	if err := WaitTasksRunningE(ctx, cli, service, n); err != nil {
		tb.Fatalf("service %s: %v", service, err)
	}
}

// WaitTasksRunningE is WaitTasksRunning returning an error.
func WaitTasksRunningE(ctx context.Context, cli *client.Client, service string, n int) error {
	return PollE(ctx, DefaultTimeout, func() (bool, string) {
		tasks, err := ServiceTasks(ctx, cli, service)
		if err != nil {
			return false, err.Error()
		}
		running := 0
		for _, t := range tasks {
			if t.DesiredState == swarm.TaskStateRunning && t.Status.State == swarm.TaskStateRunning {
				running++
			}
		}
		return running == n, fmt.Sprintf("%d of %d tasks running: %s", running, n, describeTasks(tasks))
	})
}

// WaitServiceConverged waits until service (name or ID) has settled on its
// current spec: no rolling update in progress (UpdateStatus absent or
// completed), and exactly as many tasks running, all with desired state
// running, as Swarm wants (replicas, or eligible nodes for a global
// service). A paused or rolled-back update fails at once.
func WaitServiceConverged(ctx context.Context, tb testing.TB, cli *client.Client, service string) {
	tb.Helper()
	if err := WaitServiceConvergedE(ctx, cli, service); err != nil {
		tb.Fatalf("service %s: %v", service, err)
	}
}

// WaitServiceConvergedE is WaitServiceConverged returning an error.
func WaitServiceConvergedE(ctx context.Context, cli *client.Client, service string) error {
	inspected, _, err := cli.ServiceInspectWithRaw(ctx, service, swarm.ServiceInspectOptions{})
	if err != nil {
		return err
	}
	id := inspected.ID
	var failed error // set when the update can no longer complete
	err = PollE(ctx, DefaultTimeout, func() (bool, string) {
		// ServiceList, unlike ServiceInspect, reports the desired task count.
		svcs, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Status: true, Filters: filters.NewArgs(filters.Arg("id", id))})
		if err != nil {
			return false, err.Error()
		}
		i := slices.IndexFunc(svcs, func(s swarm.Service) bool { return s.ID == id })
		if i < 0 {
			return false, "no such service"
		}
		svc := svcs[i]
		if u := svc.UpdateStatus; u != nil {
			switch u.State {
			case swarm.UpdateStateCompleted:
			case swarm.UpdateStatePaused, swarm.UpdateStateRollbackPaused, swarm.UpdateStateRollbackCompleted:
				failed = fmt.Errorf("update %s: %s", u.State, u.Message)
				return true, ""
			default:
				return false, fmt.Sprintf("update %s: %s", u.State, u.Message)
			}
		}
		tasks, err := ServiceTasks(ctx, cli, id)
		if err != nil {
			return false, err.Error()
		}
		want := -1
		if svc.ServiceStatus != nil {
			want = int(svc.ServiceStatus.DesiredTasks)
		}
		active, running := 0, 0
		for _, t := range tasks {
			if t.DesiredState != swarm.TaskStateRunning {
				continue
			}
			active++
			if t.Status.State == swarm.TaskStateRunning {
				running++
			}
		}
		return want >= 0 && active == want && running == want,
			fmt.Sprintf("%d of %d tasks running, %d wanted: %s", running, active, want, describeTasks(tasks))
	})
	if err != nil {
		return err
	}
	return failed
}

// ServiceTasks lists the tasks of service (name or ID).
func ServiceTasks(ctx context.Context, cli *client.Client, service string) ([]swarm.Task, error) {
	return cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", service))})
}

// describeTasks summarizes tasks for a failure message: slot, node, desired
// and current state, error.
func describeTasks(tasks []swarm.Task) string {
	if len(tasks) == 0 {
		return "no tasks"
	}
	var parts []string
	for _, t := range tasks {
		s := fmt.Sprintf("%d@%.8s %s/%s", t.Slot, t.NodeID, t.DesiredState, t.Status.State)
		if t.Status.Err != "" {
			s += " (" + t.Status.Err + ")"
		}
		parts = append(parts, s)
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}
