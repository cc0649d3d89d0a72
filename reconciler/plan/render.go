package plan

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/state"
)

// How an action says why: reasons rendered from its change when asked
// for, so a plan of thousands of updates builds no sentences nobody reads.

// What a service update's reasons say beyond the change itself. A first
// converge of 10,000 services plans 10,000 updates whose sentences only
// plan and the logs print, so Why renders them when asked for, from two
// fields of the change packed beside Isolates: whyLabel, what happens to
// the record label (zero: not planned by Diff), and whyDetach, why each of
// the first 16 of Detach goes, 2 bits each.
type labelWhy uint8

const (
	labelUnplanned labelWhy = iota
	labelKept
	labelRecord  // the label comes to name the service's record
	labelRestore // the label goes: isolation ended
)

type detachWhy uint32

const (
	detachPlain     detachWhy = iota // an untrusted network, the service not isolated
	detachUntrusted                  // an untrusted network, the service isolated
	detachUnneeded                   // a managed network no policy puts it on
)

// detachKind says why a service leaves network nw.
func detachKind(nw *state.Network, isolated bool) detachWhy {
	switch {
	case isolated && !compile.Trusted(nw):
		return detachUntrusted
	case compile.Trusted(nw):
		return detachUnneeded
	}
	return detachPlain
}

// detachKinds is how many of Detach whyDetach says why for; Diff renders
// the reasons of a change with more at once.
const detachKinds = 16

func (ch *ServiceChange) setDetachWhy(i int, k detachWhy) {
	if i < detachKinds {
		ch.whyDetach |= uint32(k) << (2 * i)
	}
}

func (ch *ServiceChange) detachReason(i int) detachWhy {
	if i >= detachKinds {
		return detachPlain
	}
	return detachWhy(ch.whyDetach>>(2*i)) & 3
}

// Why returns the action's reasons, one change each.
func (a Action) Why() []string {
	if a.Reasons != nil || a.Kind != ActionUpdateService || a.Service == nil || a.Service.whyLabel == labelUnplanned {
		return a.Reasons
	}
	return a.render(a.Service.detachReason)
}

// render writes a service update's reasons, with detach saying why its
// i-th network in Detach goes.
func (a Action) render(detach func(i int) detachWhy) []string {
	ch := a.Service
	var out []string
	if ch.Isolates {
		out = append(out, "isolate: selected by "+strings.Join(a.Policies, ", "))
	}
	for _, n := range ch.Attach {
		if slices.Contains(ch.Detach, n) {
			out = append(out, fmt.Sprintf("reattach %s with its aliases", n))
			continue
		}
		out = append(out, "attach "+n)
	}
	for i, n := range ch.Detach {
		if slices.Contains(ch.Attach, n) {
			continue
		}
		switch detach(i) {
		case detachUntrusted:
			out = append(out, fmt.Sprintf("detach %s: isolated services use managed networks only", n))
		case detachUnneeded:
			out = append(out, fmt.Sprintf("detach %s: no policy connects it there", n))
		default:
			out = append(out, "detach "+n)
		}
	}
	out = append(out, ch.Ports...)
	switch ch.whyLabel {
	case labelRecord:
		out = append(out, fmt.Sprintf("label %s=%s names its record", v1.LabelOriginal, ch.Target.Original))
	case labelRestore:
		out = append(out, "isolation ended: restore its original networks and ports")
	}
	if len(out) == 0 {
		out = []string{"update " + v1.LabelOriginal}
	}
	if ch.CreateRecord != nil {
		out = append(out, "record its networks and ports in config "+compile.RecordName(a.ID)+" to restore them when isolation ends")
	}
	return out
}

// MarshalJSON writes the action with its reasons rendered.
func (a Action) MarshalJSON() ([]byte, error) {
	type plain Action
	p := plain(a)
	p.Reasons = a.Why()
	return json.Marshal(p)
}

func networkReason(dn *compile.DesiredNetwork) string {
	switch dn.Purpose {
	case v1.PurposeEgress:
		return fmt.Sprintf("encrypted overlay giving %s a gateway (outside access, published ports) without peers", strings.Join(dn.Members, ", "))
	case v1.PurposeIsolated:
		return fmt.Sprintf("encrypted internal overlay keeping %s off every shared network", strings.Join(dn.Members, ", "))
	}
	return fmt.Sprintf("encrypted internal overlay for %s", strings.Join(dn.Members, ", "))
}
