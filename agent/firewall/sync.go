package firewall

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// Table is the part of github.com/coreos/go-iptables the agent uses, for one
// family; *iptables.IPTables implements it.
type Table interface {
	ChainExists(table, chain string) (bool, error)
	ClearChain(table, chain string) error
	ClearAndDeleteChain(table, chain string) error
	List(table, chain string) ([]string, error)
	Append(table, chain string, rulespec ...string) error
	Insert(table, chain string, pos int, rulespec ...string) error
	Exists(table, chain string, rulespec ...string) (bool, error)
	DeleteIfExists(table, chain string, rulespec ...string) error
}

const (
	filter = "filter"
	// DockerUser is the chain Docker leaves to its users; the agent adds one
	// rule there, the jump to its own chain, and nothing else.
	DockerUser = "DOCKER-USER"
)

// The agent's chains take turns: a change fills the one not in use, jumps to
// it first, then drops the other, so while both are jumped a connection
// must pass both rule sets and no moment admits what neither set does.
var chains = [2]string{Chain + "-A", Chain + "-B"}

// fingerprint is the first rule of a chain: a comment only (no target), so
// the agent can tell its rules are the ones it wants without parsing
// iptables' normalized output.
func fingerprint(rules [][]string) []string {
	h := sha256.New()
	for _, r := range rules {
		fmt.Fprintln(h, strings.Join(r, "\x00"))
	}
	return []string{"-m", "comment", "--comment", "swarmsec rules " + hex.EncodeToString(h.Sum(nil))[:16]}
}

// Sync makes the agent's chain hold rules, jumped from the top of
// DOCKER-USER. It writes nothing when the chain already holds them, and
// with no rules it removes its chains and jump: rules go only when the
// policies no longer ask. It reports whether it wrote.
func Sync(t Table, rules [][]string) (bool, error) {
	ok, err := t.ChainExists(filter, DockerUser)
	if err != nil {
		return false, fmt.Errorf("chain %s: %w", DockerUser, err)
	}
	if !ok {
		return false, fmt.Errorf("chain %s is missing: Docker manages no iptables rules here (--iptables=false?) or uses another backend", DockerUser)
	}
	jumped, first, err := jumpedChains(t)
	if err != nil {
		return false, err
	}
	if len(rules) == 0 {
		return removeAll(t, jumped)
	}
	want := Want(rules)
	// A rule put above the jump (another tool's ACCEPT) would let traffic
	// past the agent's rules: that is drift, and the swap puts the jump
	// back on top.
	if len(jumped) == 1 && first {
		same, err := holds(t, jumped[0], want)
		if err != nil || same {
			return false, err
		}
	}
	next := chains[0]
	if len(jumped) > 0 && jumped[0] == chains[0] {
		next = chains[1]
	}
	if err := t.ClearChain(filter, next); err != nil { // creates it when missing
		return true, fmt.Errorf("chain %s: %w", next, err)
	}
	for _, r := range want {
		if err := t.Append(filter, next, r...); err != nil {
			return true, fmt.Errorf("chain %s: rule %s: %w", next, strings.Join(r, " "), err)
		}
	}
	if err := t.Insert(filter, DockerUser, 1, "-j", next); err != nil {
		return true, fmt.Errorf("chain %s: jump to %s: %w", DockerUser, next, err)
	}
	for _, c := range chains {
		if c == next {
			continue
		}
		if err := unjump(t, c); err != nil {
			return true, err
		}
	}
	return true, nil
}

// jumpedChains lists the agent's chains DOCKER-USER jumps to, in rule
// order (after an interrupted change both may be, the first the newer),
// and whether the first rule of DOCKER-USER is such a jump.
func jumpedChains(t Table) (out []string, first bool, err error) {
	lines, err := t.List(filter, DockerUser)
	if err != nil {
		return nil, false, fmt.Errorf("chain %s: %w", DockerUser, err)
	}
	for i, l := range lines { // lines[0] is "-N DOCKER-USER"
		for _, c := range chains {
			if l == "-A "+DockerUser+" -j "+c {
				first = first || i == 1
				if !slices.Contains(out, c) {
					out = append(out, c)
				}
			}
		}
	}
	return out, first, nil
}

// holds reports whether chain holds exactly want: as many rules, the same
// fingerprint first, and each rule present.
func holds(t Table, chain string, want [][]string) (bool, error) {
	lines, err := t.List(filter, chain)
	if err != nil {
		return false, fmt.Errorf("chain %s: %w", chain, err)
	}
	if len(lines) != len(want)+1 { // "-N chain" first
		return false, nil
	}
	for _, r := range want {
		ok, err := t.Exists(filter, chain, r...)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// unjump removes the jump to chain, then the chain. A chain that does not
// exist has no jump to it (iptables refuses even to look for one).
func unjump(t Table, chain string) error {
	if ok, err := t.ChainExists(filter, chain); err != nil || !ok {
		return err
	}
	for {
		ok, err := t.Exists(filter, DockerUser, "-j", chain)
		if err != nil {
			return fmt.Errorf("chain %s: jump to %s: %w", DockerUser, chain, err)
		}
		if !ok {
			break
		}
		if err := t.DeleteIfExists(filter, DockerUser, "-j", chain); err != nil {
			return fmt.Errorf("chain %s: jump to %s: %w", DockerUser, chain, err)
		}
	}
	if err := t.ClearAndDeleteChain(filter, chain); err != nil {
		return fmt.Errorf("chain %s: %w", chain, err)
	}
	return nil
}

func removeAll(t Table, jumped []string) (bool, error) {
	wrote := len(jumped) > 0
	for _, c := range chains {
		ok, err := t.ChainExists(filter, c)
		if err != nil {
			return wrote, fmt.Errorf("chain %s: %w", c, err)
		}
		if !ok {
			continue
		}
		wrote = true
		if err := unjump(t, c); err != nil {
			return wrote, err
		}
	}
	return wrote, nil
}

// Active is the agent's chain DOCKER-USER jumps to first, "" when none.
func Active(t Table) (string, error) {
	jumped, _, err := jumpedChains(t)
	if err != nil || len(jumped) == 0 {
		return "", err
	}
	return jumped[0], nil
}

// Want is what Sync keeps in the agent's chain for rules: the fingerprint
// first, then the rules, so the counters of the chain's rule i are want[i]'s.
func Want(rules [][]string) [][]string {
	return append([][]string{fingerprint(rules)}, rules...)
}
