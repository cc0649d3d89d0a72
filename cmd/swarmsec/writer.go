package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/lease"
)

// refuseLeader stops an apply while a `swarmsec run` replica leads: the two
// would fight, the controller reverting what apply writes as drift, and a
// restore can lose its record between them (the service is then left
// isolated, Restorable=False). Right after `docker stack rm` the replicas
// still run for a moment; a clean stop frees the lease, so apply goes
// ahead once they are gone.
func refuseLeader(ctx context.Context, w io.Writer, api dockerapi.API) error {
	holder, err := lease.Leader(ctx, api, 250*time.Millisecond, func(holder string, upTo time.Duration) {
		fmt.Fprintf(w, "the leader lease names %s: watching it (up to %s) to tell whether that controller still runs\n", holder, upTo)
	})
	if err != nil {
		return err
	}
	if holder == "" {
		return nil
	}
	return fmt.Errorf("swarmsec run leads this Swarm (replica %s renews its lease): apply would fight it, and the controller reverts what apply writes; nothing was written. Change the manifests the controller reads, or stop it first (docker stack rm swarmsec, then apply once its tasks are gone)", holder)
}
