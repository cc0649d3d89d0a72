// Package fake is an in-memory, single-engine Docker Swarm implementing
// dockerapi.API, for tests of code that talks to Docker. It is for tests
// only: production code must never import it.
//
// It follows what Engine 20.10 (API 1.41) was seen doing through the real
// client, and the parity test (parity_test.go, build tag integration) runs
// the same scenarios against it and a real engine to keep it so:
//
//   - the engine's error messages and status kinds, and its order of
//     checks on a service update;
//   - versions that move on every write, also when "Swarm" itself writes
//     (update status changes, allocation), so a stale version fails with
//     "update out of sequence";
//   - specs stored as the engine stores them: network names resolved to
//     IDs, ":latest" added to untagged images, defaults filled in (replicas,
//     endpoint mode, port protocol and mode, the failure action and order
//     of update and rollback configs, a restart policy's max attempts);
//   - the engine's uneven filters (see NetworkList and ServiceList);
//   - rolling updates: a change to the task template or the endpoint
//     replaces the tasks Swarm wants running, with an update status that
//     moves from "updating" to "completed" (and none when there was no task
//     to replace); HoldUpdates keeps them in "updating";
//   - tasks, one per replica slot spread over the active nodes, or one per
//     active node for global services, with a history of five per slot;
//     ServiceList with Status counts them;
//   - IPAM: explicit subnets and gateways kept, others assigned
//     (/24s of 10.0.0.0/8 for Swarm networks, 10.0.N.0/24 first, and
//     172.N.0.0/16 for local ones) round the subnets taken; a local
//     network overlapping another local one, or a Swarm network in use on
//     this node, is refused; a Swarm network
//     overlapping one Swarm allocated is created but left unallocated (no
//     driver, IPAM or options, its services waiting and their tasks "new")
//     until the overlapping one is removed;
//   - published ports: an ingress port is the Swarm's, refused to any other
//     service; a host-mode port may be published by several services, but
//     only one running task per node holds it, the others stay "pending"
//     until it is free;
//   - the containers of tasks on this node and containers run outside any
//     service (AddContainer), as ContainerList and network inspection show
//     them;
//   - service, network and config events, in order, with the engine's filters.
//
// Everything crosses the fake as JSON does the wire, so callers never share
// memory with it. Everything happens at once: where the engine allocates,
// schedules, starts and stops tasks asynchronously, the fake has done so
// when the call returns (the engine also keeps a Swarm network instantiated
// on a node for a while after its last task there is gone; the fake does
// not).
//
// What it does not model:
//
//   - a data plane: no container or process runs, no image is needed (any
//     name is taken), no packet is sent. VIPs and task addresses are only
//     numbers: no IPVS or VIP load balancing, no routing mesh, no DNS (no
//     service names, no tasks.<service>), no iptables;
//   - encryption: the "encrypted" option is stored and shown, nothing is
//     encrypted, there are no IPsec keys;
//   - task life: tasks never fail, exit or restart (restart policies are
//     ignored), there are no health checks, and a task goes from "new" (or
//     "pending") straight to "running", without "preparing", "starting" or
//     a "ready" desired state;
//   - rolling update pacing: parallelism, delay, monitor period, failure
//     action and order are stored but not applied: all tasks are replaced
//     at once, old ones shut down first; an update never pauses or rolls
//     back on its own;
//   - scheduling beyond spreading replicas over nodes in order and keeping
//     host-mode ports apart: placement constraints and preferences,
//     resource reservations and limits, max replicas per node, platforms
//     and node labels are ignored; a node's state does not change once it
//     was added, and tasks are never moved;
//   - more than one engine: one manager (no Raft, quorum or leader
//     election), whose local view (containers, instantiated networks) is
//     that of the first node;
//   - ServiceInspectOptions.InsertDefaults: specs are shown as stored,
//     never with Swarm's defaults for what they leave out;
//   - what dockerapi.API does not reach: secrets, config updates, volumes, mounts,
//     plugins, images; logs beyond what a test adds (AddServiceLog: no
//     timestamps, since, tail or follow); and job services, which get no tasks;
//   - finer IPAM: only the first IPAM config is used (no IPv6 subnets, IP
//     ranges or auxiliary addresses), addresses are handed out in order and
//     never reused, and no allocation fails other than by overlap;
//   - event history (Since and Until are ignored) and events other than
//     services' and networks' (no container, task or node events).
//
// One file per kind of object (services.go, tasks.go, networks.go,
// containers.go, configs.go, nodes.go, events.go, logs.go), each with its
// seeding helpers, its API calls and what Swarm does with it; fake.go
// holds the engine, the test controls and the one opening every API call
// shares (swarmCall, localCall: count, injected error, ctx, lock, manager).
package fake
