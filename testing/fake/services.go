package fake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
)

// HoldUpdates decides whether rolling updates stay in state "updating",
// with the old tasks running, until CompleteUpdates (true), or complete as
// soon as ServiceUpdate returns (false, the default).
func (f *Swarm) HoldUpdates(hold bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.holdUpdates = hold
}

// CompleteUpdates finishes every rolling update held so far: tasks are
// replaced and, once the new ones run, UpdateStatus becomes "completed" and,
// as Swarm writes the service to say so, its version moves on. An update
// whose new tasks cannot run (a network without a subnet) stays "updating".
func (f *Swarm) CompleteUpdates() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range sortedKeys(f.rolling) {
		delete(f.rolling, id)
		if svc := f.services[id]; svc != nil {
			f.reconcileTasksLocked(svc, true)
		}
	}
	f.settleLocked()
}

// FailUpdate makes a service's rolling update fail, held so far (see
// HoldUpdates), as Swarm's updater does when a new task fails under
// update_config's failure action: "rollback" puts back the spec the service
// had before the update (Swarm clears the previous spec then: a completed
// rollback cannot be rolled back) and rolls its tasks back, the update
// status going rollback_started, then rollback_completed once they run (at
// once unless updates are held); "pause" leaves the spec and the tasks as
// they are, the status "paused", until someone updates the service.
func (f *Swarm) FailUpdate(ref, action string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	svc, err := f.findServiceLocked(ref)
	if err != nil {
		return err
	}
	if st := svc.UpdateStatus; st == nil || st.State != swarm.UpdateStateUpdating || svc.PreviousSpec == nil {
		return fmt.Errorf("service %s has no rolling update in progress", svc.Spec.Name)
	}
	now := time.Now().UTC()
	st := &swarm.UpdateStatus{StartedAt: svc.UpdateStatus.StartedAt}
	task := "of a task"
	for _, id := range sortedKeys(f.tasks) {
		if t := f.tasks[id]; t.ServiceID == svc.ID && t.DesiredState == swarm.TaskStateRunning {
			task = "of task " + t.ID
			break
		}
	}
	switch action {
	case "rollback":
		st.State, st.Message = swarm.UpdateStateRollbackStarted, "update rolled back due to failure or early termination "+task
		svc.Spec, svc.PreviousSpec = *svc.PreviousSpec, nil
		if f.allocatableLocked(svc.Spec) {
			svc.Endpoint = f.endpointLocked(svc.Spec, svc.Endpoint)
			delete(f.waiting, svc.ID)
		}
	case "pause":
		st.State, st.Message, st.CompletedAt = swarm.UpdateStatePaused, "update paused due to failure or early termination "+task, &now
	default:
		return fmt.Errorf("failure action %q: want rollback or pause", action)
	}
	delete(f.rolling, svc.ID)
	svc.UpdateStatus = st
	f.writeServiceLocked(svc, map[string]string{"name": svc.Spec.Name, "updatestate.old": string(swarm.UpdateStateUpdating), "updatestate.new": string(st.State)})
	if action == "rollback" {
		if f.holdUpdates {
			f.rolling[svc.ID] = true
		} else {
			f.reconcileTasksLocked(svc, true)
		}
	}
	f.settleLocked()
	return nil
}

// AddService creates a service as `docker service create` would, and
// returns it as inspected. It panics if the engine would refuse the spec
// (unknown network, port conflict, duplicate name): seeds are test bugs.
func (f *Swarm) AddService(spec swarm.ServiceSpec) swarm.Service {
	if err := validateClientSpec(spec); err != nil {
		panic("fake.Swarm.AddService: " + err.Error())
	}
	spec = clone(spec)
	tagImage(&spec)
	f.mu.Lock()
	defer f.mu.Unlock()
	svc, err := f.createServiceLocked(spec)
	if err != nil {
		panic("fake.Swarm.AddService: " + err.Error())
	}
	return clone(*svc)
}

// UpdateService changes a service the way someone running `docker service
// update` would, to simulate drift: mutate edits a copy of the current
// spec, which is then written through the same path as ServiceUpdate, at
// the current version. mutate runs under the Fake's lock and must not call
// the Fake.
func (f *Swarm) UpdateService(id string, mutate func(*swarm.ServiceSpec)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	svc, err := f.findServiceLocked(id)
	if err != nil {
		return err
	}
	spec := clone(svc.Spec)
	mutate(&spec)
	if err := validateClientSpec(spec); err != nil {
		return err
	}
	spec = clone(spec)
	tagImage(&spec)
	return f.updateServiceLocked(svc.ID, svc.Version, spec, false)
}

// TouchService writes a service without changing its spec, moving its
// version on, as Swarm does on its own while it runs an update.
func (f *Swarm) TouchService(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	svc, err := f.findServiceLocked(id)
	if err != nil {
		return err
	}
	f.writeServiceLocked(svc, map[string]string{"name": svc.Spec.Name})
	return nil
}

// RemoveService removes a service and its tasks, as `docker service rm`.
func (f *Swarm) RemoveService(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	svc, err := f.findServiceLocked(id)
	if err != nil {
		return err
	}
	for tid, t := range f.tasks {
		if t.ServiceID == svc.ID {
			delete(f.tasks, tid)
		}
	}
	delete(f.services, svc.ID)
	delete(f.waiting, svc.ID)
	delete(f.rolling, svc.ID)
	f.index++
	f.publishLocked(events.ServiceEventType, events.ActionRemove, svc.ID, "swarm", map[string]string{"name": svc.Spec.Name})
	f.settleLocked() // its host-mode ports are free now
	return nil
}

// beforeServiceUpdate runs the BeforeServiceUpdate hook, without the lock.
func (f *Swarm) beforeServiceUpdate(ref string) func() error {
	return func() error {
		f.mu.Lock()
		hook := f.BeforeServiceUpdate
		f.mu.Unlock()
		if hook != nil {
			hook(ref)
		}
		return nil
	}
}

// ServiceList implements dockerapi.API. Filters as the engine: name and id are
// prefixes, label is key or key=value (all must match), mode is
// replicated or global.
func (f *Swarm) ServiceList(ctx context.Context, options swarm.ServiceListOptions) ([]swarm.Service, error) {
	unlock, err := f.swarmCall(ctx, dockerapi.OpServiceList)
	if err != nil {
		return nil, err
	}
	defer unlock()
	args := options.Filters
	if err := validateFilters(args, "id", "label", "mode", "name", "runtime"); err != nil {
		return nil, err
	}
	if args.Contains("runtime") {
		return nil, errFakeFilter("runtime")
	}
	out := []swarm.Service{}
	for _, id := range sortedKeys(f.services) {
		svc := f.services[id]
		if !matchPrefix(args, "id", svc.ID) || !matchPrefix(args, "name", svc.Spec.Name) ||
			!args.MatchKVList("label", svc.Spec.Labels) || !args.ExactMatch("mode", serviceMode(svc.Spec.Mode)) {
			continue
		}
		s := clone(*svc)
		if options.Status {
			s.ServiceStatus = f.serviceStatusLocked(svc)
		}
		out = append(out, s)
	}
	return out, nil
}

// ServiceInspectWithRaw implements API: by ID, name or unique ID prefix.
func (f *Swarm) ServiceInspectWithRaw(ctx context.Context, serviceID string, _ swarm.ServiceInspectOptions) (swarm.Service, []byte, error) {
	unlock, err := f.swarmCall(ctx, dockerapi.OpServiceInspectWithRaw, requireID(serviceID, "service"))
	if err != nil {
		return swarm.Service{}, nil, err
	}
	defer unlock()
	svc, err := f.findServiceLocked(strings.TrimSpace(serviceID))
	if err != nil {
		return swarm.Service{}, nil, err
	}
	raw, err := json.Marshal(svc)
	if err != nil {
		return swarm.Service{}, nil, err
	}
	var out swarm.Service
	err = json.Unmarshal(raw, &out)
	return out, raw, err
}

// ServiceUpdate implements dockerapi.API with the engine's checks, in its order:
// client-side spec checks, networks, the service itself, Swarm's own
// validation, then the version, which must be the current one.
func (f *Swarm) ServiceUpdate(ctx context.Context, serviceID string, version swarm.Version, spec swarm.ServiceSpec, options swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	unlock, err := f.swarmCall(ctx, dockerapi.OpServiceUpdate, f.beforeServiceUpdate(serviceID),
		requireID(serviceID, "service"), func() error { return validateClientSpec(spec) })
	if err != nil {
		return swarm.ServiceUpdateResponse{}, err
	}
	defer unlock()
	spec = clone(spec)
	tagImage(&spec)
	if err := f.updateServiceLocked(strings.TrimSpace(serviceID), version, spec, options.Rollback == "previous"); err != nil {
		return swarm.ServiceUpdateResponse{}, err
	}
	return swarm.ServiceUpdateResponse{}, nil
}

func (f *Swarm) createServiceLocked(spec swarm.ServiceSpec) (*swarm.Service, error) {
	if err := f.resolveNetworksLocked(&spec); err != nil {
		return nil, err
	}
	normalizeSpec(&spec)
	if err := validateSwarmSpec(spec); err != nil {
		return nil, err
	}
	if err := f.checkIngressLocked(spec); err != nil {
		return nil, err
	}
	for _, svc := range f.services {
		if svc.Spec.Name == spec.Name {
			return nil, dockerapi.NewDaemonError(http.StatusConflict, fmt.Sprintf("rpc error: code = AlreadyExists desc = name conflicts with an existing object: service %s already exists", spec.Name))
		}
	}
	if err := f.checkPortConflictsLocked(spec, ""); err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	f.index++
	svc := &swarm.Service{
		ID:   newSwarmID(),
		Meta: swarm.Meta{Version: swarm.Version{Index: f.index}, CreatedAt: now, UpdatedAt: now},
		Spec: spec,
	}
	if f.allocatableLocked(spec) {
		svc.Endpoint = f.endpointLocked(spec, swarm.Endpoint{})
	} else {
		f.waiting[svc.ID] = true
	}
	f.services[svc.ID] = svc
	f.publishLocked(events.ServiceEventType, events.ActionCreate, svc.ID, "swarm", map[string]string{"name": spec.Name})
	f.reconcileTasksLocked(svc, false)
	f.settleLocked()
	return svc, nil
}

func (f *Swarm) updateServiceLocked(ref string, version swarm.Version, spec swarm.ServiceSpec, rollback bool) error {
	if err := f.resolveNetworksLocked(&spec); err != nil {
		return err
	}
	svc, err := f.findServiceLocked(ref)
	if err != nil {
		return err
	}
	normalizeSpec(&spec)
	if err := validateSwarmSpec(spec); err != nil {
		return err
	}
	if err := f.checkIngressLocked(spec); err != nil {
		return err
	}
	if !jsonEqual(spec.EndpointSpec, svc.Spec.EndpointSpec) {
		if err := f.checkPortConflictsLocked(spec, svc.ID); err != nil {
			return err
		}
	}
	// ServiceSpec.Networks is deprecated, but older clients still send it
	// and the engine still honours it: the fake does as the engine does.
	if (len(spec.Networks) != 0 || len(svc.Spec.Networks) != 0) && !jsonEqual(spec.Networks, svc.Spec.Networks) && //nolint:staticcheck // SA1019: modelled for old clients
		jsonEqual(spec.TaskTemplate.Networks, svc.Spec.TaskTemplate.Networks) {
		return dockerapi.NewDaemonError(http.StatusNotImplemented, "rpc error: code = Unimplemented desc = networks must be migrated to TaskSpec before being changed")
	}
	if serviceMode(spec.Mode) != serviceMode(svc.Spec.Mode) {
		return dockerapi.NewDaemonError(http.StatusNotImplemented, "rpc error: code = Unimplemented desc = service mode change is not allowed")
	}
	if spec.Name != svc.Spec.Name {
		return dockerapi.NewDaemonError(http.StatusNotImplemented, "rpc error: code = Unimplemented desc = renaming services is not supported")
	}
	if version.Index != svc.Version.Index {
		return dockerapi.NewDaemonError(http.StatusInternalServerError, "rpc error: code = Unknown desc = update out of sequence")
	}

	old := svc.Spec
	if rollback {
		if svc.PreviousSpec == nil {
			return dockerapi.NewDaemonError(http.StatusPreconditionFailed, fmt.Sprintf("rpc error: code = FailedPrecondition desc = service %s does not have a previous spec", svc.ID))
		}
		spec = *svc.PreviousSpec
	}
	svc.PreviousSpec = &old
	svc.Spec = spec
	svc.UpdateStatus = nil
	delete(f.rolling, svc.ID)
	// Until its networks have subnets, the service keeps the endpoint it had.
	if f.allocatableLocked(spec) {
		svc.Endpoint = f.endpointLocked(spec, svc.Endpoint)
		delete(f.waiting, svc.ID)
	} else {
		f.waiting[svc.ID] = true
	}
	attrs := map[string]string{"name": spec.Name}
	if oi, ni := serviceImage(old), serviceImage(spec); oi != ni {
		attrs["image.old"], attrs["image.new"] = oi, ni
	}
	if or, nr := replicas(old), replicas(spec); or != nr {
		attrs["replicas.old"], attrs["replicas.new"] = or, nr
	}
	f.writeServiceLocked(svc, attrs)

	// Swarm rolls tasks when their spec or the endpoint changes, writing the
	// service again each time its update status moves. An update with no
	// task to replace (no replicas) leaves no update status; a rollback
	// always has one.
	dirty := !jsonEqual(old.TaskTemplate, spec.TaskTemplate) || !jsonEqual(old.EndpointSpec, spec.EndpointSpec)
	kept := f.keptTasksLocked(svc)
	if rollback || dirty && kept > 0 {
		now := time.Now().UTC()
		st := &swarm.UpdateStatus{State: swarm.UpdateStateUpdating, StartedAt: &now, Message: "update in progress"}
		if rollback {
			st.State, st.Message = swarm.UpdateStateRollbackStarted, "manually requested rollback"
		}
		svc.UpdateStatus = st
		f.writeServiceLocked(svc, map[string]string{"name": spec.Name, "updatestate.new": string(st.State)})
		switch {
		case kept > 0 && f.holdUpdates:
			f.rolling[svc.ID] = true
		default:
			f.reconcileTasksLocked(svc, kept > 0)
		}
		f.settleLocked()
		return nil
	}
	f.reconcileTasksLocked(svc, false)
	f.settleLocked()
	return nil
}

// finishUpdateLocked marks an update done, as Swarm's updater does once the
// new tasks run.
func (f *Swarm) finishUpdateLocked(svc *swarm.Service) {
	now := time.Now().UTC()
	st := clone(*svc.UpdateStatus)
	old := st.State
	st.CompletedAt = &now
	if old == swarm.UpdateStateRollbackStarted {
		st.State, st.Message = swarm.UpdateStateRollbackCompleted, "rollback completed"
	} else {
		st.State, st.Message = swarm.UpdateStateCompleted, "update completed"
	}
	svc.UpdateStatus = &st
	f.writeServiceLocked(svc, map[string]string{"name": svc.Spec.Name, "updatestate.old": string(old), "updatestate.new": string(st.State)})
}

// allocatableLocked reports whether Swarm's allocator can give a spec its
// endpoint and its tasks their addresses: every network it attaches to has
// a subnet.
func (f *Swarm) allocatableLocked(spec swarm.ServiceSpec) bool {
	for _, id := range attachedNetworks(spec) {
		if n := f.networks[id]; n == nil || !n.allocated {
			return false
		}
	}
	return true
}

func (f *Swarm) writeServiceLocked(svc *swarm.Service, attrs map[string]string) {
	f.index++
	svc.Version.Index = f.index
	svc.UpdatedAt = time.Now().UTC()
	f.publishLocked(events.ServiceEventType, events.ActionUpdate, svc.ID, "swarm", attrs)
}

// findServiceLocked resolves a reference as the engine does: full ID, then
// exact name, then ID prefix.
func (f *Swarm) findServiceLocked(ref string) (*swarm.Service, error) {
	if svc, ok := f.services[ref]; ok {
		return svc, nil
	}
	for _, svc := range f.services {
		if svc.Spec.Name == ref {
			return svc, nil
		}
	}
	var found []*swarm.Service
	for _, id := range sortedKeys(f.services) {
		if strings.HasPrefix(id, ref) {
			found = append(found, f.services[id])
		}
	}
	switch len(found) {
	case 0:
		return nil, dockerapi.NewDaemonError(http.StatusNotFound, fmt.Sprintf("service %s not found", ref))
	case 1:
		return found[0], nil
	}
	return nil, dockerapi.NewDaemonError(http.StatusBadRequest, fmt.Sprintf("service %s is ambiguous (%d matches found)", ref, len(found)))
}

// resolveNetworksLocked replaces network references in a spec by network
// IDs, as the engine stores them.
func (f *Swarm) resolveNetworksLocked(spec *swarm.ServiceSpec) error {
	for _, list := range [][]swarm.NetworkAttachmentConfig{spec.TaskTemplate.Networks, spec.Networks} { //nolint:staticcheck // SA1019: old clients still send it
		for i := range list {
			n, err := f.findNetworkLocked(list[i].Target, "")
			if err != nil {
				if dockerapi.IsNotFound(err) {
					return dockerapi.NewDaemonError(http.StatusInternalServerError, fmt.Sprintf("network %s not found", list[i].Target))
				}
				return err
			}
			if n.inspect.Scope != "swarm" {
				return dockerapi.NewDaemonError(http.StatusForbidden, fmt.Sprintf("The network %s cannot be used with services. Only networks scoped to the swarm can be used, such as those created with the overlay driver.", list[i].Target))
			}
			if n.inspect.Ingress {
				return dockerapi.NewDaemonError(http.StatusBadRequest, fmt.Sprintf("rpc error: code = InvalidArgument desc = Service cannot be explicitly attached to the ingress network %q", n.inspect.Name))
			}
			list[i].Target = n.inspect.ID
		}
	}
	return nil
}

// checkPortConflictsLocked is Swarm's check of the ports a spec publishes
// against the other services' (their specs and their allocated
// endpoints): an ingress port belongs to the whole Swarm, so no other
// service may publish it in any mode; a host-mode port may be published by
// several services, whose tasks the scheduler then keeps on different
// nodes. Ports differing in protocol do not conflict.
func (f *Swarm) checkPortConflictsLocked(spec swarm.ServiceSpec, self string) error {
	if spec.EndpointSpec == nil {
		return nil
	}
	type portKey struct {
		protocol swarm.PortConfigProtocol
		port     uint32
	}
	ingress, host := map[portKey]bool{}, map[portKey]bool{}
	for _, p := range spec.EndpointSpec.Ports {
		if p.PublishedPort == 0 {
			continue
		}
		switch p.PublishMode {
		case swarm.PortConfigPublishModeIngress:
			ingress[portKey{p.Protocol, p.PublishedPort}] = true
		case swarm.PortConfigPublishModeHost:
			host[portKey{p.Protocol, p.PublishedPort}] = true
		}
	}
	if len(ingress) == 0 && len(host) == 0 {
		return nil
	}
	for _, id := range sortedKeys(f.services) {
		other := f.services[id]
		if id == self {
			continue
		}
		var theirs []swarm.PortConfig
		if other.Spec.EndpointSpec != nil {
			theirs = append(theirs, other.Spec.EndpointSpec.Ports...)
		}
		for _, q := range append(theirs, other.Endpoint.Ports...) {
			k := portKey{q.Protocol, q.PublishedPort}
			if q.PublishedPort == 0 {
				continue
			}
			var as string
			switch {
			case q.PublishMode == swarm.PortConfigPublishModeHost && ingress[k]:
				as = "a host-published port"
			case q.PublishMode == swarm.PortConfigPublishModeIngress && (ingress[k] || host[k]):
				as = "an ingress port"
			default:
				continue
			}
			return dockerapi.NewDaemonError(http.StatusBadRequest, fmt.Sprintf("rpc error: code = InvalidArgument desc = port '%d' is already in use by service '%s' (%s) as %s", q.PublishedPort, other.Spec.Name, other.ID, as))
		}
	}
	return nil
}

// endpointLocked derives what Swarm's allocator writes: ports with a
// published port assigned where none was asked for, and a VIP on every
// network (the ingress one first when a port goes through it).
func (f *Swarm) endpointLocked(spec swarm.ServiceSpec, prev swarm.Endpoint) swarm.Endpoint {
	var ep swarm.Endpoint
	if spec.EndpointSpec != nil {
		ep.Spec = clone(*spec.EndpointSpec)
	}
	ingress := false
	for _, p := range ep.Spec.Ports {
		if p.PublishMode == swarm.PortConfigPublishModeIngress {
			ingress = true
			if p.PublishedPort == 0 {
				p.PublishedPort = f.nextPort
				for _, q := range prev.Ports {
					if q.PublishMode == p.PublishMode && q.TargetPort == p.TargetPort && q.Protocol == p.Protocol {
						p.PublishedPort = q.PublishedPort
					}
				}
				if p.PublishedPort == f.nextPort {
					f.nextPort++
				}
			}
		}
		ep.Ports = append(ep.Ports, p)
	}
	if ep.Spec.Mode == swarm.ResolutionModeDNSRR {
		return ep
	}
	var ids []string
	if ingress {
		ids = append(ids, f.ingressLocked().inspect.ID)
	}
	ids = append(ids, attachedNetworks(spec)...)
	for _, id := range ids {
		vip := swarm.EndpointVirtualIP{NetworkID: id}
		for _, old := range prev.VirtualIPs {
			if old.NetworkID == id {
				vip.Addr = old.Addr
			}
		}
		if vip.Addr == "" {
			vip.Addr = f.networks[id].allocate()
		}
		ep.VirtualIPs = append(ep.VirtualIPs, vip)
	}
	return ep
}

func (f *Swarm) serviceStatusLocked(svc *swarm.Service) *swarm.ServiceStatus {
	st := &swarm.ServiceStatus{}
	switch {
	case svc.Spec.Mode.Replicated != nil:
		st.DesiredTasks = *svc.Spec.Mode.Replicated.Replicas
	case svc.Spec.Mode.Global != nil:
		st.DesiredTasks = uint64(len(f.activeNodesLocked()))
	}
	for _, t := range f.tasks {
		if t.ServiceID == svc.ID && t.DesiredState == swarm.TaskStateRunning && t.Status.State == swarm.TaskStateRunning {
			st.RunningTasks++
		}
	}
	return st
}

// validateClientSpec is the check the real client makes before sending.
func validateClientSpec(s swarm.ServiceSpec) error {
	tt := s.TaskTemplate
	switch {
	case tt.ContainerSpec != nil && tt.PluginSpec != nil:
		return errors.New("must not specify both a container spec and a plugin spec in the task template")
	case tt.PluginSpec != nil && tt.Runtime != swarm.RuntimePlugin:
		return errors.New("mismatched runtime with plugin spec")
	case tt.ContainerSpec != nil && tt.Runtime != "" && tt.Runtime != swarm.RuntimeContainer:
		return errors.New("mismatched runtime with container spec")
	}
	return nil
}

// tagImage adds ":latest" to an untagged image, as the real client does
// before sending a spec.
func tagImage(s *swarm.ServiceSpec) {
	if cs := s.TaskTemplate.ContainerSpec; cs != nil {
		if named, err := reference.ParseNormalizedNamed(cs.Image); err == nil {
			cs.Image = reference.FamiliarString(reference.TagNameOnly(named))
		}
	}
}

// normalizeSpec fills in the defaults the engine stores (seen on 20.10).
func normalizeSpec(s *swarm.ServiceSpec) {
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	if cs := s.TaskTemplate.ContainerSpec; cs != nil {
		if s.TaskTemplate.Runtime == "" {
			s.TaskTemplate.Runtime = swarm.RuntimeContainer
		}
		if cs.Isolation == "" {
			cs.Isolation = container.IsolationDefault
		}
	}
	m := &s.Mode
	if m.Replicated == nil && m.Global == nil && m.ReplicatedJob == nil && m.GlobalJob == nil {
		m.Replicated = &swarm.ReplicatedService{}
	}
	if m.Replicated != nil && m.Replicated.Replicas == nil {
		one := uint64(1)
		m.Replicated.Replicas = &one
	}
	if rp := s.TaskTemplate.RestartPolicy; rp != nil && rp.MaxAttempts == nil {
		rp.MaxAttempts = new(uint64)
	}
	// The engine's conversion fills in what an update (or rollback) config
	// leaves empty (its zero values); InsertDefaults would show more.
	for _, c := range []*swarm.UpdateConfig{s.UpdateConfig, s.RollbackConfig} {
		if c != nil && c.FailureAction == "" {
			c.FailureAction = swarm.UpdateFailureActionPause
		}
		if c != nil && c.Order == "" {
			c.Order = swarm.UpdateOrderStopFirst
		}
	}
	if e := s.EndpointSpec; e != nil {
		if e.Mode == "" {
			e.Mode = swarm.ResolutionModeVIP
		}
		for i := range e.Ports {
			if e.Ports[i].Protocol == "" {
				e.Ports[i].Protocol = swarm.PortConfigProtocolTCP
			}
			if e.Ports[i].PublishMode == "" {
				e.Ports[i].PublishMode = swarm.PortConfigPublishModeIngress
			}
		}
	}
}

// validateSwarmSpec is the part of Swarm's validation a reconciler can trip.
func validateSwarmSpec(s swarm.ServiceSpec) error {
	if e := s.EndpointSpec; e != nil && e.Mode == swarm.ResolutionModeDNSRR {
		for _, p := range e.Ports {
			if p.PublishMode == swarm.PortConfigPublishModeIngress {
				return dockerapi.NewDaemonError(http.StatusBadRequest, "rpc error: code = InvalidArgument desc = EndpointSpec: port published with ingress mode can't be used with dnsrr mode")
			}
		}
	}
	return nil
}

// attachedNetworks returns the IDs of the networks a stored spec attaches
// its tasks to, without duplicates.
func attachedNetworks(s swarm.ServiceSpec) []string {
	var ids []string
	for _, a := range slices.Concat(s.TaskTemplate.Networks, s.Networks) { //nolint:staticcheck // SA1019: old clients still send it
		if !slices.Contains(ids, a.Target) {
			ids = append(ids, a.Target)
		}
	}
	return ids
}

func serviceMode(m swarm.ServiceMode) string {
	switch {
	case m.Global != nil:
		return "global"
	case m.ReplicatedJob != nil:
		return "replicated-job"
	case m.GlobalJob != nil:
		return "global-job"
	}
	return "replicated"
}

func serviceImage(s swarm.ServiceSpec) string {
	if s.TaskTemplate.ContainerSpec == nil {
		return ""
	}
	return s.TaskTemplate.ContainerSpec.Image
}

func replicas(s swarm.ServiceSpec) string {
	if s.Mode.Replicated == nil || s.Mode.Replicated.Replicas == nil {
		return ""
	}
	return strconv.FormatUint(*s.Mode.Replicated.Replicas, 10)
}
