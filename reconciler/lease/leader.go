package lease

import (
	"context"
	"fmt"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
)

// listTimeout bounds each read of the leases: an engine that never answers
// must not hold a command forever.
const listTimeout = 10 * time.Second

// Leader tells whether a swarmsec replica leads the Swarm, for a writer
// that is not one of them (apply). A leader renews its lease every retry
// period, so a lease that changes while it names a holder has a live one:
// Leader returns that holder. It returns "" once every lease is free,
// gone, or unchanged for its duration (a holder that died without
// releasing it: a replica would take over then). Like the replicas, it
// judges by its own clock, never by the times written in the lease.
// Every lease counts, whatever its name (run --lease). waiting, when set,
// is told once that a lease names a holder and how long Leader may watch.
func Leader(ctx context.Context, api dockerapi.API, poll time.Duration, waiting func(holder string, upTo time.Duration)) (string, error) {
	type seen struct {
		version uint64
		until   time.Time
	}
	first := map[string]seen{}
	told := false
	for {
		cfgs, err := leases(ctx, api)
		if err != nil {
			return "", err
		}
		now := time.Now()
		pending := false
		for _, c := range cfgs {
			rec := parse(c.Spec.Labels)
			if rec.holder == "" {
				continue
			}
			s, ok := first[c.ID]
			switch {
			case !ok:
				first[c.ID] = seen{c.Version.Index, now.Add(rec.duration)}
				if waiting != nil && !told {
					waiting(rec.holder, rec.duration)
					told = true
				}
			case c.Version.Index != s.version:
				return rec.holder, nil
			case now.After(s.until):
				continue // expired: its holder is gone
			}
			pending = true
		}
		if !pending {
			return "", nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(poll):
		}
	}
}

func leases(ctx context.Context, api dockerapi.API) ([]swarm.Config, error) {
	cctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	cfgs, err := api.ConfigList(cctx, swarm.ConfigListOptions{Filters: filters.NewArgs(filters.Arg("label", v1.LabelPurpose+"="+v1.PurposeLease))})
	if err != nil {
		return nil, fmt.Errorf("list the leader leases: %w", err)
	}
	return cfgs, nil
}
