package firewall

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// fakeTable is the filter table of one family in memory, strict where
// iptables is: a chain still jumped to cannot be deleted.
type fakeTable struct {
	chains  map[string][][]string
	writes  int
	onWrite func()
}

func newFakeTable() *fakeTable {
	// Docker's DOCKER-USER, and an operator's own rule the agent must keep.
	return &fakeTable{chains: map[string][][]string{
		DockerUser: {{"-s", "198.51.100.0/24", "-j", "DROP"}, {"-j", "RETURN"}},
	}}
}

func (f *fakeTable) wrote() {
	f.writes++
	if f.onWrite != nil {
		f.onWrite()
	}
}

func (f *fakeTable) ChainExists(_, chain string) (bool, error) {
	_, ok := f.chains[chain]
	return ok, nil
}

func (f *fakeTable) ClearChain(_, chain string) error {
	f.chains[chain] = nil
	f.wrote()
	return nil
}

func (f *fakeTable) ClearAndDeleteChain(_, chain string) error {
	for name, rules := range f.chains {
		for _, r := range rules {
			if slices.Equal(r, []string{"-j", chain}) {
				return errors.New("chain " + chain + " is referenced by " + name)
			}
		}
	}
	delete(f.chains, chain)
	f.wrote()
	return nil
}

func (f *fakeTable) List(_, chain string) ([]string, error) {
	rules, ok := f.chains[chain]
	if !ok {
		return nil, errors.New("no chain " + chain)
	}
	out := []string{"-N " + chain}
	for _, r := range rules {
		out = append(out, "-A "+chain+" "+strings.Join(r, " "))
	}
	return out, nil
}

func (f *fakeTable) Append(_, chain string, rule ...string) error {
	if _, ok := f.chains[chain]; !ok {
		return errors.New("no chain " + chain)
	}
	f.chains[chain] = append(f.chains[chain], slices.Clone(rule))
	f.wrote()
	return nil
}

func (f *fakeTable) Insert(_, chain string, pos int, rule ...string) error {
	if _, ok := f.chains[chain]; !ok {
		return errors.New("no chain " + chain)
	}
	f.chains[chain] = slices.Insert(f.chains[chain], pos-1, slices.Clone(rule))
	f.wrote()
	return nil
}

func (f *fakeTable) Exists(_, chain string, rule ...string) (bool, error) {
	if i := slices.Index(rule, "-j"); i >= 0 && i+1 < len(rule) && strings.HasPrefix(rule[i+1], Chain) {
		if _, ok := f.chains[rule[i+1]]; !ok {
			return false, errors.New("chain " + rule[i+1] + " does not exist") // as iptables -C says
		}
	}
	return slices.ContainsFunc(f.chains[chain], func(r []string) bool { return slices.Equal(r, rule) }), nil
}

func (f *fakeTable) DeleteIfExists(_, chain string, rule ...string) error {
	if i := slices.IndexFunc(f.chains[chain], func(r []string) bool { return slices.Equal(r, rule) }); i >= 0 {
		f.chains[chain] = slices.Delete(f.chains[chain], i, i+1)
		f.wrote()
	}
	return nil
}

func (f *fakeTable) verdict(t *testing.T, p packet) string {
	v, _ := evalChains(t, f.chains[DockerUser], p, func(c string) ([][]string, bool) { r, ok := f.chains[c]; return r, ok })
	return v
}

// Going from one set of policies to another, no single write of Sync admits
// a published connection that neither set admits, nor blocks one both
// admit; a second Sync writes nothing; the operator's own rule stays; and
// with no policies left nothing of the agent's remains.
func TestSyncNeverOpensAWindow(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		f := newFakeTable()
		var before []agentv1.Port
		for step := range rapid.IntRange(1, 4).Draw(rt, "steps") {
			var after []agentv1.Port
			if step == 0 || rapid.Bool().Draw(rt, "nonEmpty") {
				p := genPort(rt, 0)
				p.Port, p.Protocol = 443, "tcp" // one port, so old and new are comparable
				after = []agentv1.Port{p}
			}
			var probes []packet
			for _, ps := range [][]agentv1.Port{before, after} {
				for _, p := range ps {
					for _, b := range p.From {
						pfx := netip.MustParsePrefix(b.CIDR)
						probes = append(probes, packet{src: inside(rt, pfx, "probe"), protocol: "tcp", origPort: 443, dnat: true})
						for _, e := range b.Except {
							probes = append(probes, packet{src: inside(rt, netip.MustParsePrefix(e), "probe"), protocol: "tcp", origPort: 443, dnat: true})
						}
					}
				}
			}
			probes = append(probes, packet{src: genAddr(rt, false, "probe"), protocol: "tcp", origPort: 443, dnat: true})
			admitted := func(ps []agentv1.Port, p packet) bool { return len(ps) == 0 || admits(ps[0], p.src) }
			check := func() {
				for _, p := range probes {
					if p.src.Is6() {
						continue // the fake is the IPv4 table
					}
					if strings.HasPrefix(p.src.String(), "198.51.100.") {
						continue // the operator's own rule drops these
					}
					got := f.verdict(t, p) != "DROP"
					if got && !admitted(before, p) && !admitted(after, p) {
						rt.Fatalf("write %d admits %s, which neither %v nor %v does\n%v", f.writes, p.src, before, after, f.chains)
					}
					if !got && admitted(before, p) && admitted(after, p) {
						rt.Fatalf("write %d blocks %s, which both %v and %v admit\n%v", f.writes, p.src, before, after, f.chains)
					}
				}
			}
			f.onWrite = check
			rules, err := Rules(IPv4, after, 1)
			if err != nil {
				rt.Fatal(err)
			}
			if _, err := Sync(f, rules); err != nil {
				rt.Fatal(err)
			}
			f.onWrite = nil
			n := f.writes
			if wrote, err := Sync(f, rules); err != nil || wrote || f.writes != n {
				rt.Fatalf("second sync: wrote %v (%d writes), %v", wrote, f.writes-n, err)
			}
			before = after
		}
		if _, err := Sync(f, nil); err != nil {
			rt.Fatal(err)
		}
		if len(f.chains) != 1 || len(f.chains[DockerUser]) != 2 || f.chains[DockerUser][0][0] != "-s" {
			rt.Fatalf("left behind: %v", f.chains)
		}
	})
}

// A DOCKER-USER re-created empty (Docker restarted, firewalld reloaded) gets
// its jump back on the next sync.
func TestSyncRestoresTheJump(t *testing.T) {
	f := newFakeTable()
	rules, _ := Rules(IPv4, []agentv1.Port{{Service: "web", Port: 443, Protocol: "tcp", From: nil}}, 1)
	if wrote, err := Sync(f, rules); err != nil || !wrote {
		t.Fatalf("first sync: %v %v", wrote, err)
	}
	f.chains[DockerUser] = [][]string{{"-j", "RETURN"}}
	if wrote, err := Sync(f, rules); err != nil || !wrote {
		t.Fatalf("sync after the flush: %v %v", wrote, err)
	}
	if !slices.Equal(f.chains[DockerUser][0][:1], []string{"-j"}) || f.verdict(t, packet{src: netip.MustParseAddr("192.0.2.1"), protocol: "tcp", origPort: 443, dnat: true}) != "DROP" {
		t.Fatalf("jump not restored: %v", f.chains)
	}
	delete(f.chains, DockerUser)
	if _, err := Sync(f, rules); err == nil || !strings.Contains(err.Error(), "DOCKER-USER is missing") {
		t.Fatalf("no DOCKER-USER: %v", err)
	}
}

// A rule another tool puts above the jump is drift: the next sync puts the
// jump back on top, keeping that rule.
func TestSyncPutsTheJumpBackOnTop(t *testing.T) {
	f := newFakeTable()
	rules, _ := Rules(IPv4, []agentv1.Port{{Service: "web", Port: 443, Protocol: "tcp"}}, 1)
	if _, err := Sync(f, rules); err != nil {
		t.Fatal(err)
	}
	f.chains[DockerUser] = slices.Insert(f.chains[DockerUser], 0, []string{"-j", "ACCEPT"})
	if wrote, err := Sync(f, rules); err != nil || !wrote {
		t.Fatalf("sync: wrote %v: %v", wrote, err)
	}
	du := f.chains[DockerUser]
	if len(du) != 4 || !strings.HasPrefix(du[0][1], Chain) || du[1][1] != "ACCEPT" {
		t.Fatalf("DOCKER-USER: %v", du)
	}
}
