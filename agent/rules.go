package agent

import (
	"bytes"
	"encoding/json"
	"fmt"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// DecodeRules reads a delivered rules file, refusing anything else: a
// field this agent does not know could be a restriction it would drop, so
// such a file changes nothing (fail closed).
func DecodeRules(data []byte) (*agentv1.Rules, error) {
	var d agentv1.Rules
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, err // the caller names the file
	}
	if d.APIVersion != agentv1.APIVersion || d.Kind != agentv1.KindRules {
		return nil, fmt.Errorf("not swarmsec agent rules (apiVersion %q, kind %q)", d.APIVersion, d.Kind)
	}
	for _, p := range d.Ports {
		if p.Port == 0 || (p.Protocol != v1.ProtocolTCP && p.Protocol != v1.ProtocolUDP && p.Protocol != v1.ProtocolSCTP) {
			return nil, fmt.Errorf("port %s of %s: not a published port", p.Key(), p.Service)
		}
	}
	return &d, nil
}
