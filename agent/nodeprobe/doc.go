// Package nodeprobe runs the node checks on the node the agent runs on (a
// manager sees nothing of a worker's kernel or firewall): whether the node
// can carry encrypted overlay traffic, and what on it lets traffic around
// the policies. It writes the report of api/v1/agent, which the agent logs
// and the leader reads back (reconciler/nodecheck).
//
// It is the agent's half: it asks only the node's own engine (three calls,
// the Docker interface) and its iptables, and imports nothing of the
// controller.
package nodeprobe
