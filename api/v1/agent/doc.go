// Package agent holds the wire formats between the leader and the node
// agents, versioned with the swarmsec.io/v1 manifests: the rules document
// the leader writes into a Swarm config and every agent reads (Rules), and
// the node checks report an agent logs and the leader reads back from the
// agent service's logs (Report), and the observed flows and the records of
// the connection attempts its per-task rules dropped, which an agent logs
// the same way (Flows, FlowRecord).
//
// It is data only, like api/v1: types, constants and getters, no I/O, no
// Docker or memdb imports. Both sides import it and neither imports the
// other: the agent (agent) reads the rules and writes the
// reports; the leader (reconciler/agentrules, reconciler/nodecheck) builds the
// rules from a plan and reads the reports into status.
//
// The JSON is a contract between binaries of different versions (a leader
// and agents are upgraded one task at a time): a change an agent of the
// version before cannot read, or a report a leader of the version before
// cannot, belongs in a new API version, not here.
package agent
