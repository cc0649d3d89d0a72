package swarmtest

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// ServiceOpt adjusts the spec CreateService submits.
type ServiceOpt func(*swarm.ServiceSpec)

// WithName names the service (tasks.<name> then resolves to its tasks).
func WithName(name string) ServiceOpt { return func(s *swarm.ServiceSpec) { s.Name = name } }

// WithImage sets the image; without it CreateService uses BuildAppImage's.
func WithImage(ref string) ServiceOpt {
	return func(s *swarm.ServiceSpec) { s.TaskTemplate.ContainerSpec.Image = ref }
}

// WithCommand replaces the image's CMD (the app's default is "serve").
func WithCommand(args ...string) ServiceOpt {
	return func(s *swarm.ServiceSpec) { s.TaskTemplate.ContainerSpec.Args = args }
}

// WithServiceLabels adds labels to the service (the labels swarmsec's
// policies select on).
func WithServiceLabels(l map[string]string) ServiceOpt {
	return func(s *swarm.ServiceSpec) { maps.Copy(s.Labels, l) }
}

// WithContainerLabels adds labels to the service's task containers.
func WithContainerLabels(l map[string]string) ServiceOpt {
	return func(s *swarm.ServiceSpec) { maps.Copy(s.TaskTemplate.ContainerSpec.Labels, l) }
}

// WithReplicas sets a replicated service's number of tasks (default 1).
func WithReplicas(n uint64) ServiceOpt {
	return func(s *swarm.ServiceSpec) {
		s.Mode = swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &n}}
	}
}

// WithGlobal makes the service global: one task on each eligible node.
func WithGlobal() ServiceOpt {
	return func(s *swarm.ServiceSpec) { s.Mode = swarm.ServiceMode{Global: &swarm.GlobalService{}} }
}

// WithNetwork attaches the tasks to a network, by name or ID, with optional
// DNS aliases on it. Repeat for more networks.
func WithNetwork(name string, aliases ...string) ServiceOpt {
	return func(s *swarm.ServiceSpec) {
		s.TaskTemplate.Networks = append(s.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: name, Aliases: aliases})
	}
}

// WithPublishedPort publishes target (the app serves on AppPort) as
// published in the given mode. Without IPVS only swarm.PortConfigPublishModeHost
// answers.
func WithPublishedPort(published, target uint32, mode swarm.PortConfigPublishMode) ServiceOpt {
	return func(s *swarm.ServiceSpec) {
		if s.EndpointSpec == nil {
			s.EndpointSpec = &swarm.EndpointSpec{}
		}
		s.EndpointSpec.Ports = append(s.EndpointSpec.Ports, swarm.PortConfig{
			Protocol: swarm.PortConfigProtocolTCP, PublishedPort: published, TargetPort: target, PublishMode: mode,
		})
	}
}

// WithHostPort publishes the app's port in host mode on each node running a
// task.
func WithHostPort(published uint32) ServiceOpt {
	return WithPublishedPort(published, AppPort, swarm.PortConfigPublishModeHost)
}

// WithEndpointMode sets vip (Docker's default) or dnsrr. Without IPVS a VIP
// does not answer: probe tasks.<name>, or use dnsrr.
func WithEndpointMode(mode swarm.ResolutionMode) ServiceOpt {
	return func(s *swarm.ServiceSpec) {
		if s.EndpointSpec == nil {
			s.EndpointSpec = &swarm.EndpointSpec{}
		}
		s.EndpointSpec.Mode = mode
	}
}

// WithConstraint adds a placement constraint such as "node.role==worker".
func WithConstraint(expr string) ServiceOpt {
	return func(s *swarm.ServiceSpec) {
		p := s.TaskTemplate.Placement
		if p == nil {
			p = &swarm.Placement{}
			s.TaskTemplate.Placement = p
		}
		p.Constraints = append(p.Constraints, expr)
	}
}

// OnNode places every task on the node with this hostname.
func OnNode(hostname string) ServiceOpt { return WithConstraint("node.hostname==" + hostname) }

// CreateService creates a service running the test app, labeled for
// sweeping, and returns its ID. The service is removed when the test ends,
// after which the cleanup waits until none of its tasks runs, so that networks
// removed next are free. Defaults: one replica, the app image from
// BuildAppImage, Docker's endpoint mode (vip), a name derived from the
// test's.
func CreateService(ctx context.Context, tb testing.TB, cli *client.Client, opts ...ServiceOpt) string {
	tb.Helper()
	spec := ServiceSpec(opts...)
	if spec.Name == "" {
		spec.Name = defaultName(tb)
	}
	if spec.TaskTemplate.ContainerSpec.Image == "" {
		spec.TaskTemplate.ContainerSpec.Image = BuildAppImage(ctx, tb, cli)
	}
	resp, err := cli.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{})
	if err != nil {
		tb.Fatalf("create service %s: %v", spec.Name, err)
	}
	tb.Cleanup(func() {
		if err := RemoveServiceE(context.WithoutCancel(ctx), cli, resp.ID); err != nil {
			tb.Errorf("remove service %s: %v", spec.Name, err)
		}
	})
	return resp.ID
}

// ServiceSpec returns the spec CreateService would submit for opts, before
// the defaults that need the engine (name, image).
func ServiceSpec(opts ...ServiceOpt) swarm.ServiceSpec {
	one := uint64(1)
	grace := 2 * time.Second
	spec := swarm.ServiceSpec{
		Annotations: swarm.Annotations{Labels: Labels()},
		Mode:        swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Labels: Labels(), StopGracePeriod: &grace},
			// Restart quickly after a failure: tests wait for tasks.
			RestartPolicy: &swarm.RestartPolicy{Delay: ptr(time.Second)},
		},
		// Swarm's update defaults (one task at a time, stopped first), but
		// a monitor of 1 s instead of 5 s: each rolling update the tests
		// wait for (an apply's wave, a migration's step) ends 4 s sooner.
		UpdateConfig: &swarm.UpdateConfig{Parallelism: 1, Order: swarm.UpdateOrderStopFirst, Monitor: time.Second},
	}
	for _, opt := range opts {
		opt(&spec)
	}
	return spec
}

func ptr[T any](v T) *T { return &v }

// defaultName makes a service name from the test's: lower case, [a-z0-9-],
// at most 63 characters.
func defaultName(tb testing.TB) string {
	var b strings.Builder
	for _, r := range strings.ToLower(tb.Name()) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteRune('-')
		}
	}
	name := strings.Trim(b.String(), "-")
	suffix := "-" + strconv.FormatInt(time.Now().UnixNano()%1e6, 36)
	if len(name)+len(suffix) > 63 {
		name = name[:63-len(suffix)]
	}
	return name + suffix
}

// RemoveServiceE removes a service and waits until none of its tasks runs
// any more (their records may linger a few seconds; they hold no network).
// A service already gone counts as removed.
func RemoveServiceE(ctx context.Context, cli *client.Client, id string) error {
	if err := cli.ServiceRemove(ctx, id); err != nil && !cerrdefs.IsNotFound(err) {
		return err
	}
	return PollE(ctx, DefaultTimeout, func() (bool, string) {
		// The "service" filter fails once the service is gone: filter here.
		tasks, err := cli.TaskList(ctx, swarm.TaskListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var live []swarm.Task
		for _, t := range tasks {
			if t.ServiceID == id && !terminal(t.Status.State) {
				live = append(live, t)
			}
		}
		return len(live) == 0, fmt.Sprintf("%d tasks still up: %s", len(live), describeTasks(live))
	})
}

// terminal reports whether a task in this state has stopped for good.
func terminal(s swarm.TaskState) bool {
	switch s {
	case swarm.TaskStateComplete, swarm.TaskStateShutdown, swarm.TaskStateFailed,
		swarm.TaskStateRejected, swarm.TaskStateRemove, swarm.TaskStateOrphaned:
		return true
	}
	return false
}
