package observe

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/state"
)

// MaxReads is the most objects a pass re-reads in a small cluster: past
// it, the four list calls cost less (a burst, such as the events of a first
// converge, names thousands). A list costs in proportion to the whole
// cluster and reads (lists filtered by ID, listBatch at a time) to what
// changed, so in a larger one a pass reads up to half of its services and
// networks (maxReads): a wave of apply re-reads the services it wrote. At
// 1,000 services, a full list took 80-105 ms and batched reads of 200
// services 28 ms.
const MaxReads = 64

// maxReads is the most objects a pass over st re-reads rather than lists.
func maxReads(st *state.Store) int {
	n := 0
	st.View(func(tx state.ReadTx) {
		// Unreadable, the bound stays MaxReads: the pass lists.
		svcs, err := state.FindServices(tx, state.All())
		if err != nil {
			return
		}
		nets, err := tx.Networks()
		if err != nil {
			return
		}
		n = len(svcs) + len(nets)
	})
	return max(MaxReads, n/2)
}

// readers is how many objects are re-read at a time.
const readers = 8

// Changes is the watch half of list-then-watch (client-go's Reflector):
// what Docker's events named since the last pass. A pass re-reads just
// those objects, so a drift on one service costs a read of that service,
// not a list of every service. It lists everything instead on the first
// pass, while no events stream is subscribed, on the next pass after one
// is (it may have missed what changed before), on a periodic resync, after
// a failed read or write, while where tasks run matters, and when more
// than MaxReads objects changed. It is safe for concurrent use.
type Changes struct {
	mu sync.Mutex
	// watching is set while an events stream keeps the store current.
	watching bool
	// list says why the next pass must list everything ("": it need not).
	list     string
	services map[string]struct{}
	networks map[string]struct{}
	records  bool
}

// NewChanges returns Changes whose first pass lists everything.
func NewChanges() *Changes {
	return &Changes{list: "first pass", services: map[string]struct{}{}, networks: map[string]struct{}{}}
}

// Watch says an events stream is subscribed and keeps the store current
// from now on. The next pass lists everything: what changed while no
// stream was there is only in a list.
func (c *Changes) Watch(why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watching = true
	c.resyncLocked(why)
}

// Unwatch says the events stream is lost: every pass lists until Watch.
func (c *Changes) Unwatch() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watching = false
}

// Resync makes the next pass list everything.
func (c *Changes) Resync(why string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resyncLocked(why)
}

func (c *Changes) resyncLocked(why string) {
	if c.list == "" {
		c.list = why
	}
}

// Service asks the next pass to re-read a service (by ID).
func (c *Changes) Service(id string) { c.mark(c.services, id) }

// Network asks the next pass to re-read a network (by ID).
func (c *Changes) Network(id string) { c.mark(c.networks, id) }

// Records asks the next pass to list the records again: one list of just
// them, as the API has no read of one config.
func (c *Changes) Records() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.records = true
}

func (c *Changes) mark(set map[string]struct{}, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id == "" {
		// Nothing to read back: only a list finds it.
		c.resyncLocked("an event named no object")
		return
	}
	set[id] = struct{}{}
}

// Claim hands the marks of the services ids to a caller about to read them
// itself (a wave's judge lists its services): what the marks set so far
// ask for, that read answers; what changes from now on is the next pass's.
// Whatever the caller could not read it gives back with Service.
func (c *Changes) Claim(ids []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		delete(c.services, id)
	}
}

// Store puts services read whole from Swarm (a list, an inspect) into st,
// as a pass's re-read would.
func Store(st *state.Store, svcs []swarm.Service) error {
	return st.Update(func(tx state.Tx) error {
		for _, s := range svcs {
			if err := state.UpsertService(tx, state.NewService(s)); err != nil {
				return err
			}
		}
		return nil
	})
}

// EventFilters are the events Event reads: services, networks and
// configs (the records among them).
func EventFilters() filters.Args {
	return filters.NewArgs(filters.Arg("type", string(events.ServiceEventType)),
		filters.Arg("type", string(events.NetworkEventType)), filters.Arg("type", string(events.ConfigEventType)))
}

// Event notes which object a Docker event names, for the next pass to
// re-read; the event's content is never used, only whom it names. It
// reports whether the event concerns what the store holds: configs other
// than records (the leader lease's renewals, the agents' rules) do not.
func (c *Changes) Event(m events.Message) bool {
	switch m.Type {
	case events.ServiceEventType:
		c.Service(m.Actor.ID)
	case events.NetworkEventType:
		c.Network(m.Actor.ID)
	case events.ConfigEventType:
		if !strings.HasPrefix(m.Actor.Attributes["name"], compile.RecordName("")) {
			return false
		}
		c.Records()
	default:
		return false
	}
	return true
}

// pending is what one pass must read.
type pending struct {
	list               string
	services, networks []string
	records            bool
}

// take hands the changes noted so far to a pass and starts afresh: what
// changes from now on is for the next pass.
func (c *Changes) take() pending {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := pending{list: c.list, records: c.records}
	if p.list == "" && !c.watching {
		p.list = "no events stream"
	}
	for id := range c.services {
		p.services = append(p.services, id)
	}
	for id := range c.networks {
		p.networks = append(p.networks, id)
	}
	c.list, c.records = "", false
	clear(c.services)
	clear(c.networks)
	return p
}

// Observe brings the store up to date for a pass: it lists everything
// (see Observe) when it must, and otherwise re-reads only the objects
// noted since the last pass. A failed read makes the next pass list.
func (c *Changes) Observe(ctx context.Context, api dockerapi.API, st *state.Store, withTasks bool) (*Observation, error) {
	p := c.take()
	why := p.list
	switch {
	case why != "":
	case withTasks:
		why = "where tasks run matters"
	default:
		migrating, err := migrationUnderWay(st)
		switch {
		case err != nil:
			c.Resync("the last pass could not read the store")
			return nil, err
		case migrating:
			// Tasks have no events: a migration reads them on every pass.
			why = "a migration is under way"
		case len(p.services)+len(p.networks) > MaxReads && len(p.services)+len(p.networks) > maxReads(st):
			why = fmt.Sprintf("%d objects changed", len(p.services)+len(p.networks))
		}
	}
	if why != "" {
		if err := Observe(ctx, api, st, withTasks); err != nil {
			c.Resync("the last list failed")
			return nil, err
		}
		return &Observation{Full: true, Why: why}, nil
	}
	if err := refresh(ctx, api, st, p); err != nil {
		c.Resync("the last read failed")
		return nil, err
	}
	return &Observation{Services: len(p.services), Networks: len(p.networks), Records: p.records}, nil
}

// migrationUnderWay reports whether the store holds a temporary migration
// network.
func migrationUnderWay(st *state.Store) (found bool, err error) {
	st.View(func(tx state.ReadTx) {
		var ns []*state.Network
		if ns, err = state.FindNetworks(tx, state.ByManaged()); err != nil {
			err = fmt.Errorf("managed networks: %w", err)
			return
		}
		found = slices.ContainsFunc(ns, func(n *state.Network) bool { return n.Labels[v1.LabelPurpose] == v1.PurposeMigration })
	})
	return found, err
}

// refresh re-reads the objects p names, a few at a time, and stores what
// Swarm has of them: an object Swarm no longer has leaves the store.
func refresh(ctx context.Context, api dockerapi.API, st *state.Store, p pending) error {
	svcs := make([]*state.Service, len(p.services)) // nil: gone
	nets := make([]*state.Network, len(p.networks))
	var records []swarm.Config
	var reads []func(context.Context) error
	for lo := 0; lo < len(p.services); lo += listBatch {
		ids := p.services[lo:min(lo+listBatch, len(p.services))]
		reads = append(reads, func(ctx context.Context) error {
			got, err := readServices(ctx, api, ids)
			if err != nil {
				return err
			}
			for i, id := range ids {
				if s, ok := got[id]; ok {
					svcs[lo+i] = state.NewService(s)
				}
			}
			return nil
		})
	}
	for lo := 0; lo < len(p.networks); lo += listBatch {
		ids := p.networks[lo:min(lo+listBatch, len(p.networks))]
		reads = append(reads, func(ctx context.Context) error {
			got, err := readNetworks(ctx, api, ids)
			if err != nil {
				return err
			}
			for i, id := range ids {
				if n, ok := got[id]; ok {
					nets[lo+i] = state.NewNetwork(n)
				}
			}
			return nil
		})
	}
	if p.records {
		reads = append(reads, func(ctx context.Context) error {
			var err error
			records, err = listRecords(ctx, api)
			if err != nil {
				return fmt.Errorf("list configs: %w", err)
			}
			return nil
		})
	}
	if err := readAll(ctx, reads); err != nil {
		return err
	}
	return st.Update(func(tx state.Tx) error {
		// Removals first: a name removed and created again is found under
		// its new ID.
		for i, id := range p.services {
			if svcs[i] == nil {
				if err := state.DeleteService(tx, id); err != nil {
					return err
				}
			}
		}
		for i, id := range p.networks {
			if nets[i] == nil {
				if err := state.DeleteNetwork(tx, id); err != nil {
					return err
				}
			}
		}
		for _, s := range svcs {
			if s != nil {
				if err := state.UpsertService(tx, s); err != nil {
					return err
				}
			}
		}
		for _, n := range nets {
			if n != nil {
				if err := state.UpsertNetwork(tx, n); err != nil {
					return err
				}
			}
		}
		if p.records {
			return state.ReplaceRecords(tx, mapAll(records, state.NewRecord))
		}
		return nil
	})
}

// listBatch is how many objects of a kind one read asks for: a list
// filtered by their IDs costs the engine one answer, where an inspect each
// cost a round trip each (a wave's 300 services took 100 ms at 1,000).
// Batches keep the request's filter short.
const listBatch = 100

// readServices reads the services ids (by ID) with one filtered list; a
// service Swarm no longer has is missing from the answer.
func readServices(ctx context.Context, api dockerapi.API, ids []string) (map[string]swarm.Service, error) {
	if len(ids) == 1 {
		// One inspect is the cheaper call; a drift's pass reads one.
		s, _, err := api.ServiceInspectWithRaw(ctx, ids[0], swarm.ServiceInspectOptions{})
		switch {
		case dockerapi.IsNotFound(err):
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("inspect service %s: %w", ids[0], err)
		}
		return map[string]swarm.Service{s.ID: s}, nil
	}
	svcs, err := api.ServiceList(ctx, swarm.ServiceListOptions{Filters: idFilter(ids)})
	if err != nil {
		return nil, fmt.Errorf("list %d services by ID: %w", len(ids), err)
	}
	return byID(svcs, ids, func(s swarm.Service) string { return s.ID }), nil
}

// readNetworks reads the networks ids (by ID) as readServices does, and
// waits for the allocation of young ones as every read of networks does.
func readNetworks(ctx context.Context, api dockerapi.API, ids []string) (map[string]network.Summary, error) {
	if len(ids) == 1 {
		n, err := awaitAllocation(ctx, func(ctx context.Context) (network.Inspect, error) {
			return api.NetworkInspect(ctx, ids[0], network.InspectOptions{})
		}, func(n network.Inspect) []network.Summary { return []network.Summary{n} })
		switch {
		case dockerapi.IsNotFound(err):
			return nil, nil
		case err != nil:
			return nil, fmt.Errorf("inspect network %s: %w", ids[0], err)
		}
		return map[string]network.Summary{n.ID: n}, nil
	}
	nets, err := awaitAllocation(ctx, func(ctx context.Context) ([]network.Summary, error) {
		return api.NetworkList(ctx, network.ListOptions{Filters: idFilter(ids)})
	}, func(ns []network.Summary) []network.Summary { return ns })
	if err != nil {
		return nil, fmt.Errorf("list %d networks by ID: %w", len(ids), err)
	}
	return byID(nets, ids, func(n network.Summary) string { return n.ID }), nil
}

func idFilter(ids []string) filters.Args {
	f := filters.NewArgs()
	for _, id := range ids {
		f.Add("id", id)
	}
	return f
}

// byID keeps the objects whose ID is one of ids: the engine's id filter
// matches prefixes too.
func byID[T any](objs []T, ids []string, id func(T) string) map[string]T {
	out := make(map[string]T, len(ids))
	for _, o := range objs {
		if slices.Contains(ids, id(o)) {
			out[id(o)] = o
		}
	}
	return out
}

// readAll runs reads a few at a time, each within CallTimeout, and
// returns the first error.
func readAll(ctx context.Context, reads []func(context.Context) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, readers)
	)
	for _, read := range reads {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_, err := call(ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, read(ctx) })
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

// Track returns api with every write made through it noted, so the next
// pass reads back from Swarm what this one wrote or tried to: the store
// holds what was read, never what was meant. A network create that failed
// leaves no ID to read back (it may exist all the same): the next pass
// lists.
func (c *Changes) Track(api dockerapi.API) dockerapi.API { return &tracked{API: api, c: c} }

type tracked struct {
	dockerapi.API
	c *Changes
}

func (t *tracked) ServiceUpdate(ctx context.Context, id string, version swarm.Version, spec swarm.ServiceSpec, options swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	resp, err := t.API.ServiceUpdate(ctx, id, version, spec, options)
	t.c.Service(id)
	return resp, err
}

func (t *tracked) NetworkCreate(ctx context.Context, name string, options network.CreateOptions) (network.CreateResponse, error) {
	resp, err := t.API.NetworkCreate(ctx, name, options)
	if err != nil || resp.ID == "" {
		t.c.Resync("network " + name + " was not created as asked")
	} else {
		t.c.Network(resp.ID)
	}
	return resp, err
}

func (t *tracked) NetworkRemove(ctx context.Context, id string) error {
	err := t.API.NetworkRemove(ctx, id)
	t.c.Network(id)
	return err
}

func (t *tracked) ConfigCreate(ctx context.Context, spec swarm.ConfigSpec) (swarm.ConfigCreateResponse, error) {
	resp, err := t.API.ConfigCreate(ctx, spec)
	t.c.Records()
	return resp, err
}

func (t *tracked) ConfigRemove(ctx context.Context, id string) error {
	err := t.API.ConfigRemove(ctx, id)
	t.c.Records()
	return err
}
