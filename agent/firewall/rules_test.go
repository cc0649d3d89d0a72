package firewall

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"pgregory.net/rapid"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// packet is what the chain sees of a packet towards a published port.
type packet struct {
	src      netip.Addr
	protocol v1.Protocol
	origPort uint16
	dnat     bool // false: a container's own connection out, not a published port
	new      bool
}

// eval runs the rendered rules as iptables would: the first rule whose
// matches all hold and whose target is terminal decides; NFLOG logs and goes
// on; falling off the chain returns.
func eval(t *testing.T, rules [][]string, p packet) (verdict string, logs []string) {
	return evalChains(t, rules, p, nil)
}

// evalChains is eval where a target may be another chain: jump calls it,
// and its falling off or RETURN goes on with the next rule.
func evalChains(t *testing.T, rules [][]string, p packet, chain func(string) ([][]string, bool)) (verdict string, logs []string) {
	for _, r := range rules {
		ok, target, prefix := true, "", ""
		for i := 0; i < len(r); i++ {
			arg := func() string { i++; return r[i] }
			switch r[i] {
			case "-p":
				v := arg()
				ok = ok && v == string(p.protocol)
			case "--ctstate":
				switch st := arg(); st {
				case "DNAT":
					ok = ok && p.dnat
				case "NEW":
					ok = ok && p.new
				default:
					t.Fatalf("unknown state %s in %v", st, r)
				}
			case "--ctorigdstport":
				v := arg()
				ok = ok && v == strconv.Itoa(int(p.origPort))
			case "-s":
				v := arg()
				ok = ok && netip.MustParsePrefix(v).Contains(p.src)
			case "-j":
				target = arg()
			case "--nflog-prefix":
				prefix = arg()
			case "-m", "--ctdir", "--nflog-group", "--comment", "--limit", "--limit-burst":
				arg()
			default:
				t.Fatalf("unknown argument %s in %v", r[i], r)
			}
		}
		if !ok {
			continue
		}
		switch target {
		case "NFLOG":
			logs = append(logs, prefix)
		case "RETURN", "DROP":
			return target, logs
		case "": // a comment, nothing to do
		default:
			if chain == nil {
				t.Fatalf("unknown target %s in %v", target, r)
			}
			sub, ok := chain(target)
			if !ok {
				t.Fatalf("jump to missing chain %s in %v", target, r)
			}
			v, l := evalChains(t, sub, p, chain)
			logs = append(logs, l...)
			if v == "DROP" {
				return v, logs
			}
		}
	}
	return "RETURN", logs
}

// admits is the policy's meaning, read from the spec itself: a source is
// admitted when a block holds it and none of that block's exceptions does.
func admits(p agentv1.Port, src netip.Addr) bool {
	if p.Any {
		return true
	}
	for _, b := range p.From {
		if !netip.MustParsePrefix(b.CIDR).Contains(src) {
			continue
		}
		if !slices.ContainsFunc(b.Except, func(e string) bool { return netip.MustParsePrefix(e).Contains(src) }) {
			return true
		}
	}
	return false
}

func genAddr(t *rapid.T, v6 bool, label string) netip.Addr {
	if v6 {
		b := rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, label)
		return netip.AddrFrom16([16]byte(b))
	}
	b := rapid.SliceOfN(rapid.Byte(), 4, 4).Draw(t, label)
	return netip.AddrFrom4([4]byte(b))
}

// inside draws an address of pfx.
func inside(t *rapid.T, pfx netip.Prefix, label string) netip.Addr {
	a := genAddr(t, pfx.Addr().Is6(), label).AsSlice()
	base := pfx.Addr().AsSlice()
	for i := range a {
		keep := min(max(pfx.Bits()-8*i, 0), 8) // network bits in this byte
		mask := byte(0xff << (8 - keep))
		a[i] = base[i]&mask | a[i]&^mask
	}
	out, _ := netip.AddrFromSlice(a)
	return out
}

func genPort(t *rapid.T, n int) agentv1.Port {
	p := agentv1.Port{
		Service:  "svc" + strconv.Itoa(n),
		Port:     uint16(rapid.IntRange(1, 4).Draw(t, "port")),
		Protocol: rapid.SampledFrom([]v1.Protocol{v1.ProtocolTCP, v1.ProtocolUDP}).Draw(t, "protocol"),
		Any:      rapid.Bool().Draw(t, "any"),
		Log:      rapid.SampledFrom([]v1.PortLog{v1.PortLogNone, v1.PortLogBlocked, v1.PortLogAll}).Draw(t, "log"),
	}
	if p.Any {
		return p
	}
	for range rapid.IntRange(1, 3).Draw(t, "blocks") {
		v6 := rapid.Bool().Draw(t, "v6")
		maxBits := 30
		if v6 {
			maxBits = 124
		}
		bits := rapid.IntRange(1, maxBits).Draw(t, "bits")
		block := netip.PrefixFrom(genAddr(t, v6, "block"), bits).Masked()
		sb := v1.SourceBlock{CIDR: block.String()}
		for range rapid.IntRange(0, 2).Draw(t, "excepts") {
			eb := rapid.IntRange(bits+1, block.Addr().BitLen()).Draw(t, "exceptBits")
			sb.Except = append(sb.Except, netip.PrefixFrom(inside(t, block, "except"), eb).Masked().String())
		}
		p.From = append(p.From, sb)
	}
	return p
}

// Whatever the blocks and exceptions, the chain drops exactly the published
// connections the policies do not admit, logs what they ask, and leaves
// every connection that was not DNATed to a published port alone.
func TestRulesAdmitExactlyThePolicies(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		var ports []agentv1.Port
		for i := range rapid.IntRange(1, 3).Draw(rt, "ports") {
			p := genPort(rt, i)
			if !slices.ContainsFunc(ports, func(q agentv1.Port) bool { return q.Key() == p.Key() }) {
				ports = append(ports, p)
			}
		}
		rules := map[Family][][]string{}
		for _, f := range []Family{IPv4, IPv6} {
			r, err := Rules(f, ports, 7)
			if err != nil {
				rt.Fatal(err)
			}
			rules[f] = r
		}
		for range 20 {
			p := ports[rapid.IntRange(0, len(ports)-1).Draw(rt, "target")]
			var src netip.Addr
			if len(p.From) > 0 && rapid.Bool().Draw(rt, "near") {
				b := p.From[rapid.IntRange(0, len(p.From)-1).Draw(rt, "nearBlock")]
				pfx := netip.MustParsePrefix(b.CIDR)
				if len(b.Except) > 0 && rapid.Bool().Draw(rt, "inExcept") {
					pfx = netip.MustParsePrefix(b.Except[rapid.IntRange(0, len(b.Except)-1).Draw(rt, "nearExcept")])
				}
				src = inside(rt, pfx, "src")
			} else {
				src = genAddr(rt, rapid.Bool().Draw(rt, "srcV6"), "src")
			}
			pk := packet{src: src, protocol: p.Protocol, origPort: p.Port, dnat: rapid.Bool().Draw(rt, "dnat"), new: rapid.Bool().Draw(rt, "new")}
			f := IPv4
			if src.Is6() {
				f = IPv6
			}
			verdict, logs := eval(t, rules[f], pk)
			admitted := admits(p, src)
			wantDrop := pk.dnat && !admitted
			if (verdict == "DROP") != wantDrop {
				rt.Fatalf("%s from %s (dnat %v): %s, want drop %v\nrules %v", p.Key(), src, pk.dnat, verdict, wantDrop, rules[f])
			}
			var wantLogs []string
			switch {
			case !pk.dnat || !pk.new:
			case !admitted && p.Log != v1.PortLogNone:
				wantLogs = []string{"swarmsec blocked " + p.Key() + " " + p.Service}
			case admitted && p.Log == v1.PortLogAll:
				wantLogs = []string{"swarmsec admitted " + p.Key() + " " + p.Service}
			}
			if !slices.Equal(logs, wantLogs) {
				rt.Fatalf("%s from %s: logged %v, want %v", p.Key(), src, logs, wantLogs)
			}
		}
	})
}

// The rules are the same whatever order the ports come in, so the agent
// can compare before it writes.
func TestRulesAreStable(t *testing.T) {
	a := agentv1.Port{Service: "web", Port: 443, Protocol: v1.ProtocolTCP, From: []v1.SourceBlock{{CIDR: "203.0.113.0/24", Except: []string{"203.0.113.9/32"}}}, Log: v1.PortLogBlocked}
	b := agentv1.Port{Service: "dns", Port: 53, Protocol: v1.ProtocolUDP, From: []v1.SourceBlock{{CIDR: "2001:db8::/32"}}}
	x, _ := Rules(IPv4, []agentv1.Port{a, b}, 1)
	y, _ := Rules(IPv4, []agentv1.Port{b, a}, 1)
	if !slices.EqualFunc(x, y, slices.Equal) {
		t.Errorf("order changes the rules:\n%v\n%v", x, y)
	}
	var text []string
	for _, r := range x {
		text = append(text, strings.Join(r, " "))
	}
	// 53/udp admits only IPv6 sources: every IPv4 one is dropped.
	want := []string{
		"-p udp -m conntrack --ctstate DNAT --ctdir ORIGINAL --ctorigdstport 53 -j DROP",
		"-p tcp -m conntrack --ctstate DNAT --ctdir ORIGINAL --ctorigdstport 443 -s 203.0.113.0/29 -j RETURN",
		"-p tcp -m conntrack --ctstate DNAT --ctdir ORIGINAL --ctorigdstport 443 -s 203.0.113.8/32 -j RETURN",
		"-p tcp -m conntrack --ctstate DNAT --ctdir ORIGINAL --ctorigdstport 443 -s 203.0.113.10/31 -j RETURN",
		"-p tcp -m conntrack --ctstate DNAT --ctdir ORIGINAL --ctorigdstport 443 -s 203.0.113.12/30 -j RETURN",
		"-p tcp -m conntrack --ctstate DNAT --ctdir ORIGINAL --ctorigdstport 443 -s 203.0.113.16/28 -j RETURN",
		"-p tcp -m conntrack --ctstate DNAT --ctdir ORIGINAL --ctorigdstport 443 -s 203.0.113.32/27 -j RETURN",
		"-p tcp -m conntrack --ctstate DNAT --ctdir ORIGINAL --ctorigdstport 443 -s 203.0.113.64/26 -j RETURN",
		"-p tcp -m conntrack --ctstate DNAT --ctdir ORIGINAL --ctorigdstport 443 -s 203.0.113.128/25 -j RETURN",
		"-p tcp -m conntrack --ctstate DNAT --ctdir ORIGINAL --ctorigdstport 443 -m conntrack --ctstate NEW -m limit --limit 50/second --limit-burst 100 -j NFLOG --nflog-group 1 --nflog-prefix swarmsec blocked 443/tcp web",
		"-p tcp -m conntrack --ctstate DNAT --ctdir ORIGINAL --ctorigdstport 443 -j DROP",
	}
	if !slices.Equal(text, want) {
		t.Errorf("rules:\n%s\nwant:\n%s", strings.Join(text, "\n"), strings.Join(want, "\n"))
	}
}

// Two services publishing one port (host mode, on different nodes) cannot
// be told apart: the port admits only what both admit, never what one
// admits to the other's connections.
func TestSamePortAdmitsWhatAllAdmit(t *testing.T) {
	a := agentv1.Port{Service: "edge-a", Port: 443, Protocol: v1.ProtocolTCP, From: []v1.SourceBlock{{CIDR: "203.0.113.0/24"}}}
	b := agentv1.Port{Service: "edge-b", Port: 443, Protocol: v1.ProtocolTCP, From: []v1.SourceBlock{{CIDR: "198.51.100.0/24"}, {CIDR: "203.0.113.0/25"}}, Log: v1.PortLogBlocked}
	open := agentv1.Port{Service: "edge-c", Port: 443, Protocol: v1.ProtocolTCP, Any: true}
	for _, tc := range []struct {
		ports    []agentv1.Port
		admitted []string
		refused  []string
	}{
		{[]agentv1.Port{a, b}, []string{"203.0.113.1"}, []string{"203.0.113.200", "198.51.100.1", "192.0.2.1"}},
		{[]agentv1.Port{b, a, open}, []string{"203.0.113.1"}, []string{"203.0.113.200", "198.51.100.1"}},
	} {
		rules, err := Rules(IPv4, tc.ports, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, src := range tc.admitted {
			if v, _ := eval(t, rules, packet{src: netip.MustParseAddr(src), protocol: v1.ProtocolTCP, origPort: 443, dnat: true}); v == "DROP" {
				t.Errorf("%s refused, want admitted\n%v", src, rules)
			}
		}
		for _, src := range tc.refused {
			v, logs := eval(t, rules, packet{src: netip.MustParseAddr(src), protocol: v1.ProtocolTCP, origPort: 443, dnat: true, new: true})
			if v != "DROP" || len(logs) != 1 || !strings.Contains(logs[0], "edge-a+edge-b") {
				t.Errorf("%s: %s, logs %v; want dropped and logged for both services", src, v, logs)
			}
		}
	}
}
