package agent

import "time"

// The DNS report's log line: the agent logs the lookups its tasks made to
// Swarm's embedded resolver as JSON lines whose message is DNSMessage and
// whose attribute DNSKey holds a DNS, at most DNSPerLine lookups a line
// and fewer when their names are long (the engine splits log lines over
// 16 KiB, which no reader can parse).
// Readers of the version before skip the line (another message).
const (
	DNSMessage = "dns"
	DNSKey     = "dns"
	DNSPerLine = 40
)

// Classes of an answer of the embedded resolver.
const (
	// DNSVIP: an address of the answer is a service's virtual IP
	// (Service names it).
	DNSVIP = "vip"
	// DNSTasks: every address of the answer is a task's (tasks.<name>, or
	// a service in DNS round robin; Service names it when they are one
	// service's).
	DNSTasks = "tasks"
	// DNSExternal: an address of the answer is no service's or task's of
	// the node's networks (forwarded outside the Swarm).
	DNSExternal = "external"
	// DNSNXDomain: no such name (a service on no network the task shares
	// answers so too).
	DNSNXDomain = "nxdomain"
	// DNSEmpty: the name exists but the answer holds no address (an AAAA
	// question for an IPv4 service, a TXT or SRV question…).
	DNSEmpty = "empty"
	// DNSError: another error (SERVFAIL, REFUSED…).
	DNSError = "error"
)

// DNS is one report of one node's lookups: what the agent saw since its
// previous report. Counts are of that interval only, so a reader sums the
// reports of any window it wants.
type DNS struct {
	// Node is the node's hostname, as its agent sees it.
	Node string `json:"node"`
	// NodeID is the Swarm node ID; a reader replaces it with the node
	// Swarm says logged the line.
	NodeID string `json:"nodeID,omitempty"`
	// Time is the end of the interval; a reader replaces it with the time
	// Swarm logged the line.
	Time time.Time `json:"time"`
	// Interval is how long the report covers.
	Interval Duration `json:"interval"`
	// Part and Parts number the lines of one report (1-based).
	Part  int `json:"part"`
	Parts int `json:"parts"`
	// Dropped counts the lookups of the interval the agent saw and does not
	// report: those of aggregates it evicted (its bound on distinct
	// lookups keeps the most recent) before the report, and those over a
	// source service's share of one report (64 KiB of lookups a minute,
	// the most recently seen kept).
	Dropped uint64 `json:"dropped,omitempty"`
	// Unseen counts the answers of the interval the task's table counted
	// and the agent never got: over the kernel's rate limit (100 a second
	// per task and protocol), or a full NFLOG queue. Agents before it
	// leave it out.
	Unseen uint64 `json:"unseen,omitempty"`
	// Lookups are the aggregates that saw a lookup in the interval.
	Lookups []DNSLookup `json:"lookups"`
}

// DNSLookup is one aggregate: the answers of one class to one service's
// questions for one name and type.
type DNSLookup struct {
	// Source is the service whose task asked.
	Source string `json:"source"`
	// Name is the name asked, lower case, without the final dot.
	Name string `json:"name"`
	// Type is the question's type: A, AAAA, SRV, PTR…
	Type string `json:"type"`
	// Class is one of DNSVIP, DNSTasks, DNSExternal, DNSNXDomain,
	// DNSEmpty, DNSError.
	Class string `json:"class"`
	// Service is the service the answer's addresses belong to (DNSVIP,
	// DNSTasks); empty when they are several services', or an address is
	// several services' on overlays whose subnets overlap.
	Service string `json:"service,omitempty"`
	// Count is the answers seen in the interval.
	Count uint64 `json:"count"`
	// FirstSeen and LastSeen bound the answers the agent remembers (it
	// forgets an aggregate idle for its window, or evicted by newer ones).
	FirstSeen time.Time `json:"firstSeen"`
	LastSeen  time.Time `json:"lastSeen"`
}

// Key identifies the aggregate, whatever its counts.
func (l *DNSLookup) Key() string {
	return l.Source + "|" + l.Name + "|" + l.Type + "|" + l.Class + "|" + l.Service
}
