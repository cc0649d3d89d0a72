package compile

import (
	"encoding/json"
	v1 "github.com/swarmsec/swarmsec/api/v1"

	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/state"
)

// Original is what a service had before swarmsec isolated it, recorded in
// its swarmsec.io/original label so that ending the isolation loses nothing,
// across restarts of swarmsec too.
type Original struct {
	Networks []OriginalAttachment `json:"networks"`
	Ports    []swarm.PortConfig   `json:"ports,omitempty"`
}

// OriginalAttachment names the network as well as its ID: a network
// replaced by one of the same name (an encryption migration) is found again.
type OriginalAttachment struct {
	Name       string            `json:"name"`
	ID         string            `json:"id,omitempty"`
	Aliases    []string          `json:"aliases,omitempty"`
	DriverOpts map[string]string `json:"driverOpts,omitempty"`
}

// DecodeOriginal returns the recorded original of a service, or nil when it
// has none or the label does not parse (then it is recorded afresh).
func DecodeOriginal(s *state.Service) *Original {
	raw, ok := s.Labels[v1.LabelOriginal]
	if !ok {
		return nil
	}
	var o Original
	if err := json.Unmarshal([]byte(raw), &o); err != nil {
		return nil
	}
	return &o
}

// Encode is the label value of the record.
func (o *Original) Encode() string {
	b, _ := json.Marshal(o)
	return string(b)
}
