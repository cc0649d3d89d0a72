package flows

import (
	"net/netip"
	"testing"

	"github.com/ti-mo/conntrack"
)

// Only what was answered is a connection: an unanswered SYN or UDP packet
// (the peer dropped it, or nobody is there) would otherwise become a rule
// of init --from-traffic.
func TestAnsweredOnly(t *testing.T) {
	flow := func(proto uint8, st conntrack.Status) conntrack.Flow {
		var f conntrack.Flow
		f.TupleOrig.Proto.Protocol = proto
		f.Status = st
		return f
	}
	for _, c := range []struct {
		name string
		f    conntrack.Flow
		want bool
	}{
		{"tcp established (assured)", flow(6, conntrack.StatusConfirmed|conntrack.StatusSeenReply|conntrack.StatusAssured), true},
		{"tcp SYN unanswered", flow(6, conntrack.StatusConfirmed), false},
		{"tcp SYN/ACK seen, handshake not done", flow(6, conntrack.StatusConfirmed|conntrack.StatusSeenReply), false},
		{"udp answered", flow(17, conntrack.StatusConfirmed|conntrack.StatusSeenReply), true},
		{"udp unanswered", flow(17, conntrack.StatusConfirmed), false},
		{"icmp echo answered", flow(1, conntrack.StatusConfirmed|conntrack.StatusSeenReply), true},
		{"icmp echo unanswered", flow(1, conntrack.StatusConfirmed), false},
	} {
		if got := answered(c.f); got != c.want {
			t.Errorf("%s: answered %v, want %v", c.name, got, c.want)
		}
	}
}

// Dump keeps an unanswered UDP flow, marked, for classify to judge; no
// other unanswered entry.
func TestToConnKeepsUnansweredUDPOnly(t *testing.T) {
	flow := func(proto uint8, st conntrack.Status) conntrack.Flow {
		var f conntrack.Flow
		f.TupleOrig.Proto.Protocol = proto
		f.TupleOrig.IP.SourceAddress = netip.MustParseAddr("10.0.1.3")
		f.TupleOrig.IP.DestinationAddress = netip.MustParseAddr("10.0.1.9")
		f.Status = st
		return f
	}
	for _, c := range []struct {
		name             string
		f                conntrack.Flow
		keep, unanswered bool
	}{
		{"udp answered", flow(17, conntrack.StatusConfirmed|conntrack.StatusSeenReply), true, false},
		{"udp unanswered", flow(17, conntrack.StatusConfirmed), true, true},
		{"tcp SYN unanswered", flow(6, conntrack.StatusConfirmed), false, false},
		{"icmp unanswered", flow(1, conntrack.StatusConfirmed), false, false},
	} {
		got, ok := toConn(c.f)
		if ok != c.keep || got.Unanswered != c.unanswered {
			t.Errorf("%s: kept %v unanswered %v, want %v %v", c.name, ok, got.Unanswered, c.keep, c.unanswered)
		}
	}
}
