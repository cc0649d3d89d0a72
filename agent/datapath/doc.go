// Package datapath enforces the per-service rules (api/v1/agent, revision
// 2) in the network namespace of every local task: Kubernetes'
// NetworkPolicy semantics by peer, port and direction, and egress blocks by
// destination address.
//
// Render turns the rules, in terms of services, into one task's rule set in
// terms of addresses (from agent/tasks, the node's own engine); Apply
// installs it as the nftables table "inet swarmsec" in the task's
// namespace, replacing the one before in a single netlink transaction, so
// no packet ever meets a half-built or missing table. Flows reads the drops
// the tables log (NFLOG, in each namespace) as flow records
// (api/v1/agent.FlowRecord, which the leader reads back).
//
// Where a connection is judged: the side that opens it judges by the
// destination's VIP and task addresses (both its own egress and the
// destination's ingress), which holds whatever a load balancer later does
// to the source; the receiving side judges again by source, for sources
// that are task addresses. Replies (conntrack established, related) and
// loopback (Swarm's embedded DNS at 127.0.0.11) always pass.
package datapath
