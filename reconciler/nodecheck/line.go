package nodecheck

import "time"

// SplitLine splits an agent log line, as a manager's service logs give it
// with timestamps and details, into the time Swarm logged it, the node
// Swarm says logged it and the message; nodeID is empty when the line
// has no node detail, and such a line speaks for no node. Every reader of
// the agents' lines (node checks, flows) judges them so.
func SplitLine(line string) (at time.Time, nodeID, rest string) { return prefixes(line) }
