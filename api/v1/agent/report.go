package agent

import (
	"slices"
	"time"
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
	// CheckRules: the delivered rules file was usable; when it is missing
	// or broken, the agent keeps the last good rules and says so here.
	CheckRules = "rules"
)

// Results of a check.
const (
	OK      = "ok"
	Warning = "warning"
	Failed  = "failed"
	Unknown = "unknown"
)

// The report's log line: the agent logs it as one JSON line whose message
// is ReportMessage and whose attribute ReportKey holds the Report.
const (
	ReportMessage = "node checks"
	ReportKey     = "report"
	// ReportInterval is how often an agent logs its report even when
	// nothing changed; a reader looks back ReportMaxAge for the latest.
	ReportInterval = 5 * time.Minute
	ReportMaxAge   = 3 * ReportInterval
)

// Check is one finding.
type Check struct {
	// ID is one of the Check* constants.
	ID string `json:"id"`
	// Result is OK, Warning, Failed or Unknown.
	Result string `json:"result"`
	// Message says what the check found.
	Message string `json:"message"`
	// Fix says what to do when the result is not ok.
	Fix string `json:"fix,omitempty"`
}

// Report is one node's checks.
type Report struct {
	// Node is the node's hostname, as its agent sees it.
	Node string `json:"node"`
	// NodeID is the Swarm node ID. A reader replaces it with the node
	// Swarm says logged the report, so no agent speaks for another node.
	NodeID string `json:"nodeID,omitempty"`
	// Time is when the checks ran; a reader replaces it with the time
	// Swarm logged the report.
	Time time.Time `json:"time"`
	// Checks are the findings, in the order the agent ran them.
	Checks []Check `json:"checks"`
	// Rules names the rules config the agent holds in force on the node
	// (published ports and per-task rules applied, no error), empty when
	// it holds none or its last sync failed: the leader compares it with
	// the config it delivered (the node's Enforced condition).
	Rules string `json:"rules,omitempty"`
}

// Get returns the check of that ID, if the report has it.
func (r *Report) Get(id string) (Check, bool) {
	i := slices.IndexFunc(r.Checks, func(c Check) bool { return c.ID == id })
	if i < 0 {
		return Check{}, false
	}
	return r.Checks[i], true
}

// CanEncrypt tells whether the node can carry encrypted overlay traffic,
// and whether that is known at all (the ESP check decides that).
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
	return r.Node == o.Node && r.NodeID == o.NodeID && r.Rules == o.Rules && slices.Equal(r.Checks, o.Checks)
}
