// Package tasks discovers, from the node's own engine, the Swarm tasks
// running on the node (agent/netns.LocalTasks, the one listing of them)
// and the addresses of every service they can reach:
// each local task's sandbox (its network namespace) and addresses, and
// for each overlay network they are on, every service's VIP and task
// addresses (a verbose network inspect lists the tasks of every node).
//
// It is the agent's map from the rules' terms (services) to addresses, and
// is meant to be shared with any other agent feature that needs to know
// which task an address or a namespace belongs to.
package tasks
