package flows

import (
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
)

// Conn is one connection as a namespace's conntrack holds it, in the
// direction it was opened.
type Conn struct {
	ID       uint32
	Protocol string
	Src, Dst netip.Addr
	DstPort  uint16
	// Bytes both ways so far (0 unless the namespace's conntrack counts).
	Bytes uint64
	// Open is false for a TCP connection already closing or closed (it
	// stays in the table for a while after).
	Open bool
	// Unanswered: a UDP flow no reply came back for (yet). Dump keeps no
	// other unanswered connection.
	Unanswered bool
}

// TCP states of conntrack after the connection is established.
const tcpEstablished = 3

// Dump reads the connections of the network namespace whose descriptor is
// fd (0: the caller's). The netlink socket is made in that namespace; the
// calling thread never leaves its own.
func Dump(fd int) ([]Conn, error) {
	c, err := conntrack.Dial(&netlink.Config{NetNS: fd})
	if err != nil {
		return nil, fmt.Errorf("conntrack: %w", err)
	}
	defer c.Close()
	flows, err := c.Dump(nil)
	if err != nil {
		return nil, fmt.Errorf("conntrack dump: %w", err)
	}
	out := make([]Conn, 0, len(flows))
	for _, f := range flows {
		if c, ok := toConn(f); ok {
			out = append(out, c)
		}
	}
	return out, nil
}

// toConn reads one entry: an answered connection, or a UDP flow not
// answered (one-way UDP: statsd, syslog, GELF; classify keeps it only to a
// service of the Swarm).
func toConn(f conntrack.Flow) (Conn, bool) {
	t := f.TupleOrig
	if !t.IP.SourceAddress.IsValid() {
		return Conn{}, false
	}
	c := Conn{
		ID: f.ID, Protocol: protocolName(t.Proto.Protocol),
		Src: t.IP.SourceAddress.Unmap(), Dst: t.IP.DestinationAddress.Unmap(), DstPort: t.Proto.DestinationPort,
		Bytes: f.CountersOrig.Bytes + f.CountersReply.Bytes, Open: true, Unanswered: !answered(f),
	}
	if c.Unanswered && t.Proto.Protocol != 17 {
		return Conn{}, false
	}
	if t.Proto.Protocol == 6 && f.ProtoInfo.TCP != nil {
		c.Open = f.ProtoInfo.TCP.State == tcpEstablished
	}
	return c, true
}

// answered reports whether a connection took place: for TCP, it completed
// its handshake (conntrack's ASSURED, kept after it closes); for the
// others, a reply came back. An attempt nobody answered (a SYN the peer's
// rules dropped stays SYN_SENT here for two minutes; a UDP packet to a
// host that is down) is no flow: init --from-traffic would admit it. What
// the agents' own rules refused is in their drop records; a TCP attempt a
// closed port refuses leaves conntrack at once. UDP is the exception
// classify makes: one-way UDP to a service never gets a reply.
func answered(f conntrack.Flow) bool {
	if f.TupleOrig.Proto.Protocol == 6 {
		return f.Status.Assured()
	}
	return f.Status.SeenReply()
}

func protocolName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 132:
		return "sctp"
	case 1, 58:
		return "icmp"
	}
	return fmt.Sprintf("ip%d", p)
}
