package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// APIVersion is the rules document's apiVersion: the agent's wire formats
// are versioned with the manifests.
const APIVersion = v1.APIVersion

// KindRules names the rules document, so an agent refuses any other file.
const KindRules = "AgentRules"

// RulesPath is where the agent service mounts the rules config, and so
// where the agent reads them.
const RulesPath = "/etc/swarmsec/agent-rules.json"

// RulesConfigPrefix starts the name of every rules config.
const RulesConfigPrefix = "swarmsec-agent-rules-"

// Rules is the document the leader delivers to every agent: the published
// ports whose sources or logging the policies restrict.
type Rules struct {
	// APIVersion must be APIVersion.
	APIVersion string `json:"apiVersion"`
	// Kind must be KindRules.
	Kind string `json:"kind"`
	// Revision is the document's revision (RulesRevision); absent, 1:
	// published ports only. Set only when Services is not empty, so rules
	// without them keep the bytes, and so the config, of the version before.
	Revision int `json:"revision,omitempty"`
	// Ports are the restricted published ports, sorted by Key; never null
	// (an empty list tells the agent to remove its rules).
	Ports []Port `json:"ports"`
	// Services are the per-task rules of every service a policy selects,
	// sorted by name; absent, the agent removes its per-task rules.
	Services []ServiceRules `json:"services,omitempty"`
	// Audit are the per-service rules of the audit-mode policies, as they
	// would be enforced, sorted by name: the agent drops nothing for them,
	// and reports as would-block each new connection that Services and
	// Audit enforced together would drop (WithAudit).
	Audit []ServiceRules `json:"audit,omitempty"`
}

// Port is one restricted published port of one service, as the compile
// admits it.
type Port struct {
	// Service is the Swarm service publishing the port.
	Service string `json:"service"`
	// Port is the published port number.
	Port uint16 `json:"port"`
	// Protocol is tcp, udp or sctp.
	Protocol v1.Protocol `json:"protocol"`
	// Any admits every source (the port is here only to be logged).
	Any bool `json:"any,omitempty"`
	// From are the admitted blocks: the union of each block less its
	// exceptions.
	From []v1.SourceBlock `json:"from,omitempty"`
	// Log is which new connections the agent logs (empty: none).
	Log v1.PortLog `json:"log,omitempty"`
}

// Key is "port/protocol": the agents tell connections apart by it alone.
func (p Port) Key() string { return fmt.Sprintf("%d/%s", p.Port, p.Protocol) }

// ConfigName names a rules config after its content (the encoded
// document), so the same rules are the same config: the leader creates it
// under that name and the agent reports which one it runs.
func ConfigName(data []byte) string {
	sum := sha256.Sum256(data)
	return RulesConfigPrefix + hex.EncodeToString(sum[:])[:12]
}
