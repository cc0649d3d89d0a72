package agent

import "time"

// A flow record's log line: the agent logs each connection attempt its
// per-task rules dropped (rate-limited) as a JSON line whose message is
// FlowRecordMessage, whose attribute FlowRecordKey holds a FlowRecord and
// whose attribute "suppressed" counts the records the rate limit dropped
// just before it. swarmsec flows reads them back from the agent service's
// logs: one by one with --verdict blocked, summed into blocked aggregates
// otherwise.
const (
	FlowRecordMessage = "flow"
	FlowRecordKey     = "flow"
)

// VerdictBlocked is the verdict of a connection attempt the rules
// dropped: the word swarmsec flows uses beside allowed and would-block
// (Hubble's DROPPED).
const VerdictBlocked = "blocked"

// VerdictWouldBlock is the verdict of a connection an audit-mode policy
// would drop were it enforced: the agent let it pass and reported it.
const VerdictWouldBlock = "would-block"

// VerdictAllowed is the verdict of a new connection a rule with log: all
// admitted.
const VerdictAllowed = "allowed"

// FlowEndpoint is one side of a flow record.
type FlowEndpoint struct {
	// Service and Task are empty for an address outside the cluster
	// (Task also for a VIP).
	Service string `json:"service,omitempty"`
	Task    string `json:"task,omitempty"`
	IP      string `json:"ip"`
	Port    uint16 `json:"port,omitempty"`
}

// FlowRecord is one judged connection attempt, shaped like Hubble's flow
// record: blocked, would-block (an audit-mode policy's log-only rules) or
// allowed (a rule with log: all).
type FlowRecord struct {
	Time        time.Time    `json:"time"`
	Node        string       `json:"node"`
	Source      FlowEndpoint `json:"source"`
	Destination FlowEndpoint `json:"destination"`
	// Protocol is tcp, udp, sctp, icmp, or proto-N for another.
	Protocol string `json:"protocol"`
	Verdict  string `json:"verdict"`
	// Direction is egress when the opening side's table judged it,
	// ingress when the receiving side's did.
	Direction string `json:"direction"`
	// Policy says what decided: the policies that isolate the side that
	// refused, after "default deny" (blocked, would-block), or the rules
	// that admitted it (allowed).
	Policy string `json:"policy"`
}
