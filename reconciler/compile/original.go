package compile

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/state"
)

// Original is what a service had before swarmsec isolated it, so that
// ending the isolation loses nothing, across restarts of swarmsec too. It is
// kept in a Swarm config of its own (see RecordName), where a service update
// cannot reach it: anyone who can update a service can rewrite its labels.
type Original struct {
	// Service is the ID of the service it belongs to.
	Service  string               `json:"service,omitempty"`
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

// Encode is the record's data.
func (o *Original) Encode() []byte {
	b, _ := json.Marshal(o) // plain data: cannot fail
	return b
}

// RecordName is the name of the config that records a service's original.
func RecordName(serviceID string) string { return recordPrefix + serviceID }

const recordPrefix = "swarmsec-original-"

// RecordService is the ID of the service a record's name names ("" when
// name is no record's).
func RecordService(name string) string {
	id, ok := strings.CutPrefix(name, recordPrefix)
	if !ok {
		return ""
	}
	return id
}

// RecordLabels are the labels of a record config.
func RecordLabels() map[string]string {
	return map[string]string{v1.LabelManaged: "true", v1.LabelPurpose: v1.PurposeOriginal}
}

// Where an original came from.
const (
	// FromRecord: the service's record config.
	FromRecord = "record"
	// FromLabel: a record kept in the service's label by an earlier
	// swarmsec, to be moved into a config.
	FromLabel = "label"
)

// Problems with a service's record, the reasons of a Restorable=False
// condition.
const (
	// ReasonRecordMissing: the service carries swarmsec's label but no
	// record of what to restore can be found.
	ReasonRecordMissing = "RecordMissing"
	// ReasonRecordInvalid: a record exists but cannot be used.
	ReasonRecordInvalid = "RecordInvalid"
	// ReasonRecordMismatch: the service's label does not name its record.
	ReasonRecordMismatch = "RecordMismatch"
	// ReasonRecordUntrusted: the label holds a record in the form an
	// earlier swarmsec wrote, on a service swarmsec cannot have isolated.
	// The plan treats the service as having none and only notes it.
	ReasonRecordUntrusted = "RecordUntrusted"
)

// Problem is something wrong with a service's record.
type Problem struct {
	Service string `json:"service"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// Records indexes the observed record configs by name.
type Records map[string][]*state.Record

// LoadRecords indexes the records in the store.
func LoadRecords(tx State) (Records, error) {
	all, err := tx.Records()
	if err != nil {
		return nil, err
	}
	out := make(Records, len(all))
	for _, r := range all {
		out[r.Name] = append(out[r.Name], r)
	}
	return out, nil
}

// of returns the record configs named for a service. The name is built
// on the stack: a plan looks up every isolated service's.
func (rs Records) of(serviceID string) []*state.Record {
	if len(rs) == 0 {
		return nil
	}
	var buf [96]byte
	return rs[string(append(append(buf[:0], recordPrefix...), serviceID...))]
}

// ID is the ID of a service's record config, "" when it has none.
func (rs Records) ID(s *state.Service) string {
	if r := rs.of(s.ID); len(r) > 0 {
		return r[0].ID
	}
	return ""
}

// Resolver finds the network an attachment target names in the store: an
// ID, or a name in specs written by hand through the API.
func Resolver(tx State) func(target string) *state.Network {
	return func(target string) *state.Network {
		if n := tx.Network(target); n != nil {
			return n
		}
		return tx.NetworkNamed(target)
	}
}

// Of finds what to restore for a service: its record config, or a record
// an earlier swarmsec kept in its label. The record is validated: it must
// name this service and parse. from says where it came from ("" when there
// is none); problem what is wrong, if anything. resolve finds the network
// an attachment names: a record in the label is honoured only on a
// service on swarmsec's networks alone, as an earlier swarmsec left what it
// isolated, since anyone who can update a service can write its labels.
func (rs Records) Of(s *state.Service, resolve func(target string) *state.Network) (o *Original, from string, problem *Problem) {
	label, labelled := s.Labels[v1.LabelOriginal]
	for _, rec := range rs.of(s.ID) {
		if rec.Labels[v1.LabelManaged] != "true" || rec.Labels[v1.LabelPurpose] != v1.PurposeOriginal {
			continue
		}
		var got Original
		if err := json.Unmarshal(rec.Data, &got); err != nil || got.Service != s.ID {
			return nil, "", &Problem{Service: s.Name, Reason: ReasonRecordInvalid, Message: fmt.Sprintf(
				"record %s of service %s does not parse or names another service: swarmsec cannot tell what to restore; remove the config and re-deploy the service", rec.Name, s.Name)}
		}
		if labelled && label != rec.Name {
			problem = &Problem{Service: s.Name, Reason: ReasonRecordMismatch, Message: fmt.Sprintf(
				"service %s: its %s label does not name its record %s (changed by hand?); the record is kept and the label set again", s.Name, v1.LabelOriginal, rec.Name)}
		}
		return &got, FromRecord, problem
	}
	if !labelled {
		return nil, "", nil
	}
	if strings.HasPrefix(label, "{") {
		if !onManagedOnly(s, resolve) {
			return nil, "", &Problem{Service: s.Name, Reason: ReasonRecordUntrusted, Message: fmt.Sprintf(
				"service %s carries a %s label in the form an earlier swarmsec kept its record in, but it is on networks swarmsec never leaves an isolated service on: swarmsec cannot tell it wrote the label and ignores it; remove the label",
				s.Name, v1.LabelOriginal)}
		}
		var got Original
		if err := json.Unmarshal([]byte(label), &got); err == nil {
			got.Service = s.ID
			return &got, FromLabel, nil
		}
	}
	return nil, "", &Problem{Service: s.Name, Reason: ReasonRecordMissing, Message: fmt.Sprintf(
		"service %s carries %s but its record %s is missing or unreadable: swarmsec cannot tell what to restore, so it keeps the service's networks as they are when isolation ends; re-deploy the service to give it its networks back",
		s.Name, v1.LabelOriginal, RecordName(s.ID))}
}

// onManagedOnly reports whether a service is on swarmsec's networks and no
// other, the one state swarmsec leaves an isolated service in.
func onManagedOnly(s *state.Service, resolve func(target string) *state.Network) bool {
	if resolve == nil || len(s.Networks) == 0 {
		return false
	}
	for _, a := range s.Networks {
		if !Trusted(resolve(a.Target)) {
			return false
		}
	}
	return true
}
