package reconciler

import (
	"context"
	"encoding/json"
	"fmt"
	v1 "github.com/swarmsec/swarmsec/api/v1"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/state"
)

// write makes one step's change. pending, when set, says why the step must
// wait for a later run (a network still held by tasks being replaced).
func (mg *Migrator) write(ctx context.Context, m *migration, st step) (wrote bool, pending string, err error) {
	switch st.kind {
	case kindCreateNetwork:
		if st.num == stepCreateTemp {
			return mg.createTemp(ctx, m)
		}
		return mg.createNew(ctx, m)
	case kindAttach:
		return mg.updateNetworks(ctx, st.service, func(as []swarm.NetworkAttachmentConfig) []swarm.NetworkAttachmentConfig {
			if onNetwork(as, st.network) >= 0 {
				return nil
			}
			// The service keeps its aliases (a stack's short names) and
			// driver options on the network that replaces the one it leaves.
			att := swarm.NetworkAttachmentConfig{Target: st.network.ID}
			if i := onNetwork(as, st.from); i >= 0 {
				att.Aliases, att.DriverOpts = as[i].Aliases, as[i].DriverOpts
			}
			return append(slices.Clone(as), att)
		})
	case kindDetach:
		return mg.updateNetworks(ctx, st.service, func(as []swarm.NetworkAttachmentConfig) []swarm.NetworkAttachmentConfig {
			i := onNetwork(as, st.network)
			if i < 0 {
				return nil
			}
			return slices.Delete(slices.Clone(as), i, i+1)
		})
	case kindRemoveNetwork:
		return mg.removeNetwork(ctx, st.network)
	}
	return false, "", fmt.Errorf("step kind %d cannot be written", st.kind)
}

// createTemp records the old network's settings on a temporary encrypted
// network with the same flags and driver options, but its own subnet: a
// task on both must not see one subnet twice.
func (mg *Migrator) createTemp(ctx context.Context, m *migration) (bool, string, error) {
	if names, err := mg.strangers(ctx, m.old); err != nil {
		return false, "", err
	} else if len(names) > 0 {
		return false, "", strangersError(m.old, names)
	}
	in, err := mg.Docker.NetworkInspect(ctx, m.old.ID, network.InspectOptions{})
	if err != nil {
		return false, "", fmt.Errorf("inspect network %s: %w", m.old.Name, err)
	}
	if in.ConfigFrom.Network != "" {
		return false, "", fmt.Errorf("%w: network %s takes its settings from config network %s (--config-from): recreate both by hand with --opt encrypted",
			ErrMigrationBlocked, in.Name, in.ConfigFrom.Network)
	}
	rec := newNetworkRecord(in)
	raw, err := json.Marshal(rec)
	if err != nil {
		return false, "", err
	}
	opts := network.CreateOptions{
		Driver: "overlay", Scope: "swarm", Internal: rec.Internal, Attachable: rec.Attachable,
		EnableIPv6: &rec.EnableIPv6, Options: encryptedOptions(rec.Options),
		Labels: map[string]string{
			v1.LabelManaged: "true", v1.LabelPurpose: PurposeMigration,
			LabelMigrating: m.name, LabelMigratedFrom: m.old.ID, LabelMigration: string(raw),
		},
	}
	if rec.IPAM != nil {
		opts.IPAM = &network.IPAM{Driver: rec.IPAM.Driver, Options: rec.IPAM.Options}
	}
	return mg.createNetwork(ctx, tempName(m.name), opts)
}

// createNew recreates the network under its own name, encrypted, with the
// labels (a stack's namespace label above all: `docker stack deploy` finds
// its networks by it), flags, options and subnet it had.
func (mg *Migrator) createNew(ctx context.Context, m *migration) (bool, string, error) {
	rec := m.rec
	labels := maps.Clone(rec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelMigratedFrom] = m.temp.Labels[LabelMigratedFrom]
	opts := network.CreateOptions{
		Driver: "overlay", Scope: "swarm", Internal: rec.Internal, Attachable: rec.Attachable,
		EnableIPv6: &rec.EnableIPv6, Options: encryptedOptions(rec.Options), Labels: labels, IPAM: rec.IPAM,
	}
	return mg.createNetwork(ctx, m.name, opts)
}

func encryptedOptions(opts map[string]string) map[string]string {
	out := maps.Clone(opts)
	if out == nil {
		out = map[string]string{}
	}
	out["encrypted"] = "true"
	return out
}

func (mg *Migrator) createNetwork(ctx context.Context, name string, opts network.CreateOptions) (bool, string, error) {
	_, err := mg.Docker.NetworkCreate(ctx, name, opts)
	switch {
	case err == nil:
		return true, "", nil
	case dockerapi.IsConflict(err):
		// Created by a run that died before it saw the answer, or by
		// someone else: the next observation tells which.
		return false, "", nil
	}
	return false, "", fmt.Errorf("create network %s: %w", name, err)
}

// updateNetworks changes a service's attachments, reading it afresh and
// retrying when Swarm moved its version on. change returns nil when there
// is nothing to do.
func (mg *Migrator) updateNetworks(ctx context.Context, svc *state.Service, change func([]swarm.NetworkAttachmentConfig) []swarm.NetworkAttachmentConfig) (bool, string, error) {
	backoff := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		cur, _, err := mg.Docker.ServiceInspectWithRaw(ctx, svc.ID, swarm.ServiceInspectOptions{})
		if err != nil {
			return false, "", fmt.Errorf("service %s: %w", svc.Name, err)
		}
		spec := cur.Spec
		as := spec.TaskTemplate.Networks
		if len(as) == 0 {
			as = spec.Networks //nolint:staticcheck // older services keep their networks there
		}
		next := change(as)
		if next == nil {
			return false, "", nil
		}
		spec.TaskTemplate.Networks = next
		spec.Networks = nil //nolint:staticcheck // moved to TaskTemplate.Networks, where Swarm wants it
		_, err = mg.Docker.ServiceUpdate(ctx, cur.ID, cur.Version, spec, swarm.ServiceUpdateOptions{})
		if err == nil {
			mg.updates++
			return true, "", nil
		}
		if !dockerapi.IsOutOfSequence(err) || attempt >= 5 {
			return false, "", fmt.Errorf("update service %s: %w", svc.Name, err)
		}
		select {
		case <-ctx.Done():
			return false, "", ctx.Err()
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

// removeNetwork removes a network once nothing holds it. Tasks being
// replaced let go soon: those are waited for. Containers attached outside
// any service never do by themselves: those block, named, and the network
// stays.
func (mg *Migrator) removeNetwork(ctx context.Context, n *state.Network) (bool, string, error) {
	deadline := time.Now().Add(mg.RemoveWait)
	delay := firstPoll
	for {
		err := mg.Docker.NetworkRemove(ctx, n.ID)
		switch {
		case err == nil || dockerapi.IsNotFound(err):
			// Swarm forgets it at once, but the engine lists it until
			// the tasks shutting down let go: a network of the same name
			// cannot be created before.
			if gone, gerr := mg.waitGone(ctx, n, deadline); gerr != nil || !gone {
				return err == nil, fmt.Sprintf("network %s is removed but still listed; the next pass goes on", n.Name), gerr
			}
			return err == nil, "", nil
		case !dockerapi.IsInUse(err):
			return false, "", fmt.Errorf("remove network %s: %w", n.Name, err)
		}
		names, lerr := mg.strangers(ctx, n)
		if lerr != nil {
			return false, "", lerr
		}
		if len(names) > 0 {
			return false, "", strangersError(n, names)
		}
		if time.Now().After(deadline) {
			if task := mg.strangerTask(ctx, err); task != "" {
				return false, "", fmt.Errorf("%w: network %s is held by task %s, which belongs to no service: a container attached outside any service (docker run --network) on another node; disconnect it (docker network disconnect) and swarmsec goes on",
					ErrMigrationBlocked, n.Name, task)
			}
			return false, fmt.Sprintf("network %s is still in use (%v); the next pass removes it", n.Name, err), nil
		}
		select {
		case <-ctx.Done():
			return false, "", ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, mg.poll())
	}
}

// waitGone waits until the engine no longer lists a removed network.
func (mg *Migrator) waitGone(ctx context.Context, n *state.Network, deadline time.Time) (bool, error) {
	delay := firstPoll
	for {
		nets, err := mg.Docker.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("id", n.ID))})
		if err != nil {
			return false, fmt.Errorf("list networks: %w", err)
		}
		if !slices.ContainsFunc(nets, func(s network.Summary) bool { return s.ID == n.ID }) {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, mg.poll())
	}
}

// strangers names the containers on this node attached to a network
// outside any service.
func (mg *Migrator) strangers(ctx context.Context, n *state.Network) ([]string, error) {
	cs, err := mg.Docker.ContainerList(ctx, container.ListOptions{Filters: filters.NewArgs(filters.Arg("network", n.ID))})
	if err != nil {
		return nil, fmt.Errorf("network %s: list containers: %w", n.Name, err)
	}
	var out []string
	for _, c := range cs {
		if _, task := c.Labels["com.docker.swarm.task.id"]; task {
			continue
		}
		name := c.ID[:min(12, len(c.ID))]
		if len(c.Names) > 0 {
			name = strings.TrimPrefix(c.Names[0], "/")
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out, nil
}

func strangersError(n *state.Network, names []string) error {
	return fmt.Errorf("%w: containers %s are attached to network %s outside any service (docker run --network); swarmsec does not disconnect them: disconnect them (docker network disconnect %s <container>) and swarmsec goes on",
		ErrMigrationBlocked, strings.Join(names, ", "), n.Name, n.Name)
}

var inUseByTask = regexp.MustCompile(`in use by task ([0-9a-z]+)`)

// strangerTask returns the task an in-use error names when Swarm knows no
// such task of a service: the attachment of a container started outside
// any service.
func (mg *Migrator) strangerTask(ctx context.Context, err error) string {
	match := inUseByTask.FindStringSubmatch(err.Error())
	if match == nil {
		return ""
	}
	tasks, lerr := mg.Docker.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("id", match[1]))})
	if lerr != nil || len(tasks) > 0 {
		return ""
	}
	return match[1]
}

// waitConverged waits until every task Swarm wants running for a service
// has the service's current networks.
func (mg *Migrator) waitConverged(ctx context.Context, id, name string) error {
	timeout := mg.ConvergeTimeout
	if timeout <= 0 {
		timeout = defaultConvergeTimeout
	}
	deadline := time.Now().Add(timeout)
	delay := firstPoll
	for {
		ok, why, err := mg.converged(ctx, id)
		switch {
		case err != nil:
			return fmt.Errorf("service %s: %w", name, err)
		case ok:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("service %s: rolling update not finished after %s: %s", name, timeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, mg.poll())
	}
}

// converged reports whether Swarm runs the service's current networks: as
// many tasks as it wants (the replicas, or one per eligible node), none on
// earlier networks. Right after an update the old tasks are already shut
// down and the new ones not yet created: counting catches that moment.
// Tasks need not have reached running: one that never starts talks to
// no one either way.
func (mg *Migrator) converged(ctx context.Context, id string) (bool, string, error) {
	svcs, err := mg.Docker.ServiceList(ctx, swarm.ServiceListOptions{Status: true, Filters: filters.NewArgs(filters.Arg("id", id))})
	if err != nil {
		return false, "", err
	}
	i := slices.IndexFunc(svcs, func(s swarm.Service) bool { return s.ID == id })
	if i < 0 {
		return true, "", nil // removed meanwhile: nothing to wait for
	}
	svc := svcs[i]
	if u := svc.UpdateStatus; u != nil && (u.State == swarm.UpdateStatePaused || u.State == swarm.UpdateStateRollbackPaused) {
		return false, "", fmt.Errorf("rolling update %s: %s", u.State, u.Message)
	}
	want := targets(svc.Spec.TaskTemplate.Networks)
	if len(want) == 0 {
		want = targets(svc.Spec.Networks) //nolint:staticcheck // older services
	}
	tasks, err := mg.Docker.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", id), filters.Arg("desired-state", "running"))})
	if err != nil {
		return false, "", err
	}
	current, stale := 0, 0
	for _, t := range tasks {
		if slices.Equal(targets(t.Spec.Networks), want) {
			current++
		} else {
			stale++
		}
	}
	switch {
	case stale > 0:
		return false, fmt.Sprintf("%d tasks still on the previous networks", stale), nil
	case svc.ServiceStatus != nil && uint64(current) < svc.ServiceStatus.DesiredTasks:
		return false, fmt.Sprintf("%d of %d tasks on the new networks", current, svc.ServiceStatus.DesiredTasks), nil
	}
	return true, "", nil
}

func targets(as []swarm.NetworkAttachmentConfig) []string {
	out := make([]string, 0, len(as))
	for _, a := range as {
		out = append(out, a.Target)
	}
	slices.Sort(out)
	return out
}
