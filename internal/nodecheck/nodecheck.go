// Package nodecheck is what a node can and cannot do for swarmsec, checked
// by the node agent on its own node (a manager sees nothing of a worker's
// kernel or firewall) and read back by the controller: whether the node
// can carry encrypted overlay traffic, and what on it lets traffic around
// the policies.
//
// The agent logs its report as one line (Message, with the report under
// Key) at start, on every change and every Interval; the controller reads
// the latest report of each node from the agent service's logs through a
// manager, the one channel from a worker to a manager Swarm gives.
package nodecheck

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/swarmsec/swarmsec/internal/plan"
)

// Check IDs.
const (
	// CheckESP: the kernel has IPsec ESP with AES-GCM, which encrypted
	// overlay networks use between nodes.
	CheckESP = "esp"
	// CheckU32: the kernel has the u32 match Docker uses (since its 2023
	// fixes) to drop unencrypted VXLAN on encrypted networks.
	CheckU32 = "xt_u32"
	// CheckDataPath: the firewall does not drop the data path (VXLAN on
	// the data-path port, ESP as IP protocol 50).
	CheckDataPath = "data-path"
	// CheckICC: containers on the default bridge cannot talk to each other.
	CheckICC = "icc"
	// CheckPublishAll: no container outside Swarm publishes on every
	// address.
	CheckPublishAll = "published-all-addresses"
	// CheckUserlandProxy: no userland proxy holds a published port (its
	// traffic takes the INPUT path, past DOCKER-USER).
	CheckUserlandProxy = "userland-proxy"
	// CheckIPTables: Docker manages iptables here (DOCKER-USER exists), so
	// the agent can filter published ports.
	CheckIPTables = "iptables"
)

// Results of a check.
const (
	OK      = "ok"
	Warning = "warning"
	Failed  = "failed"
	Unknown = "unknown"
)

// Check is one finding.
type Check struct {
	ID      string `json:"id"`
	Result  string `json:"result"`
	Message string `json:"message"`
	// Fix says what to do when the result is not ok.
	Fix string `json:"fix,omitempty"`
}

// Report is one node's checks.
type Report struct {
	Node   string    `json:"node"`
	NodeID string    `json:"nodeID,omitempty"`
	Time   time.Time `json:"time"`
	Checks []Check   `json:"checks"`
}

// Log line of a report.
const (
	Message = "node checks"
	Key     = "report"
	// Interval is how often an agent logs its report even when nothing
	// changed; a reader looks back MaxAge for the latest one.
	Interval = 5 * time.Minute
	MaxAge   = 3 * Interval
)

// Get returns the check of that ID, if the report has it.
func (r *Report) Get(id string) (Check, bool) {
	i := slices.IndexFunc(r.Checks, func(c Check) bool { return c.ID == id })
	if i < 0 {
		return Check{}, false
	}
	return r.Checks[i], true
}

// CanEncrypt tells whether the node can carry encrypted overlay traffic,
// and whether that is known at all.
func (r *Report) CanEncrypt() (ok, known bool) {
	for _, id := range []string{CheckESP, CheckU32, CheckDataPath} {
		c, found := r.Get(id)
		switch {
		case !found || c.Result == Unknown:
			if id == CheckESP {
				return false, false
			}
		case c.Result == Failed:
			return false, true
		}
	}
	return true, true
}

// Equal reports whether two reports say the same, whenever made.
func (r *Report) Equal(o *Report) bool {
	return r.Node == o.Node && r.NodeID == o.NodeID && slices.Equal(r.Checks, o.Checks)
}

// Latest reads agent log lines, as a manager's service logs give them
// with timestamps and details, and returns the latest report of each node,
// by node ID. A line speaks only for the node Swarm says logged it and at
// the time Swarm logged it (the com.docker.swarm.node.id detail and the
// timestamp: swarmkit takes a node's logs only for its own tasks), so an
// agent on one node cannot speak for another, nor date its word ahead.
func Latest(r io.Reader) (map[string]Report, error) {
	out := map[string]Report{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	now := time.Now()
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, Message) {
			continue
		}
		at, nodeID, rest := prefixes(line)
		i := strings.IndexByte(rest, '{')
		if i < 0 || nodeID == "" || at.IsZero() || at.After(now.Add(time.Minute)) {
			continue
		}
		var l struct {
			Msg    string  `json:"msg"`
			Report *Report `json:"report"`
		}
		if json.Unmarshal([]byte(rest[i:]), &l) != nil || l.Msg != Message || l.Report == nil || l.Report.Node == "" {
			continue
		}
		l.Report.NodeID, l.Report.Time = nodeID, at
		if prev, ok := out[nodeID]; !ok || !at.Before(prev.Time) {
			out[nodeID] = *l.Report
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, bufio.ErrTooLong) {
		return out, err
	}
	return out, nil
}

// prefixes splits the engine's "TIMESTAMP DETAILS " off a log line.
func prefixes(line string) (at time.Time, nodeID, rest string) {
	ts, rest, _ := strings.Cut(line, " ")
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return time.Time{}, "", line
	}
	details, msg, _ := strings.Cut(rest, " ")
	for _, kv := range strings.Split(details, ",") {
		k, v, _ := strings.Cut(kv, "=")
		if k == "com.docker.swarm.node.id" {
			nodeID, _ = url.QueryUnescape(v)
		}
	}
	if nodeID == "" {
		return at, "", rest
	}
	return at, nodeID, msg
}

// Encryption is what the reports say of each node's encryption, by node
// ID, for plan.HoldUnencryptable; nodes whose report does not know are
// left out. While agents run (reports is not nil, if empty), a node
// without a report counts as one that cannot: its agent has not said.
func Encryption(reports map[string]Report) map[string]plan.NodeEncryption {
	if reports == nil {
		return nil
	}
	out := map[string]plan.NodeEncryption{plan.AnyOtherNode: {
		Why: "its node agent has not reported",
		Fix: "run the node agent on every node (the stack's global agent service); it reports within a minute of starting",
	}}
	for _, r := range reports {
		ok, known := r.CanEncrypt()
		if !known || r.NodeID == "" {
			continue
		}
		ne := plan.NodeEncryption{Hostname: r.Node, OK: ok}
		for _, id := range []string{CheckESP, CheckU32, CheckDataPath} {
			if c, found := r.Get(id); found && c.Result == Failed {
				ne.Why, ne.Fix = c.Message, c.Fix
				break
			}
		}
		out[r.NodeID] = ne
	}
	return out
}
