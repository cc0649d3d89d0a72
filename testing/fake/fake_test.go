package fake

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
)

func ptr[T any](v T) *T { return &v }

func testSpec(name string, networks ...string) swarm.ServiceSpec {
	spec := swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: name, Labels: map[string]string{"app": name}},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: &swarm.ContainerSpec{Image: "app"}},
	}
	for _, n := range networks {
		spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: n})
	}
	return spec
}

func mustInspect(t *testing.T, api dockerapi.API, id string) swarm.Service {
	t.Helper()
	svc, _, err := api.ServiceInspectWithRaw(context.Background(), id, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatalf("inspect %s: %v", id, err)
	}
	return svc
}

func overlay(f *Swarm, name string) network.Inspect {
	return f.AddNetwork(name, network.CreateOptions{Driver: "overlay", Attachable: true})
}

func TestFakeInfo(t *testing.T) {
	ctx := context.Background()
	f := New()
	info, err := f.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Swarm.LocalNodeState != swarm.LocalNodeStateActive || !info.Swarm.ControlAvailable ||
		info.Swarm.NodeID == "" || info.Swarm.Cluster == nil || info.Swarm.Cluster.ID == "" {
		t.Fatalf("not a manager: %+v", info.Swarm)
	}

	f.SetWorker()
	info, _ = f.Info(ctx)
	if info.Swarm.LocalNodeState != swarm.LocalNodeStateActive || info.Swarm.ControlAvailable || info.Swarm.Cluster != nil {
		t.Fatalf("not a worker: %+v", info.Swarm)
	}
	_, err = f.ServiceList(ctx, swarm.ServiceListOptions{})
	if !dockerapi.IsNotSwarmManager(err) || !strings.Contains(err.Error(), "Worker nodes can't be used") {
		t.Fatalf("ServiceList on a worker: %v", err)
	}

	f.SetInactive()
	info, _ = f.Info(ctx)
	if info.Swarm.LocalNodeState != swarm.LocalNodeStateInactive || info.Swarm.NodeID != "" {
		t.Fatalf("not inactive: %+v", info.Swarm)
	}
	if _, err := f.TaskList(ctx, swarm.TaskListOptions{}); !dockerapi.IsNotSwarmManager(err) {
		t.Fatalf("TaskList outside a Swarm: %v", err)
	}
	nets, _ := f.NetworkList(ctx, network.ListOptions{})
	for _, n := range nets {
		if n.Scope == "swarm" {
			t.Fatalf("Swarm network %s listed outside a Swarm", n.Name)
		}
	}
}

func TestFakeAddServiceLooksLikeTheEngine(t *testing.T) {
	f := New()
	net := overlay(f, "backend")
	spec := testSpec("web", "backend")
	spec.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{TargetPort: 80}, {TargetPort: 81, PublishedPort: 8081, PublishMode: swarm.PortConfigPublishModeHost}}}
	svc := f.AddService(spec)

	if svc.ID == "" || svc.Version.Index == 0 || svc.CreatedAt.IsZero() || svc.UpdatedAt.IsZero() {
		t.Fatalf("meta not set: %+v", svc)
	}
	if got := svc.Spec.TaskTemplate.Networks[0].Target; got != net.ID {
		t.Errorf("network stored as %q, want its ID %q", got, net.ID)
	}
	if svc.Spec.TaskTemplate.ContainerSpec.Image != "app:latest" || svc.Spec.TaskTemplate.Runtime != swarm.RuntimeContainer ||
		svc.Spec.TaskTemplate.ContainerSpec.Isolation != container.IsolationDefault || *svc.Spec.Mode.Replicated.Replicas != 1 {
		t.Errorf("engine defaults not filled in: %+v", svc.Spec)
	}
	ports := svc.Endpoint.Ports
	if svc.Endpoint.Spec.Mode != swarm.ResolutionModeVIP || len(ports) != 2 ||
		ports[0].PublishMode != swarm.PortConfigPublishModeIngress || ports[0].Protocol != swarm.PortConfigProtocolTCP ||
		ports[0].PublishedPort < 30000 || ports[1].PublishedPort != 8081 {
		t.Errorf("endpoint: %+v", svc.Endpoint)
	}
	if svc.Spec.EndpointSpec.Ports[0].PublishedPort != 0 {
		t.Errorf("the assigned port leaked into the spec: %+v", svc.Spec.EndpointSpec)
	}
	var vipNets []string
	for _, v := range svc.Endpoint.VirtualIPs {
		vipNets = append(vipNets, v.NetworkID)
		if v.Addr == "" {
			t.Errorf("VIP without address: %+v", v)
		}
	}
	ingress, _ := f.NetworkInspect(context.Background(), "ingress", network.InspectOptions{})
	if !slices.Equal(vipNets, []string{ingress.ID, net.ID}) {
		t.Errorf("VIPs on %v, want ingress then backend", vipNets)
	}
}

func TestFakeServiceListFilters(t *testing.T) {
	ctx := context.Background()
	f := New()
	web := f.AddService(testSpec("web-frontend"))
	f.AddService(testSpec("api"))

	list := func(args ...filters.KeyValuePair) []string {
		t.Helper()
		svcs, err := f.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(args...)})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range svcs {
			names = append(names, s.Spec.Name)
		}
		slices.Sort(names)
		return names
	}
	for _, tc := range []struct {
		args []filters.KeyValuePair
		want []string
	}{
		{nil, []string{"api", "web-frontend"}},
		{[]filters.KeyValuePair{filters.Arg("name", "web")}, []string{"web-frontend"}},
		{[]filters.KeyValuePair{filters.Arg("name", "frontend")}, nil}, // a prefix, unlike networks
		{[]filters.KeyValuePair{filters.Arg("name", "web"), filters.Arg("name", "api")}, []string{"api", "web-frontend"}},
		{[]filters.KeyValuePair{filters.Arg("id", web.ID[:5])}, []string{"web-frontend"}},
		{[]filters.KeyValuePair{filters.Arg("label", "app=api")}, []string{"api"}},
		{[]filters.KeyValuePair{filters.Arg("label", "app")}, []string{"api", "web-frontend"}},
		{[]filters.KeyValuePair{filters.Arg("label", "app"), filters.Arg("label", "app=api")}, []string{"api"}},
		{[]filters.KeyValuePair{filters.Arg("mode", "global")}, nil},
	} {
		if got := list(tc.args...); !slices.Equal(got, tc.want) {
			t.Errorf("filters %v: got %v, want %v", tc.args, got, tc.want)
		}
	}
	_, err := f.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("bogus", "x"))})
	if !cerrdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "Invalid filter 'bogus'") {
		t.Errorf("unknown filter: %v", err)
	}

	svcs, _ := f.ServiceList(ctx, swarm.ServiceListOptions{Status: true})
	if st := svcs[0].ServiceStatus; st == nil || st.DesiredTasks != 1 || st.RunningTasks != 1 {
		t.Errorf("service status: %+v", st)
	}
}

func TestFakeServiceInspect(t *testing.T) {
	ctx := context.Background()
	f := New()
	svc := f.AddService(testSpec("web"))
	for _, ref := range []string{svc.ID, "web", svc.ID[:6]} {
		got, raw, err := f.ServiceInspectWithRaw(ctx, ref, swarm.ServiceInspectOptions{})
		if err != nil || got.ID != svc.ID || !strings.Contains(string(raw), `"Name":"web"`) {
			t.Errorf("inspect %q: %v %v", ref, got.ID, err)
		}
	}
	_, _, err := f.ServiceInspectWithRaw(ctx, "nosuch", swarm.ServiceInspectOptions{})
	if !dockerapi.IsNotFound(err) || !cerrdefs.IsNotFound(err) {
		t.Errorf("not found: %v", err)
	}
	if want := "Error response from daemon: service nosuch not found"; err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
}

func TestFakeServiceUpdate(t *testing.T) {
	ctx := context.Background()
	f := New()
	overlay(f, "backend")
	svc := f.AddService(testSpec("web"))

	spec := svc.Spec
	spec.Labels["tier"] = "front"
	spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: "backend"}}
	if _, err := f.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := mustInspect(t, f, svc.ID)
	if got.Version.Index <= svc.Version.Index {
		t.Errorf("version did not move: %d -> %d", svc.Version.Index, got.Version.Index)
	}
	if got.Spec.Labels["tier"] != "front" || got.PreviousSpec == nil || got.PreviousSpec.Labels["tier"] != "" {
		t.Errorf("spec %v, previous %v", got.Spec.Labels, got.PreviousSpec)
	}
	if got.UpdateStatus == nil || got.UpdateStatus.State != swarm.UpdateStateCompleted || got.UpdateStatus.CompletedAt == nil {
		t.Errorf("update status: %+v", got.UpdateStatus)
	}

	// The version just used is stale now.
	_, err := f.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{})
	if !dockerapi.IsOutOfSequence(err) || dockerapi.IsNotFound(err) || !cerrdefs.IsInternal(err) {
		t.Errorf("stale update: %v", err)
	}
	if want := "Error response from daemon: rpc error: code = Unknown desc = update out of sequence"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}

	// A spec change that does not touch tasks resets the update status.
	spec = got.Spec
	spec.Labels["x"] = "y"
	if _, err := f.ServiceUpdate(ctx, svc.ID, got.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got = mustInspect(t, f, svc.ID); got.UpdateStatus != nil {
		t.Errorf("label change left update status %+v", got.UpdateStatus)
	}

	// A missing network is a 500, not a not-found: the service is there.
	spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: "nosuch"}}
	_, err = f.ServiceUpdate(ctx, svc.ID, got.Version, spec, swarm.ServiceUpdateOptions{})
	if err == nil || err.Error() != "Error response from daemon: network nosuch not found" || dockerapi.IsNotFound(err) {
		t.Errorf("missing network: %v", err)
	}
	spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: "ingress"}}
	if _, err = f.ServiceUpdate(ctx, svc.ID, got.Version, spec, swarm.ServiceUpdateOptions{}); err == nil || !strings.Contains(err.Error(), "explicitly attached to the ingress network") {
		t.Errorf("ingress attachment: %v", err)
	}
	spec = got.Spec
	spec.Name = "other"
	if _, err = f.ServiceUpdate(ctx, svc.ID, got.Version, spec, swarm.ServiceUpdateOptions{}); err == nil || !strings.Contains(err.Error(), "renaming services is not supported") {
		t.Errorf("rename: %v", err)
	}
	if _, err = f.ServiceUpdate(ctx, "nosuch", got.Version, got.Spec, swarm.ServiceUpdateOptions{}); !dockerapi.IsNotFound(err) {
		t.Errorf("update of a missing service: %v", err)
	}
}

// Old clients still send ServiceSpec.Networks, so the fake keeps the
// engine's handling of it.
//
//nolint:staticcheck // SA1019: the deprecated field is what this test is about
func TestFakeServiceUpdateDeprecatedNetworks(t *testing.T) {
	ctx := context.Background()
	f := New()
	net := overlay(f, "backend")
	overlay(f, "other")
	spec := testSpec("web")
	spec.Networks = []swarm.NetworkAttachmentConfig{{Target: "backend"}}
	svc := f.AddService(spec)
	if len(svc.Spec.Networks) != 1 || svc.Spec.Networks[0].Target != net.ID || len(svc.Spec.TaskTemplate.Networks) != 0 {
		t.Errorf("deprecated networks stored as %+v / %+v", svc.Spec.Networks, svc.Spec.TaskTemplate.Networks)
	}
	if err := f.NetworkRemove(ctx, "backend"); !dockerapi.IsInUse(err) {
		t.Errorf("network used through Spec.Networks removed: %v", err)
	}

	// Swarm refuses to change Spec.Networks alone...
	spec = svc.Spec
	spec.Networks = []swarm.NetworkAttachmentConfig{{Target: "other"}}
	_, err := f.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{})
	if err == nil || !strings.Contains(err.Error(), "networks must be migrated to TaskSpec before being changed") {
		t.Errorf("changing Spec.Networks alone: %v", err)
	}
	// ...but takes a migration to TaskTemplate.Networks.
	spec.Networks = nil
	spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: "backend"}}
	if _, err := f.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Errorf("migration: %v", err)
	}
}

func TestFakeHeldUpdates(t *testing.T) {
	ctx := context.Background()
	f := New()
	f.HoldUpdates(true)
	svc := f.AddService(testSpec("web"))
	before := runningTasks(t, f, svc.ID)

	spec := svc.Spec
	spec.TaskTemplate.ContainerSpec.Env = []string{"A=1"}
	if _, err := f.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := mustInspect(t, f, svc.ID)
	if got.UpdateStatus == nil || got.UpdateStatus.State != swarm.UpdateStateUpdating || got.UpdateStatus.Message != "update in progress" {
		t.Fatalf("update status: %+v", got.UpdateStatus)
	}
	if during := runningTasks(t, f, svc.ID); during[0].ID != before[0].ID {
		t.Errorf("tasks replaced while the update is held")
	}

	f.CompleteUpdates()
	done := mustInspect(t, f, svc.ID)
	if done.UpdateStatus.State != swarm.UpdateStateCompleted || done.Version.Index <= got.Version.Index {
		t.Errorf("after CompleteUpdates: %+v, version %d -> %d", done.UpdateStatus, got.Version.Index, done.Version.Index)
	}
	after := runningTasks(t, f, svc.ID)
	if len(after) != 1 || after[0].ID == before[0].ID || !slices.Equal(after[0].Spec.ContainerSpec.Env, []string{"A=1"}) {
		t.Errorf("tasks not rolled: %+v", after)
	}
	old, _ := f.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("desired-state", "shutdown"))})
	if len(old) != 1 || old[0].ID != before[0].ID {
		t.Errorf("the replaced task is not kept as history: %+v", old)
	}
}

// TestFakeFailedUpdates: a held update that fails is rolled back (the old
// spec back, no previous spec left, tasks of the old spec) or paused.
func TestFakeFailedUpdates(t *testing.T) {
	ctx := context.Background()
	for _, action := range []string{"rollback", "pause"} {
		t.Run(action, func(t *testing.T) {
			f := New()
			f.HoldUpdates(true)
			svc := f.AddService(testSpec("web"))
			if err := f.FailUpdate("web", action); err == nil {
				t.Error("a service with no update in progress failed one")
			}
			spec := svc.Spec
			spec.TaskTemplate.ContainerSpec.Env = []string{"A=1"}
			if _, err := f.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := f.FailUpdate("web", action); err != nil {
				t.Fatal(err)
			}
			got := mustInspect(t, f, svc.ID)
			if action == "pause" {
				if got.UpdateStatus.State != swarm.UpdateStatePaused || !slices.Equal(got.Spec.TaskTemplate.ContainerSpec.Env, []string{"A=1"}) {
					t.Errorf("paused: %+v, env %v", got.UpdateStatus, got.Spec.TaskTemplate.ContainerSpec.Env)
				}
				return
			}
			if got.UpdateStatus.State != swarm.UpdateStateRollbackStarted || got.PreviousSpec != nil || len(got.Spec.TaskTemplate.ContainerSpec.Env) != 0 {
				t.Errorf("rolling back: %+v, previous %v, env %v", got.UpdateStatus, got.PreviousSpec, got.Spec.TaskTemplate.ContainerSpec.Env)
			}
			f.CompleteUpdates()
			if done := mustInspect(t, f, svc.ID); done.UpdateStatus.State != swarm.UpdateStateRollbackCompleted {
				t.Errorf("after CompleteUpdates: %+v", done.UpdateStatus)
			}
			if after := runningTasks(t, f, svc.ID); len(after) != 1 || len(after[0].Spec.ContainerSpec.Env) != 0 {
				t.Errorf("tasks not rolled back: %+v", after)
			}
		})
	}
}

func TestFakeRollback(t *testing.T) {
	ctx := context.Background()
	f := New()
	svc := f.AddService(testSpec("web"))
	if _, err := f.ServiceUpdate(ctx, svc.ID, svc.Version, svc.Spec, swarm.ServiceUpdateOptions{Rollback: "previous"}); err == nil {
		t.Fatal("rollback without a previous spec succeeded")
	}
	if err := f.UpdateService(svc.ID, func(s *swarm.ServiceSpec) { s.TaskTemplate.ContainerSpec.Image = "app:2" }); err != nil {
		t.Fatal(err)
	}
	cur := mustInspect(t, f, svc.ID)
	if _, err := f.ServiceUpdate(ctx, svc.ID, cur.Version, cur.Spec, swarm.ServiceUpdateOptions{Rollback: "previous"}); err != nil {
		t.Fatal(err)
	}
	got := mustInspect(t, f, svc.ID)
	if got.Spec.TaskTemplate.ContainerSpec.Image != "app:latest" || got.UpdateStatus.State != swarm.UpdateStateRollbackCompleted {
		t.Errorf("after rollback: image %s, status %+v", got.Spec.TaskTemplate.ContainerSpec.Image, got.UpdateStatus)
	}
}

func TestFakeDoesNotAlias(t *testing.T) {
	ctx := context.Background()
	f := New()
	svc := f.AddService(testSpec("web"))

	spec := svc.Spec
	spec.Labels = map[string]string{"v": "1"}
	if _, err := f.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	spec.Labels["v"] = "caller changed its copy"
	spec.TaskTemplate.ContainerSpec.Image = "caller"

	got := mustInspect(t, f, svc.ID)
	if got.Spec.Labels["v"] != "1" || got.Spec.TaskTemplate.ContainerSpec.Image != "app:latest" {
		t.Fatalf("the Fake shares the caller's spec: %+v", got.Spec)
	}
	got.Spec.Labels["v"] = "changed what inspect returned"
	*got.Spec.Mode.Replicated.Replicas = 7
	if again := mustInspect(t, f, svc.ID); again.Spec.Labels["v"] != "1" || *again.Spec.Mode.Replicated.Replicas != 1 {
		t.Fatalf("the Fake shares what it returned: %+v", again.Spec)
	}
	list, _ := f.ServiceList(ctx, swarm.ServiceListOptions{})
	list[0].Spec.Labels["v"] = "changed a listed service"
	if again := mustInspect(t, f, svc.ID); again.Spec.Labels["v"] != "1" {
		t.Fatal("the Fake shares what it listed")
	}
}

func TestFakeBeforeServiceUpdate(t *testing.T) {
	ctx := context.Background()
	f := New()
	svc := f.AddService(testSpec("web"))
	f.BeforeServiceUpdate = func(id string) {
		if err := f.TouchService(id); err != nil {
			t.Error(err)
		}
	}
	_, err := f.ServiceUpdate(ctx, svc.ID, svc.Version, svc.Spec, swarm.ServiceUpdateOptions{})
	if !dockerapi.IsOutOfSequence(err) {
		t.Fatalf("update racing with Swarm: %v", err)
	}
}

func TestFakeUpdateServiceSimulatesDrift(t *testing.T) {
	f := New()
	overlay(f, "backend")
	svc := f.AddService(testSpec("web"))
	err := f.UpdateService("web", func(s *swarm.ServiceSpec) {
		s.TaskTemplate.Networks = append(s.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: "backend"})
	})
	if err != nil {
		t.Fatal(err)
	}
	got := mustInspect(t, f, svc.ID)
	if got.Version.Index <= svc.Version.Index || len(got.Spec.TaskTemplate.Networks) != 1 || got.PreviousSpec == nil {
		t.Errorf("drift not applied like an update: %+v", got)
	}
	if err := f.UpdateService("web", func(s *swarm.ServiceSpec) { s.TaskTemplate.Networks[0].Target = "nosuch" }); err == nil {
		t.Error("drift to a missing network accepted")
	}
}

func TestFakeNetworks(t *testing.T) {
	ctx := context.Background()
	f := New()
	var names []string
	nets, _ := f.NetworkList(ctx, network.ListOptions{})
	for _, n := range nets {
		names = append(names, n.Name+"/"+n.Scope)
	}
	if want := []string{"bridge/local", "docker_gwbridge/local", "host/local", "ingress/swarm", "none/local"}; !slices.Equal(names, want) {
		t.Fatalf("predefined networks %v, want %v", names, want)
	}

	resp, err := f.NetworkCreate(ctx, "swarmsec-backend", network.CreateOptions{
		Driver: "overlay", Internal: true, Attachable: true,
		Options: map[string]string{"encrypted": ""}, Labels: map[string]string{"owner": "swarmsec"},
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := f.NetworkInspect(ctx, "swarmsec-backend", network.InspectOptions{})
	if err != nil || n.ID != resp.ID || n.Scope != "swarm" || !n.Internal || !n.Attachable || n.Labels["owner"] != "swarmsec" {
		t.Fatalf("inspect: %+v, %v", n, err)
	}
	if _, ok := n.Options["encrypted"]; !ok {
		t.Errorf("encrypted option lost: %v", n.Options)
	}
	if byPrefix, err := f.NetworkInspect(ctx, resp.ID[:8], network.InspectOptions{}); err != nil || byPrefix.ID != resp.ID {
		t.Errorf("inspect by ID prefix: %v", err)
	}

	_, err = f.NetworkCreate(ctx, "swarmsec-backend", network.CreateOptions{Driver: "overlay"})
	if !dockerapi.IsConflict(err) || err.Error() != "Error response from daemon: network with name swarmsec-backend already exists" {
		t.Errorf("duplicate: %v", err)
	}
	_, err = f.NetworkCreate(ctx, "host", network.CreateOptions{Driver: "overlay"})
	if !cerrdefs.IsPermissionDenied(err) || !strings.Contains(err.Error(), "host is a pre-defined network and cannot be created") {
		t.Errorf("overlay named host: %v", err)
	}

	list := func(args ...filters.KeyValuePair) []string {
		t.Helper()
		nets, err := f.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(args...)})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, n := range nets {
			names = append(names, n.Name)
		}
		return names
	}
	for _, tc := range []struct {
		args []filters.KeyValuePair
		want []string
	}{
		// Swarm's list: exact names, ID prefixes.
		{[]filters.KeyValuePair{filters.Arg("name", "swarmsec-backend")}, []string{"swarmsec-backend"}},
		{[]filters.KeyValuePair{filters.Arg("name", "backend")}, nil},
		{[]filters.KeyValuePair{filters.Arg("name", "swarmsec")}, nil},
		{[]filters.KeyValuePair{filters.Arg("id", resp.ID[:7])}, []string{"swarmsec-backend"}},
		{[]filters.KeyValuePair{filters.Arg("id", resp.ID[3:10])}, nil},
		// The local list: regular expressions.
		{[]filters.KeyValuePair{filters.Arg("name", "bridge")}, []string{"bridge", "docker_gwbridge"}},
		{[]filters.KeyValuePair{filters.Arg("name", "^bridge$")}, []string{"bridge"}},
		{[]filters.KeyValuePair{filters.Arg("name", "gress")}, []string{"ingress"}}, // always instantiated
		{[]filters.KeyValuePair{filters.Arg("label", "owner=swarmsec")}, []string{"swarmsec-backend"}},
		{[]filters.KeyValuePair{filters.Arg("driver", "overlay")}, []string{"ingress", "swarmsec-backend"}},
		{[]filters.KeyValuePair{filters.Arg("driver", "over")}, nil},
		{[]filters.KeyValuePair{filters.Arg("scope", "swarm"), filters.Arg("name", "ingress")}, []string{"ingress"}},
		{[]filters.KeyValuePair{filters.Arg("type", "builtin")}, []string{"bridge", "host", "none"}},
		{[]filters.KeyValuePair{filters.Arg("dangling", "true"), filters.Arg("driver", "overlay")}, []string{"ingress", "swarmsec-backend"}},
	} {
		if got := list(tc.args...); !slices.Equal(got, tc.want) {
			t.Errorf("filters %v: got %v, want %v", tc.args, got, tc.want)
		}
	}
	// A task on this node instantiates the network: substrings find it now.
	svc := f.AddService(testSpec("web", "swarmsec-backend"))
	if got := list(filters.Arg("name", "backend")); !slices.Equal(got, []string{"swarmsec-backend"}) {
		t.Errorf("name substring with a local task: %v", got)
	}
	if got := list(filters.Arg("id", resp.ID[3:10])); !slices.Equal(got, []string{"swarmsec-backend"}) {
		t.Errorf("ID infix with a local task: %v", got)
	}

	err = f.NetworkRemove(ctx, "swarmsec-backend")
	if !dockerapi.IsInUse(err) || !cerrdefs.IsInvalidArgument(err) {
		t.Fatalf("remove in use: %v", err)
	}
	if want := fmt.Sprintf("Error response from daemon: rpc error: code = FailedPrecondition desc = network %s is in use by service %s", resp.ID, svc.ID); err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
	if err := f.RemoveService(svc.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.NetworkRemove(ctx, "swarmsec-backend"); err != nil {
		t.Fatalf("remove unused: %v", err)
	}
	if _, err := f.NetworkInspect(ctx, resp.ID, network.InspectOptions{}); !dockerapi.IsNotFound(err) {
		t.Errorf("inspect removed: %v", err)
	}
	if err := f.NetworkRemove(ctx, resp.ID); !dockerapi.IsNotFound(err) {
		t.Errorf("remove removed: %v", err)
	}

	for _, name := range []string{"bridge", "host", "none"} {
		err := f.NetworkRemove(ctx, name)
		if !cerrdefs.IsPermissionDenied(err) || err.Error() != "Error response from daemon: "+name+" is a pre-defined network and cannot be removed" {
			t.Errorf("remove %s: %v", name, err)
		}
	}
}

func TestFakeIngressNetwork(t *testing.T) {
	ctx := context.Background()
	f := New()
	spec := testSpec("web")
	spec.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{TargetPort: 80, PublishedPort: 8080}}}
	svc := f.AddService(spec)
	err := f.NetworkRemove(ctx, "ingress")
	if !dockerapi.IsInUse(err) || !strings.Contains(err.Error(), "ingress network cannot be removed because service "+svc.ID+" depends on it") {
		t.Fatalf("remove ingress in use: %v", err)
	}
	other := testSpec("other")
	other.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{{TargetPort: 80, PublishedPort: 8080}}}
	if _, err := f.createServiceForTest(other); err == nil || !strings.Contains(err.Error(), "port '8080' is already in use by service 'web'") {
		t.Errorf("ingress port conflict: %v", err)
	}
	if err := f.RemoveService(svc.ID); err != nil {
		t.Fatal(err)
	}
	// The engine lets the ingress network go once nothing publishes through it.
	if err := f.NetworkRemove(ctx, "ingress"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.createServiceForTest(other); err == nil || !strings.Contains(err.Error(), "no ingress network is present") {
		t.Errorf("publishing without ingress: %v", err)
	}
}

// createServiceForTest is AddService returning the error instead of panicking.
func (f *Swarm) createServiceForTest(spec swarm.ServiceSpec) (swarm.Service, error) {
	if err := validateClientSpec(spec); err != nil {
		return swarm.Service{}, err
	}
	spec = clone(spec)
	tagImage(&spec)
	f.mu.Lock()
	defer f.mu.Unlock()
	svc, err := f.createServiceLocked(spec)
	if err != nil {
		return swarm.Service{}, err
	}
	return clone(*svc), nil
}

func TestFakeNetworkRemoveRefusesContainers(t *testing.T) {
	ctx := context.Background()
	f := New()
	ov := overlay(f, "shared")
	local := f.AddNetwork("legacy", network.CreateOptions{})
	c := f.AddContainer("debug", nil, "shared", "legacy")

	err := f.NetworkRemove(ctx, "shared")
	if !dockerapi.IsInUse(err) || !strings.Contains(err.Error(), "network "+ov.ID+" is in use by task ") {
		t.Errorf("overlay with a container: %v", err)
	}
	err = f.NetworkRemove(ctx, "legacy")
	if !dockerapi.IsInUse(err) || !cerrdefs.IsPermissionDenied(err) ||
		err.Error() != "Error response from daemon: error while removing network: network legacy id "+local.ID+" has active endpoints" {
		t.Errorf("local network with a container: %v", err)
	}
	in, _ := f.NetworkInspect(ctx, "legacy", network.InspectOptions{})
	if _, ok := in.Containers[c.ID]; !ok {
		t.Errorf("inspect does not show the container: %+v", in.Containers)
	}

	f.RemoveContainer(c.ID)
	for _, n := range []string{"shared", "legacy"} {
		if err := f.NetworkRemove(ctx, n); err != nil {
			t.Errorf("remove %s after the container left: %v", n, err)
		}
	}
}

func runningTasks(t *testing.T, f *Swarm, service string) []swarm.Task {
	t.Helper()
	tasks, err := f.TaskList(context.Background(), swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", service), filters.Arg("desired-state", "running"))})
	if err != nil {
		t.Fatal(err)
	}
	return tasks
}

func TestFakeTasks(t *testing.T) {
	ctx := context.Background()
	f := New()
	net := overlay(f, "backend")
	spec := testSpec("web", "backend")
	spec.Mode.Replicated = &swarm.ReplicatedService{Replicas: ptr[uint64](3)}
	svc := f.AddService(spec)
	worker := f.AddNode(swarm.Node{})

	tasks := runningTasks(t, f, "web") // by name, as the engine resolves it
	if len(tasks) != 3 {
		t.Fatalf("%d tasks, want 3", len(tasks))
	}
	slots := map[int]bool{}
	for _, task := range tasks {
		slots[task.Slot] = true
		if task.ServiceID != svc.ID || task.Status.State != swarm.TaskStateRunning || task.DesiredState != swarm.TaskStateRunning {
			t.Errorf("task %+v", task)
		}
		if len(task.NetworksAttachments) != 1 || task.NetworksAttachments[0].Network.ID != net.ID ||
			task.NetworksAttachments[0].Network.Spec.Name != "backend" || len(task.NetworksAttachments[0].Addresses) != 1 {
			t.Errorf("attachments %+v", task.NetworksAttachments)
		}
	}
	if len(slots) != 3 {
		t.Errorf("slots %v", slots)
	}

	// Scaling keeps the tasks that stay.
	if err := f.UpdateService(svc.ID, func(s *swarm.ServiceSpec) { s.Mode.Replicated.Replicas = ptr[uint64](1) }); err != nil {
		t.Fatal(err)
	}
	if after := runningTasks(t, f, svc.ID); len(after) != 1 || after[0].Slot != 1 {
		t.Errorf("after scaling down: %+v", after)
	}

	global := testSpec("agent")
	global.Mode = swarm.ServiceMode{Global: &swarm.GlobalService{}}
	g := f.AddService(global)
	onWorker, _ := f.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", g.ID), filters.Arg("node", worker.ID))})
	if len(runningTasks(t, f, g.ID)) != 2 || len(onWorker) != 1 {
		t.Errorf("global service: %d tasks, %d on the worker", len(runningTasks(t, f, g.ID)), len(onWorker))
	}

	if _, err := f.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", "nosuch"))}); !dockerapi.IsNotFound(err) {
		t.Errorf("tasks of a missing service: %v", err)
	}
	if _, err := f.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("desired-state", "bogus"))}); err == nil {
		t.Error("bogus desired-state accepted")
	}
}

func TestFakeContainerList(t *testing.T) {
	ctx := context.Background()
	f := New()
	net := overlay(f, "backend")
	svc := f.AddService(testSpec("web", "backend"))
	stray := f.AddContainer("stray", map[string]string{"role": "debug"}, "backend")
	f.AddContainer("elsewhere", nil, "bridge")

	list := func(args ...filters.KeyValuePair) []string {
		t.Helper()
		cs, err := f.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(args...)})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, c := range cs {
			names = append(names, strings.SplitN(strings.TrimPrefix(c.Names[0], "/"), ".", 2)[0])
		}
		slices.Sort(names)
		return names
	}
	if got := list(filters.Arg("network", "backend")); !slices.Equal(got, []string{"stray", "web"}) {
		t.Errorf("on backend: %v", got)
	}
	if got := list(filters.Arg("network", net.ID[:6])); !slices.Equal(got, []string{"stray", "web"}) {
		t.Errorf("on backend by ID prefix: %v", got)
	}
	if got := list(filters.Arg("network", "back")); got != nil {
		t.Errorf("network names are not prefixes: %v", got)
	}
	if got := list(filters.Arg("label", "com.docker.swarm.service.id="+svc.ID)); !slices.Equal(got, []string{"web"}) {
		t.Errorf("task containers: %v", got)
	}
	if got := list(filters.Arg("label", "role=debug")); !slices.Equal(got, []string{"stray"}) || stray.Labels["role"] != "debug" {
		t.Errorf("by label: %v", got)
	}
}

func TestFakeEvents(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := New()
	msgs, errs := f.Events(ctx, events.ListOptions{Filters: filters.NewArgs(filters.Arg("type", "service"), filters.Arg("type", "network"))})
	svcOnly, _ := f.Events(ctx, events.ListOptions{Filters: filters.NewArgs(filters.Arg("type", "service"))})

	net := overlay(f, "backend")
	svc := f.AddService(testSpec("web"))
	spec := svc.Spec
	spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: "backend"}}
	if _, err := f.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := f.RemoveService(svc.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.NetworkRemove(ctx, net.ID); err != nil {
		t.Fatal(err)
	}

	type ev struct{ typ, action, id, name string }
	want := []ev{
		{"network", "create", net.ID, "backend"},
		{"network", "update", net.ID, "backend"},
		{"service", "create", svc.ID, "web"},
		{"service", "update", svc.ID, "web"}, // the spec
		{"service", "update", svc.ID, "web"}, // updatestate updating
		{"service", "update", svc.ID, "web"}, // updatestate completed
		{"service", "remove", svc.ID, "web"},
		{"network", "remove", net.ID, "backend"},
	}
	read := func(ch <-chan events.Message, n int) []ev {
		var got []ev
		for range n {
			select {
			case m := <-ch:
				got = append(got, ev{string(m.Type), string(m.Action), m.Actor.ID, m.Actor.Attributes["name"]})
			case <-time.After(time.Second):
				t.Fatalf("timed out after %v", got)
			}
		}
		return got
	}
	if got := read(msgs, len(want)); !slices.Equal(got, want) {
		t.Errorf("events:\n got %v\nwant %v", got, want)
	}
	var wantSvc []ev
	for _, e := range want {
		if e.typ == "service" {
			wantSvc = append(wantSvc, e)
		}
	}
	if got := read(svcOnly, len(wantSvc)); !slices.Equal(got, wantSvc) {
		t.Errorf("service events:\n got %v\nwant %v", got, wantSvc)
	}

	cancel()
	select {
	case err := <-errs:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("stream ended with %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("stream did not end with its context")
	}
	if _, open := <-errs; open {
		t.Error("error channel left open")
	}
}

func TestFakeBreakEvents(t *testing.T) {
	ctx := context.Background()
	f := New()
	_, errs := f.Events(ctx, events.ListOptions{})
	f.BreakEvents(io.ErrUnexpectedEOF)
	if err := <-errs; !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("got %v", err)
	}
	// A new stream works, as after a reconnect.
	msgs, _ := f.Events(ctx, events.ListOptions{})
	f.AddService(testSpec("web"))
	if m := <-msgs; m.Action != events.ActionCreate {
		t.Fatalf("got %+v", m)
	}
}

func TestFakeCallsAndFailNext(t *testing.T) {
	ctx := context.Background()
	f := New()
	svc := f.AddService(testSpec("web"))
	overlay(f, "seeded")
	if f.WriteCalls() != 0 || len(f.Calls()) != 0 {
		t.Fatalf("seeding counted: %v", f.Calls())
	}

	boom := errors.New("boom")
	f.FailNext(dockerapi.OpServiceUpdate, boom)
	if _, err := f.ServiceUpdate(ctx, svc.ID, svc.Version, svc.Spec, swarm.ServiceUpdateOptions{}); !errors.Is(err, boom) {
		t.Fatalf("FailNext: %v", err)
	}
	if got := mustInspect(t, f, svc.ID); got.Version != svc.Version {
		t.Error("a failed call changed the service")
	}
	if _, err := f.ServiceUpdate(ctx, svc.ID, svc.Version, svc.Spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatalf("only the next call fails: %v", err)
	}
	if _, err := f.NetworkCreate(ctx, "n", network.CreateOptions{Driver: "overlay"}); err != nil {
		t.Fatal(err)
	}
	if err := f.NetworkRemove(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.NetworkList(ctx, network.ListOptions{}); err != nil {
		t.Fatal(err)
	}

	want := map[string]int{dockerapi.OpServiceUpdate: 2, dockerapi.OpServiceInspectWithRaw: 1, dockerapi.OpNetworkCreate: 1, dockerapi.OpNetworkRemove: 1, dockerapi.OpNetworkList: 1}
	if got := f.Calls(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("calls %v, want %v", got, want)
	}
	if f.WriteCalls() != 4 {
		t.Errorf("write calls %d, want 4", f.WriteCalls())
	}
	f.ResetCalls()
	if len(f.Calls()) != 0 || f.WriteCalls() != 0 {
		t.Errorf("after reset: %v", f.Calls())
	}

	defer func() {
		if recover() == nil {
			t.Error("FailNext accepted an unknown operation")
		}
	}()
	f.FailNext("ServiceUpdates", boom)
}

// TestFakeConcurrentUpdates runs writers racing on one service: exactly one
// update per version wins, as Swarm's optimistic concurrency guarantees.
// Run with -race.
func TestFakeConcurrentUpdates(t *testing.T) {
	ctx := context.Background()
	f := New()
	svc := f.AddService(testSpec("web"))
	msgs, _ := f.Events(ctx, events.ListOptions{})
	go func() {
		for range msgs { // a slow reader must not block writers
			time.Sleep(time.Millisecond)
		}
	}()

	const writers, rounds = 8, 20
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				cur, _, err := f.ServiceInspectWithRaw(ctx, svc.ID, swarm.ServiceInspectOptions{})
				if err != nil {
					t.Error(err)
					return
				}
				cur.Spec.Labels[fmt.Sprint("w", w)] = fmt.Sprint(r)
				_, err = f.ServiceUpdate(ctx, svc.ID, cur.Version, cur.Spec, swarm.ServiceUpdateOptions{})
				switch {
				case err == nil:
					mu.Lock()
					wins++
					mu.Unlock()
				case !dockerapi.IsOutOfSequence(err):
					t.Error(err)
				}
				_, _ = f.NetworkList(ctx, network.ListOptions{})
				_, _ = f.TaskList(ctx, swarm.TaskListOptions{})
			}
		}()
	}
	wg.Wait()
	if wins == 0 || f.Calls()[dockerapi.OpServiceUpdate] != writers*rounds {
		t.Errorf("%d wins, %d updates", wins, f.Calls()[dockerapi.OpServiceUpdate])
	}
}

func TestFakeUpdateWithoutTasksLeavesNoUpdateStatus(t *testing.T) {
	ctx := context.Background()
	f := New()
	overlay(f, "a")
	b := overlay(f, "b")
	spec := testSpec("idle", "a")
	spec.Mode.Replicated = &swarm.ReplicatedService{Replicas: ptr[uint64](0)}
	spec.UpdateConfig = &swarm.UpdateConfig{Monitor: time.Second}
	spec.RollbackConfig = &swarm.UpdateConfig{Parallelism: 2}
	spec.TaskTemplate.RestartPolicy = &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone}
	svc := f.AddService(spec)
	// The engine fills in what an update config or a restart policy
	// leaves empty.
	for _, c := range []*swarm.UpdateConfig{svc.Spec.UpdateConfig, svc.Spec.RollbackConfig} {
		if c.FailureAction != swarm.UpdateFailureActionPause || c.Order != swarm.UpdateOrderStopFirst {
			t.Errorf("stored config %+v", c)
		}
	}
	if m := svc.Spec.RollbackConfig.Monitor; m != 0 {
		t.Errorf("a monitor period left out is stored as %v; only InsertDefaults shows Swarm's 5s", m)
	}
	if rp := svc.Spec.TaskTemplate.RestartPolicy; rp.MaxAttempts == nil || *rp.MaxAttempts != 0 {
		t.Errorf("stored restart policy %+v", rp)
	}

	// Swarm's updater has no task to replace: it never starts an update.
	spec = svc.Spec
	spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: "b"}}
	if _, err := f.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := mustInspect(t, f, svc.ID)
	if got.UpdateStatus != nil || len(got.Endpoint.VirtualIPs) != 1 || got.Endpoint.VirtualIPs[0].NetworkID != b.ID {
		t.Errorf("after a network change without tasks: status %+v, VIPs %+v", got.UpdateStatus, got.Endpoint.VirtualIPs)
	}
	// A rollback always has one, completed at once.
	if _, err := f.ServiceUpdate(ctx, svc.ID, got.Version, got.Spec, swarm.ServiceUpdateOptions{Rollback: "previous"}); err != nil {
		t.Fatal(err)
	}
	if got = mustInspect(t, f, svc.ID); got.UpdateStatus == nil || got.UpdateStatus.State != swarm.UpdateStateRollbackCompleted {
		t.Errorf("rollback without tasks: %+v", got.UpdateStatus)
	}
	// Scaling up with a new spec starts the new tasks: nothing to roll.
	spec = got.Spec
	spec.Mode.Replicated.Replicas = ptr[uint64](1)
	spec.TaskTemplate.ContainerSpec.Env = []string{"A=1"}
	if _, err := f.ServiceUpdate(ctx, svc.ID, got.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got = mustInspect(t, f, svc.ID); got.UpdateStatus != nil || len(runningTasks(t, f, svc.ID)) != 1 {
		t.Errorf("scaled up from zero: status %+v, %d tasks", got.UpdateStatus, len(runningTasks(t, f, svc.ID)))
	}
}

func TestFakeOverlappingSubnets(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := New()
	msgs, _ := f.Events(ctx, events.ListOptions{Filters: filters.NewArgs(filters.Arg("type", "network"), filters.Arg("network", "late"))})
	ipam := func(subnet string) *network.IPAM {
		return &network.IPAM{Config: []network.IPAMConfig{{Subnet: subnet}}}
	}
	first := f.AddNetwork("first", network.CreateOptions{Driver: "overlay", IPAM: ipam("10.9.0.0/24")})
	other := overlay(f, "other")

	// The engine takes a Swarm network on a subnet Swarm already gave out,
	// and its allocator leaves it without driver, IPAM or options.
	resp, err := f.NetworkCreate(ctx, "late", network.CreateOptions{
		Driver: "overlay", Attachable: true, IPAM: ipam("10.9.0.0/25"),
		Options: map[string]string{"encrypted": ""}, Labels: map[string]string{"k": "v"},
	})
	if err != nil {
		t.Fatal(err)
	}
	late, _ := f.NetworkInspect(ctx, resp.ID, network.InspectOptions{})
	if late.Driver != "" || late.IPAM.Driver != "" || late.IPAM.Config != nil || late.Options != nil || late.Labels["k"] != "v" || !late.Attachable {
		t.Errorf("unallocated network inspected as %+v", late)
	}
	if l, _ := f.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", "late"))}); len(l) != 1 || l[0].Driver != "" || l[0].IPAM.Config != nil {
		t.Errorf("unallocated network listed as %+v", l)
	}
	if l, _ := f.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("driver", "overlay"))}); slices.ContainsFunc(l, func(n network.Summary) bool { return n.Name == "late" }) {
		t.Error("an unallocated network matches driver=overlay")
	}

	// A service on it waits: no endpoint, its task created but never
	// scheduled. One moved onto it loses its task and stays "updating".
	waiting := f.AddService(testSpec("waiting", "late"))
	if len(waiting.Endpoint.VirtualIPs) != 0 {
		t.Errorf("waiting service has VIPs %+v", waiting.Endpoint.VirtualIPs)
	}
	tasks, _ := f.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", "waiting"))})
	if len(tasks) != 1 || tasks[0].Status.State != swarm.TaskStateNew || tasks[0].Status.Message != "created" ||
		tasks[0].NodeID != "" || len(tasks[0].NetworksAttachments) != 0 || tasks[0].Status.ContainerStatus != nil {
		t.Fatalf("waiting task %+v", tasks)
	}
	newTask := tasks[0].ID
	moved := f.AddService(testSpec("moved", "other"))
	oldTask := runningTasks(t, f, moved.ID)[0].ID
	if err := f.UpdateService(moved.ID, func(s *swarm.ServiceSpec) {
		s.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: "late"}}
	}); err != nil {
		t.Fatal(err)
	}
	m := mustInspect(t, f, moved.ID)
	if m.UpdateStatus == nil || m.UpdateStatus.State != swarm.UpdateStateUpdating || m.Endpoint.VirtualIPs[0].NetworkID != other.ID {
		t.Errorf("moved onto the waiting network: status %+v, VIPs %+v", m.UpdateStatus, m.Endpoint.VirtualIPs)
	}
	old, _ := f.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("id", oldTask))})
	if mt := runningTasks(t, f, moved.ID); len(mt) != 1 || mt[0].Status.State != swarm.TaskStateNew || old[0].DesiredState != swarm.TaskStateShutdown {
		t.Errorf("moved service's tasks: %+v, the old one %+v", mt, old)
	}
	list, _ := f.ServiceList(ctx, swarm.ServiceListOptions{Status: true})
	for _, s := range list {
		if s.ServiceStatus.DesiredTasks != 1 || s.ServiceStatus.RunningTasks != 0 {
			t.Errorf("%s: status %+v", s.Spec.Name, s.ServiceStatus)
		}
	}
	if cs, _ := f.ContainerList(ctx, container.ListOptions{}); len(cs) != 0 {
		t.Errorf("containers for tasks that never started: %d", len(cs))
	}

	// Once the subnet is free, Swarm allocates the network (and says so),
	// then the services, and their tasks run.
	if err := f.NetworkRemove(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	late, _ = f.NetworkInspect(ctx, resp.ID, network.InspectOptions{})
	if _, enc := late.Options["encrypted"]; late.Driver != "overlay" || !enc || late.Options["com.docker.network.driver.overlay.vxlanid_list"] == "" ||
		len(late.IPAM.Config) != 1 || late.IPAM.Config[0].Subnet != "10.9.0.0/25" || late.IPAM.Config[0].Gateway != "10.9.0.1" {
		t.Errorf("allocated at last: %+v", late)
	}
	if w := runningTasks(t, f, waiting.ID); len(w) != 1 || w[0].ID != newTask || w[0].Status.State != swarm.TaskStateRunning || len(w[0].NetworksAttachments) != 1 {
		t.Errorf("the waiting task: %+v", w)
	}
	m = mustInspect(t, f, moved.ID)
	if m.UpdateStatus.State != swarm.UpdateStateCompleted || m.Endpoint.VirtualIPs[0].NetworkID != resp.ID {
		t.Errorf("the moved service: status %+v, VIPs %+v", m.UpdateStatus, m.Endpoint.VirtualIPs)
	}
	var seen []events.Action
	for len(seen) < 2 {
		select {
		case msg := <-msgs:
			seen = append(seen, msg.Action)
		case <-time.After(time.Second):
			t.Fatalf("network events %v", seen)
		}
	}
	if !slices.Equal(seen, []events.Action{events.ActionCreate, events.ActionUpdate}) {
		t.Errorf("network events %v, want create, then update once allocated", seen)
	}

	// Automatic subnets go round the ones taken ("other" has 10.0.1.0/24).
	f.AddNetwork("taken", network.CreateOptions{Driver: "overlay", IPAM: ipam("10.0.2.0/24")})
	if a := overlay(f, "auto"); a.IPAM.Config[0].Subnet != "10.0.3.0/24" {
		t.Errorf("automatic subnet %v", a.IPAM.Config)
	}
}

func TestFakeLocalSubnets(t *testing.T) {
	ctx := context.Background()
	f := New()
	ipam := func(subnet string) *network.IPAM {
		return &network.IPAM{Config: []network.IPAMConfig{{Subnet: subnet}}}
	}
	// A local pool is reserved when the network is created: an overlap is
	// refused, with other local networks and with Swarm networks in use on
	// this node (ingress always is), not with other Swarm networks.
	for _, tc := range []struct {
		subnet string
		ok     bool
	}{
		{"172.17.5.0/24", false}, // docker0
		{"10.0.0.128/25", false}, // ingress
		{"10.0.1.0/24", true},    // "unused" below
		{"10.0.2.0/24", false},   // "used" below
	} {
		f := New()
		overlay(f, "unused")
		overlay(f, "used")
		f.AddService(testSpec("web", "used"))
		_, err := f.NetworkCreate(ctx, "local", network.CreateOptions{IPAM: ipam(tc.subnet)})
		if tc.ok != (err == nil) || err != nil && (!cerrdefs.IsPermissionDenied(err) || err.Error() != "Error response from daemon: Pool overlaps with other one on this address space") {
			t.Errorf("local network on %s: %v", tc.subnet, err)
		}
	}
	f.AddNetwork("mine", network.CreateOptions{IPAM: ipam("172.19.0.0/16")})
	if n := f.AddNetwork("auto", network.CreateOptions{}); n.IPAM.Config[0].Subnet != "172.20.0.0/16" {
		t.Errorf("automatic local subnet %v", n.IPAM.Config)
	}
}

func TestFakePublishedPorts(t *testing.T) {
	ctx := context.Background()
	f := New()
	publish := func(name string, replicas uint64, ports ...swarm.PortConfig) swarm.ServiceSpec {
		s := testSpec(name)
		s.Mode.Replicated = &swarm.ReplicatedService{Replicas: ptr(replicas)}
		s.EndpointSpec = &swarm.EndpointSpec{Ports: ports}
		return s
	}
	ingress := func(port uint32) swarm.PortConfig { return swarm.PortConfig{TargetPort: 80, PublishedPort: port} }
	host := func(port uint32) swarm.PortConfig {
		return swarm.PortConfig{TargetPort: 80, PublishedPort: port, PublishMode: swarm.PortConfigPublishModeHost}
	}
	ing := f.AddService(publish("ing", 0, ingress(8080), swarm.PortConfig{TargetPort: 81})) // 81 gets 30000
	h1 := f.AddService(publish("h1", 1, host(9090)))
	for _, tc := range []struct {
		spec swarm.ServiceSpec
		want string // "" for accepted
	}{
		{publish("x", 0, host(8080)), fmt.Sprintf("port '8080' is already in use by service 'ing' (%s) as an ingress port", ing.ID)},
		{publish("x", 0, host(30000)), fmt.Sprintf("port '30000' is already in use by service 'ing' (%s) as an ingress port", ing.ID)},
		{publish("x", 0, ingress(9090)), fmt.Sprintf("port '9090' is already in use by service 'h1' (%s) as a host-published port", h1.ID)},
		{publish("x", 0, swarm.PortConfig{TargetPort: 80, PublishedPort: 8080, Protocol: swarm.PortConfigProtocolUDP}), ""},
		{publish("x", 0, host(9090)), ""},
	} {
		svc, err := f.createServiceForTest(tc.spec)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v refused: %v", tc.spec.EndpointSpec.Ports, err)
		case tc.want != "" && (err == nil || !cerrdefs.IsInvalidArgument(err) || err.Error() != "Error response from daemon: rpc error: code = InvalidArgument desc = "+tc.want):
			t.Errorf("%+v: got %v, want %q", tc.spec.EndpointSpec.Ports, err, tc.want)
		}
		if err == nil {
			_ = f.RemoveService(svc.ID)
		}
	}

	// One node, one task per host-mode port: the other one waits.
	h2 := f.AddService(publish("h2", 1, host(9090)))
	pending := runningTasks(t, f, h2.ID)
	if len(pending) != 1 || pending[0].Status.State != swarm.TaskStatePending || pending[0].Status.Message != "pending task scheduling" ||
		pending[0].Status.Err != "no suitable node (host-mode port already in use on 1 node)" || pending[0].NodeID != "" {
		t.Fatalf("second task on the host port: %+v", pending)
	}
	list, _ := f.ServiceList(ctx, swarm.ServiceListOptions{Status: true, Filters: filters.NewArgs(filters.Arg("name", "h2"))})
	if st := list[0].ServiceStatus; st.DesiredTasks != 1 || st.RunningTasks != 0 {
		t.Errorf("status %+v", st)
	}
	if err := f.RemoveService(h1.ID); err != nil {
		t.Fatal(err)
	}
	if now := runningTasks(t, f, h2.ID); now[0].ID != pending[0].ID || now[0].Status.State != swarm.TaskStateRunning || now[0].Status.Err != "" || now[0].NodeID == "" {
		t.Errorf("once the port is free: %+v", now[0])
	}

	// More nodes, more room; the scheduler says on how many it looked.
	f.AddNode(swarm.Node{})
	if err := f.UpdateService(h2.ID, func(s *swarm.ServiceSpec) { s.Mode.Replicated.Replicas = ptr[uint64](3) }); err != nil {
		t.Fatal(err)
	}
	nodes := map[string]bool{}
	var errs []string
	for _, task := range runningTasks(t, f, h2.ID) {
		if task.NodeID != "" {
			nodes[task.NodeID] = true
		}
		errs = append(errs, task.Status.Err)
	}
	slices.Sort(errs)
	if len(nodes) != 2 || !slices.Equal(errs, []string{"", "", "no suitable node (host-mode port already in use on 2 nodes)"}) {
		t.Errorf("three replicas on two nodes: nodes %v, errors %q", nodes, errs)
	}
}

func TestFakeParityScenarios(t *testing.T) {
	runParityScenarios(t, func(*testing.T) *parityWorld { return newFakeWorld(New()) })
}

// --- Parity scenarios ------------------------------------------------------
//
// The same scenarios run against the Fake here and, with -tags integration,
// against a real engine (fake_parity_test.go). Each returns a transcript of
// what it saw, with IDs and the run's unique names redacted; want is what
// Engine 20.10 showed.

// parityWorld is one engine the scenarios run against.
type parityWorld struct {
	dockerapi.API
	run   string // unique per test run; every name created starts with prefix()
	image string
	// addService creates a service (not part of dockerapi.API) and returns its ID.
	addService func(ctx context.Context, spec swarm.ServiceSpec) (string, error)
	// cleanup undoes what a scenario created; t.Cleanup runs it.
	removeService func(ctx context.Context, id string) error
	removeNetwork func(ctx context.Context, id string) error
	// addContainer runs a container outside any service on one network.
	addContainer    func(ctx context.Context, name, network string) (string, error)
	removeContainer func(ctx context.Context, id string) error

	redactions []string // old, new pairs
}

func newFakeWorld(f *Swarm) *parityWorld {
	return &parityWorld{
		API: f, run: "r1", image: "swarmsec-test-app:r1",
		addService: func(_ context.Context, spec swarm.ServiceSpec) (string, error) {
			svc, err := f.createServiceForTest(spec)
			return svc.ID, err
		},
		removeService: func(_ context.Context, id string) error { return f.RemoveService(id) },
		removeNetwork: f.NetworkRemove,
		addContainer: func(_ context.Context, name, network string) (string, error) {
			return f.AddContainer(name, map[string]string{"swarmsec.test": "1"}, network).ID, nil
		},
		removeContainer: func(_ context.Context, id string) error { f.RemoveContainer(id); return nil },
	}
}

func (w *parityWorld) prefix() string           { return "swarmsec-test-" + w.run }
func (w *parityWorld) name(short string) string { return w.prefix() + "-" + short }

func (w *parityWorld) labels() map[string]string {
	return map[string]string{"swarmsec.test": "1", "swarmsec.test.run": w.run}
}

func (w *parityWorld) redact(s string) string {
	for i := 0; i < len(w.redactions); i += 2 {
		s = strings.ReplaceAll(s, w.redactions[i], w.redactions[i+1])
	}
	return s
}

func (w *parityWorld) errLine(what string, err error) string {
	if err == nil {
		return what + ": ok"
	}
	return w.redact(fmt.Sprintf("%s: not-found=%v conflict=%v in-use=%v out-of-sequence=%v: %v",
		what, dockerapi.IsNotFound(err), dockerapi.IsConflict(err), dockerapi.IsInUse(err), dockerapi.IsOutOfSequence(err), err))
}

func (w *parityWorld) spec(short string, networks ...string) swarm.ServiceSpec {
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: w.name(short), Labels: w.labels()},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: w.image, StopGracePeriod: ptr(time.Second)},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
		},
	}
	for _, n := range networks {
		spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: n})
	}
	return spec
}

func (w *parityWorld) service(t *testing.T, ctx context.Context, spec swarm.ServiceSpec) string {
	t.Helper()
	id, err := w.tryService(t, ctx, spec)
	if err != nil {
		t.Fatalf("create service %s: %v", spec.Name, err)
	}
	return id
}

// tryService creates a service and, if the engine takes it, removes it at
// the end. A refusal is returned: some scenarios expect one.
func (w *parityWorld) tryService(t *testing.T, ctx context.Context, spec swarm.ServiceSpec) (string, error) {
	t.Helper()
	id, err := w.addService(ctx, spec)
	if err != nil {
		w.redactions = append(w.redactions, w.prefix(), "<p>")
		return "", err
	}
	t.Cleanup(func() {
		if err := w.removeService(context.Background(), id); err != nil && !dockerapi.IsNotFound(err) {
			t.Errorf("remove service %s: %v", spec.Name, err)
		}
	})
	// Longest first, so a name is not half-replaced by a shorter one.
	w.redactions = append([]string{id, "<svc:" + strings.TrimPrefix(spec.Name, w.prefix()+"-") + ">"}, w.redactions...)
	w.redactions = append(w.redactions, w.prefix(), "<p>")
	return id, nil
}

func (w *parityWorld) network(t *testing.T, ctx context.Context, short string) string {
	t.Helper()
	id, err := w.tryNetwork(t, ctx, short, network.CreateOptions{Driver: "overlay", Attachable: true})
	if err != nil {
		t.Fatalf("create network %s: %v", short, err)
	}
	return id
}

// tryNetwork creates a network with these options, labelled as the run's,
// and, if the engine takes it, removes it at the end. A refusal is returned.
func (w *parityWorld) tryNetwork(t *testing.T, ctx context.Context, short string, opts network.CreateOptions) (string, error) {
	t.Helper()
	opts.Labels = w.labels()
	resp, err := w.NetworkCreate(ctx, w.name(short), opts)
	if err != nil {
		w.redactions = append(w.redactions, w.prefix(), "<p>")
		return "", err
	}
	t.Cleanup(func() {
		if err := w.removeNetwork(context.Background(), resp.ID); err != nil && !dockerapi.IsNotFound(err) {
			t.Errorf("remove network %s: %v", short, err)
		}
	})
	w.redactions = append([]string{resp.ID, "<net:" + short + ">"}, w.redactions...)
	w.redactions = append(w.redactions, w.prefix(), "<p>")
	return resp.ID, nil
}

// kindLine is errLine for errors the other flags do not tell apart: the
// kind the client derives from the status code, then the message.
func (w *parityWorld) kindLine(what string, err error) string {
	if err == nil {
		return what + ": ok"
	}
	return w.redact(fmt.Sprintf("%s: %s: %v", what, errKind(err), err))
}

func errKind(err error) string {
	for _, k := range []struct {
		name string
		is   func(error) bool
	}{
		{"invalid-argument", cerrdefs.IsInvalidArgument}, {"not-found", cerrdefs.IsNotFound},
		{"conflict", cerrdefs.IsConflict}, {"permission-denied", cerrdefs.IsPermissionDenied},
		{"failed-precondition", cerrdefs.IsFailedPrecondition}, {"unavailable", cerrdefs.IsUnavailable},
		{"not-implemented", cerrdefs.IsNotImplemented}, {"internal", cerrdefs.IsInternal},
	} {
		if k.is(err) {
			return k.name
		}
	}
	return "unknown"
}

// update applies mutate to the service's current spec and writes it at the
// version just read, again while Swarm's own writes make that version stale.
func (w *parityWorld) update(t *testing.T, ctx context.Context, id string, mutate func(*swarm.ServiceSpec)) error {
	t.Helper()
	var err error
	eventually(t, "an update that is not out of sequence", func() bool {
		svc := mustInspect(t, w, id)
		mutate(&svc.Spec)
		_, err = w.ServiceUpdate(ctx, id, svc.Version, svc.Spec, swarm.ServiceUpdateOptions{})
		return !dockerapi.IsOutOfSequence(err)
	})
	return err
}

// taskList lists tasks with these filters, oldest first.
func (w *parityWorld) taskList(t *testing.T, ctx context.Context, args ...filters.KeyValuePair) []swarm.Task {
	t.Helper()
	tasks, err := w.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(args...)})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(tasks, func(a, b swarm.Task) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return tasks
}

// runningTask waits until the service has one task Swarm wants running
// and it runs, and returns it.
func (w *parityWorld) runningTask(t *testing.T, ctx context.Context, short string) swarm.Task {
	t.Helper()
	var tasks []swarm.Task
	eventually(t, "1 running task of "+short, func() bool {
		tasks = w.taskList(t, ctx, filters.Arg("service", w.name(short)), filters.Arg("desired-state", "running"))
		return len(tasks) == 1 && tasks[0].Status.State == swarm.TaskStateRunning
	})
	return tasks[0]
}

// sameNetwork compares what swarmsec keeps of a network as listed and as
// inspected alone.
func (w *parityWorld) sameNetwork(t *testing.T, ctx context.Context, what, id string) string {
	t.Helper()
	all, err := w.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(all, func(n network.Summary) bool { return n.ID == id })
	if i < 0 {
		return "network " + what + ": not listed"
	}
	alone, err := w.NetworkInspect(ctx, id, network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// No labels or options at all read the same to swarmsec as an empty
	// set: the engine lists ingress with one and inspects it with the other.
	set := func(m map[string]string) map[string]string {
		if m == nil {
			return map[string]string{}
		}
		return m
	}
	kept := func(n network.Inspect) map[string]any {
		return map[string]any{"name": n.Name, "id": n.ID, "driver": n.Driver, "scope": n.Scope, "labels": set(n.Labels),
			"options": set(n.Options), "internal": n.Internal, "attachable": n.Attachable, "ingress": n.Ingress,
			"ipv6": n.EnableIPv6, "ipam": n.IPAM, "configFrom": n.ConfigFrom}
	}
	l, a := kept(all[i]), kept(alone)
	var diff []string
	for _, k := range slices.Sorted(maps.Keys(l)) {
		if !jsonEqual(l[k], a[k]) {
			diff = append(diff, w.redact(fmt.Sprintf("%s listed %v, inspected %v", k, l[k], a[k])))
		}
	}
	if len(diff) > 0 {
		return "network " + what + ": " + strings.Join(diff, "; ")
	}
	return "network " + what + ": same"
}

// statusLines lists the services named prefix()-<short>... with their
// task counts, as `docker service ls` shows them.
func (w *parityWorld) statusLines(t *testing.T, ctx context.Context, short string) []string {
	t.Helper()
	list, err := w.ServiceList(ctx, swarm.ServiceListOptions{Status: true, Filters: filters.NewArgs(filters.Arg("name", w.name(short)))})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(list, func(a, b swarm.Service) int { return strings.Compare(a.Spec.Name, b.Spec.Name) })
	var lines []string
	for _, s := range list {
		if s.ServiceStatus == nil {
			lines = append(lines, w.redact(fmt.Sprintf("status of %s: none", s.Spec.Name)))
			continue
		}
		lines = append(lines, w.redact(fmt.Sprintf("status of %s: desired %d running %d completed %d",
			s.Spec.Name, s.ServiceStatus.DesiredTasks, s.ServiceStatus.RunningTasks, s.ServiceStatus.CompletedTasks)))
	}
	return lines
}

func targets(as []swarm.NetworkAttachmentConfig) []string {
	out := []string{}
	for _, a := range as {
		out = append(out, a.Target)
	}
	return out
}

// freePort returns a TCP port nothing on this host listens on now.
func freePort(t *testing.T) uint32 {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint32(l.Addr().(*net.TCPAddr).Port)
}

func (w *parityWorld) container(t *testing.T, ctx context.Context, short, network string) {
	t.Helper()
	id, err := w.addContainer(ctx, w.name(short), network)
	if err != nil {
		t.Fatalf("run container %s: %v", short, err)
	}
	t.Cleanup(func() {
		if err := w.removeContainer(context.Background(), id); err != nil {
			t.Errorf("remove container %s: %v", short, err)
		}
	})
}

// eventually polls cond until it holds or 60s pass: a real engine allocates
// VIPs and starts tasks asynchronously. The Fake passes on the first try.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

type parityScenario struct {
	name string
	run  func(t *testing.T, ctx context.Context, w *parityWorld) []string
	want []string
}

var parityScenarios = []parityScenario{{
	name: "stale update is out of sequence",
	run: func(t *testing.T, ctx context.Context, w *parityWorld) []string {
		id := w.service(t, ctx, w.spec("stale"))
		var used swarm.Version
		// Swarm may still be writing a new service: re-read and retry, as a
		// reconciler does, until an update goes through.
		eventually(t, "a first update", func() bool {
			svc := mustInspect(t, w, id)
			svc.Spec.Labels["touched"] = "1"
			_, err := w.ServiceUpdate(ctx, id, svc.Version, svc.Spec, swarm.ServiceUpdateOptions{})
			if err != nil && !dockerapi.IsOutOfSequence(err) {
				t.Fatal(err)
			}
			used = svc.Version
			return err == nil
		})
		after := mustInspect(t, w, id)
		_, err := w.ServiceUpdate(ctx, id, used, after.Spec, swarm.ServiceUpdateOptions{})
		return []string{
			fmt.Sprintf("version moved: %v", after.Version.Index > used.Index),
			w.errLine("update with the used version", err),
		}
	},
	want: []string{
		"version moved: true",
		"update with the used version: not-found=false conflict=false in-use=false out-of-sequence=true: Error response from daemon: rpc error: code = Unknown desc = update out of sequence",
	},
}, {
	name: "network in use by a service",
	run: func(t *testing.T, ctx context.Context, w *parityWorld) []string {
		net := w.network(t, ctx, "inuse")
		id := w.service(t, ctx, w.spec("user", w.name("inuse")))
		var svc swarm.Service
		eventually(t, "a VIP", func() bool { svc = mustInspect(t, w, id); return len(svc.Endpoint.VirtualIPs) > 0 })
		return []string{
			w.redact("stored target: " + svc.Spec.TaskTemplate.Networks[0].Target),
			w.redact("VIP on: " + svc.Endpoint.VirtualIPs[0].NetworkID),
			w.errLine("remove", w.NetworkRemove(ctx, net)),
			w.errLine("remove by name", w.NetworkRemove(ctx, w.name("inuse"))),
		}
	},
	want: []string{
		"stored target: <net:inuse>",
		"VIP on: <net:inuse>",
		"remove: not-found=false conflict=false in-use=true out-of-sequence=false: Error response from daemon: rpc error: code = FailedPrecondition desc = network <net:inuse> is in use by service <svc:user>",
		"remove by name: not-found=false conflict=false in-use=true out-of-sequence=false: Error response from daemon: rpc error: code = FailedPrecondition desc = network <net:inuse> is in use by service <svc:user>",
	},
}, {
	name: "name filters",
	run: func(t *testing.T, ctx context.Context, w *parityWorld) []string {
		id := w.network(t, ctx, "alpha-net")
		w.service(t, ctx, w.spec("svcfilter"))
		nets := func(what string, args ...filters.KeyValuePair) string {
			l, err := w.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(args...)})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, n := range l {
				names = append(names, n.Name)
			}
			return w.redact(fmt.Sprintf("networks %s: %v", what, names))
		}
		svcs := func(args ...filters.KeyValuePair) string {
			l, err := w.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(args...)})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, s := range l {
				names = append(names, s.Spec.Name)
			}
			return w.redact(fmt.Sprintf("services %v: %v", args, names))
		}
		// Names are "swarmsec-test-<run>-alpha-net": the run is mid-name.
		lines := []string{
			nets("by exact name", filters.Arg("name", w.name("alpha-net"))),
			nets("by name prefix", filters.Arg("name", w.name("alpha"))),
			nets("by name infix", filters.Arg("name", w.run+"-alpha")),
			nets("by ID prefix", filters.Arg("id", id[:8])),
			nets("by ID infix", filters.Arg("id", id[2:10])),
		}
		// Once a container on this node uses it, the engine's own list,
		// matched by regular expressions, has it too.
		w.container(t, ctx, "alpha-ctr", w.name("alpha-net"))
		lines = append(lines,
			nets("by name infix, used here", filters.Arg("name", w.run+"-alpha")),
			nets("by ID infix, used here", filters.Arg("id", id[2:10])),
			nets("by name infix, other", filters.Arg("name", w.run+"-beta")),
			svcs(filters.Arg("name", w.run+"-svcf")),
			svcs(filters.Arg("name", w.prefix()+"-svcf")),
			svcs(filters.Arg("label", "swarmsec.test.run="+w.run)),
		)
		return lines
	},
	want: []string{
		"networks by exact name: [<p>-alpha-net]",
		"networks by name prefix: []",
		"networks by name infix: []",
		"networks by ID prefix: [<p>-alpha-net]",
		"networks by ID infix: []",
		"networks by name infix, used here: [<p>-alpha-net]",
		"networks by ID infix, used here: [<p>-alpha-net]",
		"networks by name infix, other: []",
		"services [{name r1-svcf}]: []",
		"services [{name <p>-svcf}]: [<p>-svcfilter]",
		"services [{label swarmsec.test.run=r1}]: [<p>-svcfilter]",
	},
}, {
	name: "not found",
	run: func(_ *testing.T, ctx context.Context, w *parityWorld) []string {
		missing := w.name("missing")
		w.redactions = append(w.redactions, w.prefix(), "<p>")
		_, _, errSvc := w.ServiceInspectWithRaw(ctx, missing, swarm.ServiceInspectOptions{})
		_, errUpd := w.ServiceUpdate(ctx, missing, swarm.Version{Index: 1}, w.spec("missing"), swarm.ServiceUpdateOptions{})
		_, errNet := w.NetworkInspect(ctx, missing, network.InspectOptions{})
		return []string{
			w.errLine("inspect service", errSvc),
			w.errLine("update service", errUpd),
			w.errLine("inspect network", errNet),
			w.errLine("remove network", w.NetworkRemove(ctx, missing)),
		}
	},
	want: []string{
		"inspect service: not-found=true conflict=false in-use=false out-of-sequence=false: Error response from daemon: service <p>-missing not found",
		"update service: not-found=true conflict=false in-use=false out-of-sequence=false: Error response from daemon: service <p>-missing not found",
		"inspect network: not-found=true conflict=false in-use=false out-of-sequence=false: Error response from daemon: network <p>-missing not found",
		"remove network: not-found=true conflict=false in-use=false out-of-sequence=false: Error response from daemon: network <p>-missing not found",
	},
}, {
	name: "update naming a missing network",
	run: func(t *testing.T, ctx context.Context, w *parityWorld) []string {
		id := w.service(t, ctx, w.spec("nonet"))
		svc := mustInspect(t, w, id)
		svc.Spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: w.name("nonet-net")}}
		_, err := w.ServiceUpdate(ctx, id, svc.Version, svc.Spec, swarm.ServiceUpdateOptions{})
		return []string{w.errLine("update", err)}
	},
	want: []string{
		"update: not-found=false conflict=false in-use=false out-of-sequence=false: Error response from daemon: network <p>-nonet-net not found",
	},
}, {
	name: "network name conflict and predefined networks",
	run: func(t *testing.T, ctx context.Context, w *parityWorld) []string {
		w.network(t, ctx, "dup")
		_, err := w.NetworkCreate(ctx, w.name("dup"), network.CreateOptions{Driver: "overlay", Labels: w.labels()})
		return []string{
			w.errLine("create again", err),
			w.errLine("remove none", w.NetworkRemove(ctx, "none")),
		}
	},
	want: []string{
		"create again: not-found=false conflict=true in-use=false out-of-sequence=false: Error response from daemon: network with name <p>-dup already exists",
		"remove none: not-found=false conflict=false in-use=false out-of-sequence=false: Error response from daemon: none is a pre-defined network and cannot be removed",
	},
}, {
	name: "tasks and their containers",
	run: func(t *testing.T, ctx context.Context, w *parityWorld) []string {
		net := w.network(t, ctx, "tasknet")
		id := w.service(t, ctx, w.spec("tasks", w.name("tasknet")))
		var tasks []swarm.Task
		eventually(t, "a running task", func() bool {
			var err error
			tasks, err = w.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
				filters.Arg("service", w.name("tasks")), filters.Arg("desired-state", "running"))})
			if err != nil {
				t.Fatal(err)
			}
			return len(tasks) == 1 && tasks[0].Status.State == swarm.TaskStateRunning
		})
		var cs []container.Summary
		eventually(t, "the task's container", func() bool {
			var err error
			cs, err = w.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("network", net))})
			if err != nil {
				t.Fatal(err)
			}
			return len(cs) == 1
		})
		task := tasks[0]
		var attached []string
		for _, a := range task.NetworksAttachments {
			attached = append(attached, fmt.Sprintf("%s(%s, %d addresses)", a.Network.ID, a.Network.Spec.Name, len(a.Addresses)))
		}
		return []string{
			w.redact(fmt.Sprintf("task: service %s slot %d desired %s spec networks %v", task.ServiceID, task.Slot, task.DesiredState, task.Spec.Networks)),
			w.redact(fmt.Sprintf("attachments: %v", attached)),
			w.redact(fmt.Sprintf("container on the network: service %s, task %v, networks %d",
				cs[0].Labels["com.docker.swarm.service.id"], cs[0].Labels["com.docker.swarm.task.id"] == task.ID, len(cs[0].NetworkSettings.Networks))),
			w.redact(fmt.Sprintf("same as service: %v", task.ServiceID == id)),
		}
	},
	want: []string{
		"task: service <svc:tasks> slot 1 desired running spec networks [{<net:tasknet> [] map[]}]",
		"attachments: [<net:tasknet>(<p>-tasknet, 1 addresses)]",
		"container on the network: service <svc:tasks>, task true, networks 1",
		"same as service: true",
	},
}, {
	name: "network events",
	run: func(t *testing.T, ctx context.Context, w *parityWorld) []string {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		msgs, errs := w.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
			filters.Arg("type", "network"), filters.Arg("network", w.name("evnet")))})
		id := w.network(t, ctx, "evnet")
		if err := w.NetworkRemove(ctx, id); err != nil {
			t.Fatal(err)
		}
		var seen []string
		timeout := time.After(30 * time.Second)
		for done := false; !done; {
			select {
			case m := <-msgs:
				seen = append(seen, w.redact(fmt.Sprintf("%s %s %s %s scope=%s", m.Type, m.Action, m.Actor.ID, m.Actor.Attributes["name"], m.Scope)))
				done = m.Action == events.ActionRemove
			case err := <-errs:
				t.Fatal(err)
			case <-timeout:
				t.Fatalf("timed out after %v", seen)
			}
		}
		return seen
	},
	want: []string{
		"network create <net:evnet> <p>-evnet scope=swarm",
		"network update <net:evnet> <p>-evnet scope=swarm",
		"network remove <net:evnet> <p>-evnet scope=swarm",
	},
}, {
	name: "service events",
	run: func(t *testing.T, ctx context.Context, w *parityWorld) []string {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		msgs, errs := w.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
			filters.Arg("type", "service"), filters.Arg("service", w.name("evsvc")))})
		id := w.service(t, ctx, w.spec("evsvc"))
		// A label change does not touch tasks: one write, no rolling update.
		eventually(t, "a label update", func() bool {
			svc := mustInspect(t, w, id)
			svc.Spec.Labels["touched"] = "1"
			_, err := w.ServiceUpdate(ctx, id, svc.Version, svc.Spec, swarm.ServiceUpdateOptions{})
			if err != nil && !dockerapi.IsOutOfSequence(err) {
				t.Fatal(err)
			}
			return err == nil
		})
		if err := w.removeService(ctx, id); err != nil {
			t.Fatal(err)
		}
		var seen []string
		timeout := time.After(30 * time.Second)
		for done := false; !done; {
			select {
			case m := <-msgs:
				seen = append(seen, w.redact(fmt.Sprintf("%s %s %s %v scope=%s", m.Type, m.Action, m.Actor.ID, m.Actor.Attributes, m.Scope)))
				done = m.Action == events.ActionRemove
			case err := <-errs:
				t.Fatal(err)
			case <-timeout:
				t.Fatalf("timed out after %v", seen)
			}
		}
		return seen
	},
	want: []string{
		"service create <svc:evsvc> map[name:<p>-evsvc] scope=swarm",
		"service update <svc:evsvc> map[name:<p>-evsvc] scope=swarm",
		"service remove <svc:evsvc> map[name:<p>-evsvc] scope=swarm",
	},
}, {
	// Records of what to restore are configs: a pass re-reads them when
	// one of swarmsec's changes. A filter on another type's name leaves
	// them out.
	name: "config events",
	run: func(t *testing.T, ctx context.Context, w *parityWorld) []string {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		msgs, errs := w.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
			filters.Arg("type", "config"), filters.Arg("config", w.name("evcfg")))})
		svcFilter, svcErrs := w.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
			filters.Arg("type", "config"), filters.Arg("service", w.name("evsvc-other")))})
		resp, err := w.ConfigCreate(ctx, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: w.name("evcfg"), Labels: w.labels()}, Data: []byte("{}")})
		if err != nil {
			t.Fatal(err)
		}
		w.redactions = append([]string{resp.ID, "<cfg:evcfg>"}, w.redactions...)
		w.redactions = append(w.redactions, w.prefix(), "<p>")
		cfgs, err := w.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(filters.Arg("id", resp.ID))})
		if err != nil || len(cfgs) != 1 {
			t.Fatalf("config list: %v, %d configs", err, len(cfgs))
		}
		labels := w.labels()
		labels["touched"] = "1"
		if err := w.ConfigUpdate(ctx, resp.ID, cfgs[0].Version, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: w.name("evcfg"), Labels: labels}, Data: []byte("{}")}); err != nil {
			t.Fatal(err)
		}
		if err := w.ConfigRemove(ctx, resp.ID); err != nil {
			t.Fatal(err)
		}
		var seen []string
		timeout := time.After(30 * time.Second)
		for done := false; !done; {
			select {
			case m := <-msgs:
				seen = append(seen, w.redact(fmt.Sprintf("%s %s %s %v scope=%s", m.Type, m.Action, m.Actor.ID, m.Actor.Attributes, m.Scope)))
				done = m.Action == events.ActionRemove
			case err := <-errs:
				t.Fatal(err)
			case <-timeout:
				t.Fatalf("timed out after %v", seen)
			}
		}
		select {
		case m := <-svcFilter:
			seen = append(seen, w.redact(fmt.Sprintf("with a service filter: %s %s", m.Type, m.Action)))
		case err := <-svcErrs:
			t.Fatal(err)
		case <-time.After(500 * time.Millisecond):
			seen = append(seen, "with a service filter: none")
		}
		return seen
	},
	want: []string{
		"config create <cfg:evcfg> map[name:<p>-evcfg] scope=swarm",
		"config update <cfg:evcfg> map[name:<p>-evcfg] scope=swarm",
		"config remove <cfg:evcfg> map[name:<p>-evcfg] scope=swarm",
		"with a service filter: none",
	},
}, {
	// Between full lists, a pass re-reads alone the objects an event
	// named: what it keeps must be what the list shows, for a network
	// idle or instantiated on this node by a task, for ingress, and for a
	// service.
	name: "objects inspected alone are as listed",
	run: func(t *testing.T, ctx context.Context, w *parityWorld) []string {
		id := w.network(t, ctx, "asl")
		enc, err := w.tryNetwork(t, ctx, "asl-enc", network.CreateOptions{Driver: "overlay", Internal: true, Options: map[string]string{"encrypted": "true"}})
		if err != nil {
			t.Fatal(err)
		}
		lines := []string{w.sameNetwork(t, ctx, "idle", id), w.sameNetwork(t, ctx, "encrypted", enc)}
		svc := w.service(t, ctx, w.spec("asl", w.name("asl")))
		w.runningTask(t, ctx, "asl")
		lines = append(lines, w.sameNetwork(t, ctx, "a task here", id))
		ingress, err := w.NetworkInspect(ctx, "ingress", network.InspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, w.sameNetwork(t, ctx, "ingress", ingress.ID))
		list, err := w.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("id", svc))})
		if err != nil || len(list) != 1 {
			t.Fatalf("service list: %v, %d services", err, len(list))
		}
		alone := mustInspect(t, w, svc)
		lines = append(lines, fmt.Sprintf("service: same spec %v, version %v, update status %v", jsonEqual(list[0].Spec, alone.Spec),
			list[0].Version == alone.Version, jsonEqual(list[0].UpdateStatus, alone.UpdateStatus)))
		return lines
	},
	want: []string{
		"network idle: same",
		"network encrypted: same",
		"network a task here: same",
		"network ingress: same",
		"service: same spec true, version true, update status true",
	},
}, {
	// What a migration reads while it moves services to new networks.
	name: "update status, service status and tasks across a network change",
	run: func(t *testing.T, ctx context.Context, w *parityWorld) []string {
		w.network(t, ctx, "us-a")
		w.network(t, ctx, "us-b")
		one := w.spec("us-one", w.name("us-a"))
		one.Mode.Replicated = &swarm.ReplicatedService{Replicas: ptr[uint64](1)}
		// The engine waits this long after the new task runs before it
		// calls the update completed (5s by default).
		one.UpdateConfig = &swarm.UpdateConfig{Monitor: 100 * time.Millisecond}
		zero := w.spec("us-zero", w.name("us-a"))
		zero.Mode.Replicated = &swarm.ReplicatedService{Replicas: ptr[uint64](0)}
		idOne, idZero := w.service(t, ctx, one), w.service(t, ctx, zero)
		first := w.runningTask(t, ctx, "us-one")

		var lines []string
		for _, id := range []string{idOne, idZero} {
			svc := mustInspect(t, w, id)
			lines = append(lines, w.redact(fmt.Sprintf("%s before any update: update status %v", svc.Spec.Name, svc.UpdateStatus)))
		}
		uc := mustInspect(t, w, idOne).Spec.UpdateConfig
		lines = append(lines, fmt.Sprintf("stored update config: parallelism %d failure action %q order %q monitor %v",
			uc.Parallelism, uc.FailureAction, uc.Order, uc.Monitor))
		if rp := mustInspect(t, w, idZero).Spec.TaskTemplate.RestartPolicy; rp.MaxAttempts != nil {
			lines = append(lines, fmt.Sprintf("stored restart policy: condition %s, max attempts %d", rp.Condition, *rp.MaxAttempts))
		} else {
			lines = append(lines, fmt.Sprintf("stored restart policy: condition %s, max attempts unset", rp.Condition))
		}
		if sc := mustInspect(t, w, idZero).Spec.UpdateConfig; sc != nil {
			lines = append(lines, fmt.Sprintf("stored update config of a spec without one: %+v", *sc))
		} else {
			lines = append(lines, "stored update config of a spec without one: none")
		}
		lines = append(lines, w.statusLines(t, ctx, "us-")...)

		toB := func(s *swarm.ServiceSpec) {
			s.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: w.name("us-b")}}
		}
		if err := w.update(t, ctx, idZero, toB); err != nil {
			t.Fatal(err)
		}
		if err := w.update(t, ctx, idOne, toB); err != nil {
			t.Fatal(err)
		}
		var svc swarm.Service
		eventually(t, "the update to complete", func() bool {
			svc = mustInspect(t, w, idOne)
			return svc.UpdateStatus != nil && svc.UpdateStatus.State == swarm.UpdateStateCompleted
		})
		st := svc.UpdateStatus
		lines = append(lines, w.redact(fmt.Sprintf("%s after the update: %s %q, started %v, completed %v",
			svc.Spec.Name, st.State, st.Message, st.StartedAt != nil, st.CompletedAt != nil && !st.CompletedAt.Before(*st.StartedAt))))
		// The zero-replica service was updated first: the engine is done with it.
		svc = mustInspect(t, w, idZero)
		lines = append(lines, w.redact(fmt.Sprintf("%s after the update: update status %v, VIP on %v",
			svc.Spec.Name, svc.UpdateStatus, svc.Endpoint.VirtualIPs[0].NetworkID)))

		running := w.runningTask(t, ctx, "us-one")
		lines = append(lines, w.redact(fmt.Sprintf("running now: slot %d, %s, spec networks %v, a new task %v",
			running.Slot, running.Status.State, targets(running.Spec.Networks), running.ID != first.ID)))
		var all []swarm.Task
		eventually(t, "the old task to shut down", func() bool {
			all = w.taskList(t, ctx, filters.Arg("service", idOne))
			return len(all) == 2 && all[0].Status.State == swarm.TaskStateShutdown
		})
		for _, task := range all {
			lines = append(lines, w.redact(fmt.Sprintf("task %v: slot %d, desired %s, state %s, spec networks %v",
				map[string]string{first.ID: "first", running.ID: "second"}[task.ID], task.Slot, task.DesiredState, task.Status.State, targets(task.Spec.Networks))))
		}
		lines = append(lines, w.statusLines(t, ctx, "us-")...)
		plain, err := w.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("name", w.name("us-")))})
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("listed without Status: %d services, a status on %d",
			len(plain), len(slices.DeleteFunc(plain, func(s swarm.Service) bool { return s.ServiceStatus == nil }))))
		return lines
	},
	want: []string{
		"<p>-us-one before any update: update status <nil>",
		"<p>-us-zero before any update: update status <nil>",
		`stored update config: parallelism 0 failure action "pause" order "stop-first" monitor 100ms`,
		"stored restart policy: condition none, max attempts 0",
		"stored update config of a spec without one: none",
		"status of <p>-us-one: desired 1 running 1 completed 0",
		"status of <p>-us-zero: desired 0 running 0 completed 0",
		`<p>-us-one after the update: completed "update completed", started true, completed true`,
		"<p>-us-zero after the update: update status <nil>, VIP on <net:us-b>",
		"running now: slot 1, running, spec networks [<net:us-b>], a new task true",
		"task first: slot 1, desired shutdown, state shutdown, spec networks [<net:us-a>]",
		"task second: slot 1, desired running, state running, spec networks [<net:us-b>]",
		"status of <p>-us-one: desired 1 running 1 completed 0",
		"status of <p>-us-zero: desired 0 running 0 completed 0",
		"listed without Status: 2 services, a status on 0",
	},
}, {
	name: "IPAM subnets",
	run: func(t *testing.T, ctx context.Context, w *parityWorld) []string {
		// A /24 of its own for the run, and its lower half.
		sub := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(160 + rand.IntN(32)), byte(rand.IntN(256)), 0}), 24)
		half := netip.PrefixFrom(sub.Addr(), 25)
		gw := netip.AddrFrom4([4]byte{sub.Addr().As4()[0], sub.Addr().As4()[1], sub.Addr().As4()[2], 254})
		known := map[string]string{sub.String(): "<sub>", half.String(): "<half>", gw.String(): "<sub .254>", sub.Addr().Next().String(): "<sub .1>"}
		configs := func(cs []network.IPAMConfig) string {
			out := []string{}
			for _, c := range cs {
				s := fmt.Sprintf("subnet %s gateway %s", cmp.Or(known[c.Subnet], c.Subnet), cmp.Or(known[c.Gateway], c.Gateway))
				if c.IPRange != "" || len(c.AuxAddress) > 0 {
					s += fmt.Sprintf(" range %q aux %v", c.IPRange, c.AuxAddress)
				}
				out = append(out, s)
			}
			return "[" + strings.Join(out, ", ") + "]"
		}
		inspect := func(id string) network.Inspect {
			in, err := w.NetworkInspect(ctx, id, network.InspectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return in
		}
		listed := func(short string) network.Summary {
			l, err := w.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", w.name(short)))})
			if err != nil || len(l) != 1 {
				t.Fatalf("list %s: %v %v", short, l, err)
			}
			return l[0]
		}
		describe := func(what string, in network.Inspect) string {
			return fmt.Sprintf("%s: driver %q, IPAM driver %q, configs %s, options %d, labels %d", what, in.Driver, in.IPAM.Driver, configs(in.IPAM.Config), len(in.Options), len(in.Labels))
		}
		overlayWith := func(cs ...network.IPAMConfig) network.CreateOptions {
			o := network.CreateOptions{Driver: "overlay", Attachable: true, Options: map[string]string{"encrypted": ""}}
			if len(cs) > 0 {
				o.IPAM = &network.IPAM{Config: cs}
			}
			return o
		}
		mustNet := func(id string, err error) string {
			if err != nil {
				t.Fatal(err)
			}
			return id
		}

		set := mustNet(w.tryNetwork(t, ctx, "ipam-set", overlayWith(network.IPAMConfig{Subnet: sub.String(), Gateway: gw.String()})))
		auto := mustNet(w.tryNetwork(t, ctx, "ipam-auto", overlayWith()))
		over, errOver := w.tryNetwork(t, ctx, "ipam-over", overlayWith(network.IPAMConfig{Subnet: half.String()}))
		lines := []string{w.kindLine("create on a subnet overlapping another's", errOver)}
		if errOver != nil {
			return lines
		}
		// Swarm's allocator takes networks in order: once a later one has
		// its subnet, it has been through the overlapping one.
		after := mustNet(w.tryNetwork(t, ctx, "ipam-after", overlayWith()))
		eventually(t, "a subnet for the later network", func() bool { return len(inspect(after).IPAM.Config) > 0 })

		lines = append(lines, describe("explicit", inspect(set)))
		l := listed("ipam-set")
		lines = append(lines, fmt.Sprintf("explicit, listed: driver %q, configs %s", l.Driver, configs(l.IPAM.Config)))
		a := inspect(auto)
		if len(a.IPAM.Config) != 1 {
			t.Fatalf("automatic IPAM: %+v", a.IPAM)
		}
		asub, err := netip.ParsePrefix(a.IPAM.Config[0].Subnet)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("automatic: driver %q, IPAM driver %q, a /%d, gateway its first address %v, overlaps the explicit one %v",
			a.Driver, a.IPAM.Driver, asub.Bits(), a.IPAM.Config[0].Gateway == asub.Addr().Next().String(), asub.Overlaps(sub)))
		lines = append(lines, describe("overlapping", inspect(over)))
		l = listed("ipam-over")
		lines = append(lines, fmt.Sprintf("overlapping, listed: driver %q, configs %s", l.Driver, configs(l.IPAM.Config)))

		// A service on it waits, its task never scheduled, until the
		// network has a subnet; one created after it on another runs.
		user := w.spec("ipam-user", w.name("ipam-over"))
		idUser := w.service(t, ctx, user)
		w.service(t, ctx, w.spec("ipam-later", w.name("ipam-after")))
		w.runningTask(t, ctx, "ipam-later")
		var waiting []swarm.Task
		eventually(t, "a task for the waiting service", func() bool {
			waiting = w.taskList(t, ctx, filters.Arg("service", idUser))
			return len(waiting) == 1
		})
		wt := waiting[0]
		lines = append(lines, fmt.Sprintf("waiting task: desired %s, state %s %q, on a node %v, attachments %d",
			wt.DesiredState, wt.Status.State, wt.Status.Message, wt.NodeID != "", len(wt.NetworksAttachments)))
		lines = append(lines, fmt.Sprintf("waiting service: VIPs %d", len(mustInspect(t, w, idUser).Endpoint.VirtualIPs)))
		lines = append(lines, w.statusLines(t, ctx, "ipam-user")...)

		// Once the explicit one is gone, Swarm allocates the waiting one.
		if err := w.NetworkRemove(ctx, set); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the overlapping network's subnet", func() bool { return len(inspect(over).IPAM.Config) > 0 })
		in := inspect(over)
		_, encrypted := in.Options["encrypted"]
		lines = append(lines, fmt.Sprintf("overlapping, after the explicit one is gone: driver %q, configs %s, encrypted %v",
			in.Driver, strings.ReplaceAll(configs(in.IPAM.Config), "<sub .1>", "<half .1>"), encrypted))
		now := w.runningTask(t, ctx, "ipam-user")
		lines = append(lines, fmt.Sprintf("the waiting task: %s, the same task %v, VIPs %d", now.Status.State, now.ID == wt.ID,
			len(mustInspect(t, w, idUser).Endpoint.VirtualIPs)))

		// A local network may not overlap another local one, nor a Swarm
		// network instantiated here (a task of this node uses it), but it
		// may overlap a Swarm network that is not.
		bridge := func(p netip.Prefix) network.CreateOptions {
			return network.CreateOptions{Driver: "bridge", IPAM: &network.IPAM{Config: []network.IPAMConfig{{Subnet: p.String()}}}}
		}
		_, err = w.tryNetwork(t, ctx, "ipam-br-a", bridge(asub))
		lines = append(lines, w.kindLine("local network on the subnet of a Swarm network unused here", err))
		_, err = w.tryNetwork(t, ctx, "ipam-br-b", bridge(half))
		lines = append(lines, w.kindLine("local network on the subnet of a Swarm network a task here uses", err))
		_, err = w.tryNetwork(t, ctx, "ipam-br-c", bridge(netip.PrefixFrom(asub.Addr(), 25)))
		lines = append(lines, w.kindLine("local network overlapping a local one", err))
		return lines
	},
	want: []string{
		"create on a subnet overlapping another's: ok",
		`explicit: driver "overlay", IPAM driver "default", configs [subnet <sub> gateway <sub .254>], options 2, labels 2`,
		`explicit, listed: driver "overlay", configs [subnet <sub> gateway <sub .254>]`,
		`automatic: driver "overlay", IPAM driver "default", a /24, gateway its first address true, overlaps the explicit one false`,
		`overlapping: driver "", IPAM driver "", configs [], options 0, labels 2`,
		`overlapping, listed: driver "", configs []`,
		`waiting task: desired running, state new "created", on a node false, attachments 0`,
		"waiting service: VIPs 0",
		"status of <p>-ipam-user: desired 1 running 0 completed 0",
		`overlapping, after the explicit one is gone: driver "overlay", configs [subnet <half> gateway <half .1>], encrypted true`,
		"the waiting task: running, the same task true, VIPs 1",
		"local network on the subnet of a Swarm network unused here: ok",
		"local network on the subnet of a Swarm network a task here uses: permission-denied: Error response from daemon: Pool overlaps with other one on this address space",
		"local network overlapping a local one: permission-denied: Error response from daemon: Pool overlaps with other one on this address space",
	},
}, {
	name: "published port conflicts",
	run: func(t *testing.T, ctx context.Context, w *parityWorld) []string {
		p, q := freePort(t), freePort(t)
		for p == q {
			q = freePort(t)
		}
		w.redactions = append(w.redactions, fmt.Sprintf("'%d'", p), "'<P>'", fmt.Sprintf("'%d'", q), "'<Q>'")
		port := func(mode swarm.PortConfigPublishMode, n uint32) swarm.PortConfig {
			return swarm.PortConfig{TargetPort: 80, PublishedPort: n, PublishMode: mode}
		}
		spec := func(short string, replicas uint64, ports ...swarm.PortConfig) swarm.ServiceSpec {
			s := w.spec(short)
			s.Mode.Replicated = &swarm.ReplicatedService{Replicas: ptr(replicas)}
			if len(ports) > 0 {
				s.EndpointSpec = &swarm.EndpointSpec{Ports: ports}
			}
			return s
		}
		try := func(s swarm.ServiceSpec) error { _, err := w.tryService(t, ctx, s); return err }

		// Ingress ports are the Swarm's: one service each.
		w.service(t, ctx, spec("pt-ing", 0, port(swarm.PortConfigPublishModeIngress, q)))
		lines := []string{w.kindLine("another service on the ingress port", try(spec("pt-ing2", 0, port(swarm.PortConfigPublishModeIngress, q))))}
		plain := w.service(t, ctx, spec("pt-plain", 0))
		lines = append(lines, w.kindLine("an update onto the ingress port", w.update(t, ctx, plain, func(s *swarm.ServiceSpec) {
			s.EndpointSpec = &swarm.EndpointSpec{Ports: []swarm.PortConfig{port(swarm.PortConfigPublishModeIngress, q)}}
		})))
		lines = append(lines, w.kindLine("host mode on the ingress port", try(spec("pt-hostq", 0, port(swarm.PortConfigPublishModeHost, q)))))
		udp := port(swarm.PortConfigPublishModeIngress, q)
		udp.Protocol = swarm.PortConfigProtocolUDP
		lines = append(lines, w.kindLine("the ingress port in UDP", try(spec("pt-udp", 0, udp))))

		// Host-mode ports are the node's: the API takes two services on
		// one, the scheduler places one task per node.
		h1 := w.service(t, ctx, spec("pt-host1", 1, port(swarm.PortConfigPublishModeHost, p)))
		w.runningTask(t, ctx, "pt-host1")
		lines = append(lines, w.kindLine("ingress on the host-mode port", try(spec("pt-ingp", 0, port(swarm.PortConfigPublishModeIngress, p)))))
		lines = append(lines, w.kindLine("another service on the host-mode port", try(spec("pt-host2", 1, port(swarm.PortConfigPublishModeHost, p)))))
		var pending swarm.Task
		eventually(t, "pt-host2's task to be refused a node", func() bool {
			ts := w.taskList(t, ctx, filters.Arg("service", w.name("pt-host2")))
			if len(ts) == 1 {
				pending = ts[0]
			}
			return len(ts) == 1 && pending.Status.State == swarm.TaskStatePending && pending.Status.Err != ""
		})
		lines = append(lines, fmt.Sprintf("its task: desired %s, state %s %q, error %q, on a node %v, ports %d",
			pending.DesiredState, pending.Status.State, pending.Status.Message, pending.Status.Err, pending.NodeID != "", len(pending.Status.PortStatus.Ports)))
		lines = append(lines, w.statusLines(t, ctx, "pt-host")...)
		if err := w.removeService(ctx, h1); err != nil {
			t.Fatal(err)
		}
		now := w.runningTask(t, ctx, "pt-host2")
		lines = append(lines, fmt.Sprintf("once pt-host1 is gone: %s, the same task %v, error %q, on a node %v",
			now.Status.State, now.ID == pending.ID, now.Status.Err, now.NodeID != ""))
		return lines
	},
	want: []string{
		"another service on the ingress port: invalid-argument: Error response from daemon: rpc error: code = InvalidArgument desc = port '<Q>' is already in use by service '<p>-pt-ing' (<svc:pt-ing>) as an ingress port",
		"an update onto the ingress port: invalid-argument: Error response from daemon: rpc error: code = InvalidArgument desc = port '<Q>' is already in use by service '<p>-pt-ing' (<svc:pt-ing>) as an ingress port",
		"host mode on the ingress port: invalid-argument: Error response from daemon: rpc error: code = InvalidArgument desc = port '<Q>' is already in use by service '<p>-pt-ing' (<svc:pt-ing>) as an ingress port",
		"the ingress port in UDP: ok",
		"ingress on the host-mode port: invalid-argument: Error response from daemon: rpc error: code = InvalidArgument desc = port '<P>' is already in use by service '<p>-pt-host1' (<svc:pt-host1>) as a host-published port",
		"another service on the host-mode port: ok",
		`its task: desired running, state pending "pending task scheduling", error "no suitable node (host-mode port already in use on 1 node)", on a node false, ports 0`,
		"status of <p>-pt-host1: desired 1 running 1 completed 0",
		"status of <p>-pt-host2: desired 1 running 0 completed 0",
		`once pt-host1 is gone: running, the same task true, error "", on a node true`,
	},
}, {
	name: "configs hold records a service update cannot reach",
	run: func(t *testing.T, ctx context.Context, w *parityWorld) []string {
		name := w.name("record")
		labels := w.labels()
		labels["swarmsec.io/purpose"] = "original"
		t.Cleanup(func() { _ = w.ConfigRemove(context.WithoutCancel(ctx), name) })
		resp, err := w.ConfigCreate(ctx, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: name, Labels: labels}, Data: []byte(`{"a":1}`)})
		if err != nil {
			t.Fatal(err)
		}
		_, dup := w.ConfigCreate(ctx, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: name, Labels: labels}, Data: []byte(`{}`)})
		list, err := w.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(
			filters.Arg("label", "swarmsec.test.run="+w.run), filters.Arg("label", "swarmsec.io/purpose=original"))})
		if err != nil {
			t.Fatal(err)
		}
		var listed []string
		for _, c := range list {
			listed = append(listed, fmt.Sprintf("%s %s labels=%d", strings.ReplaceAll(c.Spec.Name, w.run, "r1"), c.Spec.Data, len(c.Spec.Labels)))
		}
		// The leader lease: labels change with the version read.
		read := list[0]
		relabel := func(v swarm.Version, data []byte, holder string) error {
			l := maps.Clone(read.Spec.Labels)
			l["holder"] = holder
			return w.ConfigUpdate(ctx, resp.ID, v, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: name, Labels: l}, Data: data})
		}
		first := relabel(read.Version, read.Spec.Data, "a")
		stale := relabel(read.Version, read.Spec.Data, "b")
		after, err := w.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(filters.Arg("label", "swarmsec.test.run="+w.run))})
		if err != nil || len(after) != 1 {
			t.Fatalf("list after the updates: %v %v", after, err)
		}
		dataChange := relabel(after[0].Version, []byte("other"), "c")
		removed := w.ConfigRemove(ctx, resp.ID)
		again := w.ConfigRemove(ctx, resp.ID)
		w.redactions = append(w.redactions, resp.ID, "<config>")
		return []string{
			"listed: " + strings.Join(listed, "; "),
			w.errLine("create again", dup),
			w.errLine("update with the version read", first),
			w.errLine("update with that version again", stale),
			w.kindLine("update changing the data", dataChange),
			fmt.Sprintf("holder after: %s, version moved: %v", after[0].Spec.Labels["holder"], after[0].Version.Index > read.Version.Index),
			w.errLine("remove", removed),
			w.errLine("remove again", again),
		}
	},
	want: []string{
		`listed: swarmsec-test-r1-record {"a":1} labels=3`,
		"create again: not-found=false conflict=true in-use=false out-of-sequence=false: Error response from daemon: rpc error: code = AlreadyExists desc = config swarmsec-test-r1-record already exists",
		"update with the version read: ok",
		"update with that version again: not-found=false conflict=false in-use=false out-of-sequence=true: Error response from daemon: rpc error: code = Unknown desc = update out of sequence",
		"update changing the data: invalid-argument: Error response from daemon: rpc error: code = InvalidArgument desc = only updates to Labels are allowed",
		"holder after: a, version moved: true",
		"remove: ok",
		"remove again: not-found=true conflict=false in-use=false out-of-sequence=false: Error response from daemon: config <config> not found",
	},
}}

func runParityScenarios(t *testing.T, newWorld func(t *testing.T) *parityWorld) {
	for _, sc := range parityScenarios {
		t.Run(sc.name, func(t *testing.T) {
			w := newWorld(t)
			got := sc.run(t, context.Background(), w)
			// Transcripts name the run "r1", whatever it really is.
			for i := range got {
				got[i] = strings.ReplaceAll(got[i], w.run, "r1")
			}
			if !slices.Equal(got, sc.want) {
				t.Errorf("transcript:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(sc.want, "\n"))
			}
		})
	}
}
