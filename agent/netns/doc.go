// Package netns finds the Swarm tasks running on this node (LocalTasks,
// from the node's own engine) and enters their network namespaces. It is
// shared by everything of the agent that acts inside a task (the data path
// rules, its NFLOG listeners) and is meant for any other feature that does
// (traffic observation): one place that knows how a namespace is named,
// opened and entered, and what that costs.
//
// Entering a namespace (setns(2) with CLONE_NEWNET) needs CAP_SYS_ADMIN in
// the agent's user namespace; opening a handle does not. Netlink users
// (google/nftables, go-nflog) take the handle's descriptor and open their
// socket inside the namespace themselves, so most callers never call Do.
package netns
