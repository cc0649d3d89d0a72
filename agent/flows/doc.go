// Package flows is the agent's view of the traffic that passes: it reads
// conntrack inside the network namespace of every local Swarm task, names
// both ends (a service, from the node's network inspect; or a block
// outside), and aggregates the connections per source, destination, port
// and protocol. The aggregates go out as api/v1/agent.Flows log lines, the
// channel the node checks report already takes to the leader.
//
// Everything is bounded: at most MaxKeys aggregates (a connection whose key
// would pass it is counted as dropped, never kept), an aggregate idle for
// Window is forgotten, the connections remembered per namespace (to count
// each once) are those conntrack still holds, and a report logs only the
// aggregates that saw a connection since the last one, never a line per
// connection.
//
// Each connection is counted once in the cluster: at its client when the
// client is a task (the agent on the client's node), at its server when
// the client is no task (a published port reached from outside).
package flows
