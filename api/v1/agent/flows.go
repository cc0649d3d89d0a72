package agent

import (
	"fmt"
	"time"
)

// The flows report's log line: the agent logs its observed flows as JSON
// lines whose message is FlowsMessage and whose attribute FlowsKey holds a
// Flows, at most FlowsPerLine flows a line (the engine splits log lines
// over 16 KiB).
const (
	FlowsMessage = "flows"
	FlowsKey     = "flows"
	FlowsPerLine = 40
)

// Kinds of flow destination.
const (
	// FlowService: between two tasks of the Swarm (Source and Destination
	// are services).
	FlowService = "service"
	// FlowPublished: from outside the Swarm into a task (a published port;
	// Source is Outside, SourceBlock the client's block).
	FlowPublished = "published"
	// FlowExternal: from a task to an address no service has
	// (DestinationBlock is its block).
	FlowExternal = "external"
)

// Outside names the other end of a flow that is no service.
const Outside = "outside"

// Flows is one report of one node's observed connections: what the agent's
// conntrack reads saw since its previous report. Counts are of that
// interval only, so a reader sums the reports of any window it wants.
type Flows struct {
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
	// Dropped counts the connections of the interval the agent did not
	// aggregate: their key would have passed its bound on distinct flows.
	Dropped uint64 `json:"dropped,omitempty"`
	// Flows are the aggregates that saw a connection in the interval.
	Flows []Flow `json:"flows"`
}

// Flow is one aggregate: the connections between one source and one
// destination on one port and protocol.
type Flow struct {
	// Kind is FlowService, FlowPublished or FlowExternal.
	Kind string `json:"kind"`
	// Source is the client's service, or Outside.
	Source string `json:"source"`
	// SourceBlock is an outside client's block (a /24 or a /64).
	SourceBlock string `json:"sourceBlock,omitempty"`
	// Destination is the server's service, or Outside.
	Destination string `json:"destination"`
	// DestinationBlock is an outside server's block (a /24 or a /64).
	DestinationBlock string `json:"destinationBlock,omitempty"`
	// Port is the destination port the server's task sees (for a
	// published port, its target port), 0 for protocols without ports.
	Port uint16 `json:"port"`
	// Protocol is tcp, udp, sctp or icmp.
	Protocol string `json:"protocol"`
	// Connections are the connections first seen in the interval.
	Connections uint64 `json:"connections"`
	// Unanswered are those of Connections no reply came back for when
	// first seen: UDP from a task to a service's task or VIP (one-way:
	// statsd, syslog, GELF). No other unanswered attempt is counted.
	Unanswered uint64 `json:"unanswered,omitempty"`
	// Open are the connections open at the interval's last read.
	Open uint64 `json:"open,omitempty"`
	// Bytes both ways in the interval, when the node's conntrack counts
	// them (net.netfilter.nf_conntrack_acct).
	Bytes uint64 `json:"bytes,omitempty"`
	// FirstSeen and LastSeen bound the sightings the agent remembers (it
	// forgets an aggregate idle for its window).
	FirstSeen time.Time `json:"firstSeen"`
	LastSeen  time.Time `json:"lastSeen"`
}

// Key identifies the aggregate, whatever its counts.
func (f *Flow) Key() string {
	return fmt.Sprintf("%s|%s|%s|%s|%s|%d/%s", f.Kind, f.Source, f.SourceBlock, f.Destination, f.DestinationBlock, f.Port, f.Protocol)
}

// Target writes the destination as people read it: "shop_db:5432/tcp",
// "203.0.113.0/24:443/tcp".
func (f *Flow) Target() string {
	dst := f.Destination
	if f.DestinationBlock != "" {
		dst = f.DestinationBlock
	}
	if f.Port == 0 {
		return dst + "/" + f.Protocol
	}
	return fmt.Sprintf("%s:%d/%s", dst, f.Port, f.Protocol)
}

// From writes the source as people read it.
func (f *Flow) From() string {
	if f.SourceBlock != "" {
		return f.Source + " " + f.SourceBlock
	}
	return f.Source
}

// Duration is a time.Duration that reads and writes as "1m0s".
type Duration time.Duration

// MarshalText writes the duration as time.Duration prints it.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
