// Package traffic is the leader's reading of the flows the node agents
// observe (agent/flows logs them as api/v1/agent.Flows lines in the agent
// service's logs, the channel of the node checks): summed over a window
// and over nodes, and judged against compiled policies: allowed, or
// would-block (the policies let the two ends share no network, or do not
// publish the port, or cut the source's way outside).
//
// It is what swarmsec flows shows, what plan lists as the impact of a
// change, what apply --traffic-window holds on, what init --from-traffic
// writes policies from and what graph --observed draws.
//
// Verdict "blocked" (a connection the data path dropped) comes from the
// flow records the agent logs when its per-task rules drop an attempt
// (api/v1/agent.FlowRecord, in the same logs): ReadWithDrops sums them
// like the flows, and AddDrops merges them, Blocked, into what was
// observed.
package traffic
