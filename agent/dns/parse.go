package dns

import (
	"encoding/binary"
	"net/netip"
	"strings"

	"golang.org/x/net/dns/dnsmessage"
)

// Answer is what one answer of the resolver says.
type Answer struct {
	// Name is the question's name, lower case, without the final dot.
	Name string
	// Type is the question's type (A, AAAA, SRV…).
	Type  string
	RCode dnsmessage.RCode
	// Addrs are the A and AAAA records of the answer section.
	Addrs []netip.Addr
}

// maxName bounds the names kept: a DNS name is at most 253 characters
// written out (255 on the wire).
const maxName = 253

// ParsePacket reads the DNS answer an IPv4 or IPv6 packet carries from
// port 53 (UDP, or a TCP segment holding one whole length-prefixed
// message). ok is false for anything else: a query, a TCP segment without
// a whole message, a malformed message.
func ParsePacket(p []byte) (Answer, bool) {
	var l4 byte
	var rest []byte
	switch {
	case len(p) >= 20 && p[0]>>4 == 4:
		ihl := int(p[0]&0x0f) * 4
		if ihl < 20 || len(p) < ihl {
			return Answer{}, false
		}
		l4, rest = p[9], p[ihl:]
	case len(p) >= 40 && p[0]>>4 == 6:
		l4, rest = p[6], p[40:]
	default:
		return Answer{}, false
	}
	switch l4 {
	case 17: // UDP
		if len(rest) < 8 || binary.BigEndian.Uint16(rest[0:2]) != 53 {
			return Answer{}, false
		}
		return ParseMessage(rest[8:])
	case 6: // TCP
		if len(rest) < 20 || binary.BigEndian.Uint16(rest[0:2]) != 53 {
			return Answer{}, false
		}
		off := int(rest[12]>>4) * 4
		if off < 20 || len(rest) < off+2 {
			return Answer{}, false
		}
		msg := rest[off:]
		n := int(binary.BigEndian.Uint16(msg[0:2]))
		if len(msg) < 2+n {
			return Answer{}, false // the message spans segments
		}
		return ParseMessage(msg[2 : 2+n])
	}
	return Answer{}, false
}

// ParseMessage reads a DNS response: its first question, its code and the
// addresses of its answer section.
func ParseMessage(b []byte) (Answer, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(b)
	if err != nil || !h.Response {
		return Answer{}, false
	}
	q, err := p.Question()
	if err != nil {
		return Answer{}, false
	}
	a := Answer{Name: normalize(q.Name.String()), Type: typeName(q.Type), RCode: h.RCode}
	if a.Name == "" {
		return Answer{}, false
	}
	if err := p.SkipAllQuestions(); err != nil {
		return a, true
	}
	for {
		rh, err := p.AnswerHeader()
		if err != nil {
			break // the end of the section, or a truncated one: what was read counts
		}
		switch rh.Type {
		case dnsmessage.TypeA:
			r, err := p.AResource()
			if err != nil {
				return a, true
			}
			a.Addrs = append(a.Addrs, netip.AddrFrom4(r.A))
		case dnsmessage.TypeAAAA:
			r, err := p.AAAAResource()
			if err != nil {
				return a, true
			}
			a.Addrs = append(a.Addrs, netip.AddrFrom16(r.AAAA).Unmap())
		default:
			if err := p.SkipAnswer(); err != nil {
				return a, true
			}
		}
	}
	return a, true
}

// normalize writes a name as it is aggregated: lower case, no final dot,
// at most maxName characters.
func normalize(n string) string {
	n = strings.ToLower(strings.TrimSuffix(n, "."))
	if len(n) > maxName {
		n = n[:maxName]
	}
	return n
}

// typeName is a question type as people write it ("A", "AAAA", "TYPE65").
func typeName(t dnsmessage.Type) string {
	s := t.String()
	if n, ok := strings.CutPrefix(s, "Type"); ok {
		return n
	}
	return "TYPE" + s // dnsmessage writes an unknown type as its number
}
