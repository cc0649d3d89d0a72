package fake

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
)

// ConfigList implements dockerapi.API: configs with their data, as the
// engine lists them, filtered by id, name (prefixes) and label.
func (f *Swarm) ConfigList(ctx context.Context, options swarm.ConfigListOptions) ([]swarm.Config, error) {
	unlock, err := f.swarmCall(ctx, dockerapi.OpConfigList)
	if err != nil {
		return nil, err
	}
	defer unlock()
	args := options.Filters
	if err := validateFilters(args, "id", "label", "name", "names"); err != nil {
		return nil, err
	}
	out := []swarm.Config{}
	for _, id := range sortedKeys(f.configs) {
		c := f.configs[id]
		if !matchPrefix(args, "id", c.ID) || !matchPrefix(args, "name", c.Spec.Name) || !args.MatchKVList("label", c.Spec.Labels) {
			continue
		}
		out = append(out, clone(*c))
	}
	return out, nil
}

// ConfigCreate implements dockerapi.API: names are unique.
func (f *Swarm) ConfigCreate(ctx context.Context, spec swarm.ConfigSpec) (swarm.ConfigCreateResponse, error) {
	unlock, err := f.swarmCall(ctx, dockerapi.OpConfigCreate)
	if err != nil {
		return swarm.ConfigCreateResponse{}, err
	}
	defer unlock()
	for _, c := range f.configs {
		if c.Spec.Name == spec.Name {
			return swarm.ConfigCreateResponse{}, dockerapi.NewDaemonError(http.StatusConflict,
				fmt.Sprintf("rpc error: code = AlreadyExists desc = config %s already exists", spec.Name))
		}
	}
	f.index++
	now := time.Now().UTC()
	c := &swarm.Config{ID: newSwarmID(), Meta: swarm.Meta{Version: swarm.Version{Index: f.index}, CreatedAt: now, UpdatedAt: now}, Spec: clone(spec)}
	if c.Spec.Labels == nil {
		c.Spec.Labels = map[string]string{}
	}
	f.configs[c.ID] = c
	f.publishLocked(events.ConfigEventType, events.ActionCreate, c.ID, "swarm", map[string]string{"name": c.Spec.Name})
	return swarm.ConfigCreateResponse{ID: c.ID}, nil
}

// ConfigRemove implements dockerapi.API, by ID or name.
func (f *Swarm) ConfigRemove(ctx context.Context, id string) error {
	unlock, err := f.swarmCall(ctx, dockerapi.OpConfigRemove)
	if err != nil {
		return err
	}
	defer unlock()
	for key, c := range f.configs {
		if c.ID == id || c.Spec.Name == id {
			delete(f.configs, key)
			f.index++
			f.publishLocked(events.ConfigEventType, events.ActionRemove, c.ID, "swarm", map[string]string{"name": c.Spec.Name})
			return nil
		}
	}
	return dockerapi.NewDaemonError(http.StatusNotFound, fmt.Sprintf("config %s not found", id))
}

// ConfigUpdate implements dockerapi.API: only the labels may change, and
// the update must carry the version read.
func (f *Swarm) ConfigUpdate(ctx context.Context, id string, version swarm.Version, spec swarm.ConfigSpec) error {
	unlock, err := f.swarmCall(ctx, dockerapi.OpConfigUpdate)
	if err != nil {
		return err
	}
	defer unlock()
	var c *swarm.Config
	for _, x := range f.configs {
		if x.ID == id || x.Spec.Name == id {
			c = x
		}
	}
	switch {
	case c == nil:
		return dockerapi.NewDaemonError(http.StatusNotFound, fmt.Sprintf("config %s not found", id))
	case version.Index != c.Version.Index:
		return dockerapi.NewDaemonError(http.StatusInternalServerError, "rpc error: code = Unknown desc = update out of sequence")
	case spec.Data != nil && string(spec.Data) != string(c.Spec.Data) || spec.Name != "" && spec.Name != c.Spec.Name:
		return dockerapi.NewDaemonError(http.StatusBadRequest, "rpc error: code = InvalidArgument desc = only updates to Labels are allowed")
	}
	f.index++
	c.Version.Index = f.index
	c.UpdatedAt = time.Now().UTC()
	c.Spec.Labels = clone(spec.Labels)
	if c.Spec.Labels == nil {
		c.Spec.Labels = map[string]string{}
	}
	f.publishLocked(events.ConfigEventType, events.ActionUpdate, c.ID, "swarm", map[string]string{"name": c.Spec.Name})
	return nil
}

// Configs lists the configs, for tests.
func (f *Swarm) Configs() []swarm.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []swarm.Config{}
	for _, id := range sortedKeys(f.configs) {
		out = append(out, clone(*f.configs[id]))
	}
	return out
}
