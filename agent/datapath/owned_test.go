package datapath

import (
	"context"
	"errors"
	"testing"

	"github.com/docker/docker/api/types/container"

	"github.com/swarmsec/swarmsec/agent/tasks"
)

// inspecting answers ContainerInspect from a table; the rest of the
// engine is not called.
type inspecting struct {
	tasks.Engine
	states map[string]*container.State
}

func (f inspecting) ContainerInspect(_ context.Context, id string) (container.InspectResponse, error) {
	st, ok := f.states[id]
	if !ok {
		return container.InspectResponse{}, errors.New("no such container")
	}
	return container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{State: st}}, nil
}

// A namespace opened by pid is the task's only while the task runs with
// that pid: a pid taken again by another process (a new task, the node's
// own) must get nothing written.
func TestOwnedChecksThePidIsStillTheTasks(t *testing.T) {
	eng := inspecting{states: map[string]*container.State{
		"running": {Running: true, Pid: 100},
		"restart": {Running: true, Pid: 200},
		"stopped": {Running: false},
	}}
	e := &Enforcer{Engine: eng, ProcDir: "/host/proc"}
	for _, tc := range []struct {
		task tasks.Task
		ok   bool
	}{
		{tasks.Task{Container: "running", Pid: 100}, true},
		{tasks.Task{Container: "restart", Pid: 100}, false}, // its pid went to another
		{tasks.Task{Container: "stopped", Pid: 100}, false},
		{tasks.Task{Container: "gone", Pid: 100}, false},
	} {
		if err := e.owned(context.Background(), &tc.task); (err == nil) != tc.ok {
			t.Errorf("%s: owned = %v, want ok %v", tc.task.Container, err, tc.ok)
		}
	}
	// Opened by its sandbox key, the namespace is the task's alone.
	bySandbox := &Enforcer{Engine: eng}
	if err := bySandbox.owned(context.Background(), &tasks.Task{Container: "gone", Pid: 100}); err != nil {
		t.Errorf("by sandbox key: %v", err)
	}
}
