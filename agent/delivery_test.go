package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/swarmsec/swarmsec/agent/firewall"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// memTable is one family's filter table in memory, with DOCKER-USER.
type memTable struct {
	chains map[string][][]string
	writes int
}

func newMemTable() *memTable {
	return &memTable{chains: map[string][][]string{firewall.DockerUser: {{"-j", "RETURN"}}}}
}

func (m *memTable) ChainExists(_, chain string) (bool, error) {
	_, ok := m.chains[chain]
	return ok, nil
}

func (m *memTable) ClearChain(_, chain string) error {
	m.chains[chain] = nil
	m.writes++
	return nil
}

func (m *memTable) ClearAndDeleteChain(_, chain string) error {
	delete(m.chains, chain)
	m.writes++
	return nil
}

func (m *memTable) List(_, chain string) ([]string, error) {
	rules, ok := m.chains[chain]
	if !ok {
		return nil, errors.New("no chain " + chain)
	}
	out := []string{"-N " + chain}
	for _, r := range rules {
		out = append(out, "-A "+chain+" "+strings.Join(r, " "))
	}
	return out, nil
}

func (m *memTable) Append(_, chain string, rule ...string) error {
	if _, ok := m.chains[chain]; !ok {
		return errors.New("no chain " + chain)
	}
	m.chains[chain] = append(m.chains[chain], slices.Clone(rule))
	m.writes++
	return nil
}

func (m *memTable) Insert(_, chain string, pos int, rule ...string) error {
	if _, ok := m.chains[chain]; !ok {
		return errors.New("no chain " + chain)
	}
	m.chains[chain] = slices.Insert(m.chains[chain], pos-1, slices.Clone(rule))
	m.writes++
	return nil
}

func (m *memTable) Exists(_, chain string, rule ...string) (bool, error) {
	if i := slices.Index(rule, "-j"); i >= 0 && i+1 < len(rule) && strings.HasPrefix(rule[i+1], firewall.Chain) {
		if _, ok := m.chains[rule[i+1]]; !ok {
			return false, errors.New("chain " + rule[i+1] + " does not exist")
		}
	}
	return slices.ContainsFunc(m.chains[chain], func(r []string) bool { return slices.Equal(r, rule) }), nil
}

func (m *memTable) DeleteIfExists(_, chain string, rule ...string) error {
	if i := slices.IndexFunc(m.chains[chain], func(r []string) bool { return slices.Equal(r, rule) }); i >= 0 {
		m.chains[chain] = slices.Delete(m.chains[chain], i, i+1)
		m.writes++
	}
	return nil
}

func (m *memTable) Counters(_, chain string) ([]uint64, error) {
	return make([]uint64, len(m.chains[chain])), nil
}

// dump is the table's rules, for comparing before and after.
func (m *memTable) dump() string {
	var b strings.Builder
	for _, c := range slices.Sorted(func(yield func(string) bool) {
		for c := range m.chains {
			if !yield(c) {
				return
			}
		}
	}) {
		l, _ := m.List("filter", c)
		b.WriteString(strings.Join(l, "\n") + "\n")
	}
	return b.String()
}

type noChecks struct{}

func (noChecks) Report(context.Context) agentv1.Report {
	return agentv1.Report{Node: "n1", Checks: []agentv1.Check{{ID: agentv1.CheckESP, Result: agentv1.OK}}}
}

func rulesDoc(t *testing.T, from string) []byte {
	t.Helper()
	data := []byte(`{
  "apiVersion": "swarmsec.io/v1",
  "kind": "AgentRules",
  "ports": [
    {
      "service": "shop_web",
      "port": 8080,
      "protocol": "tcp",
      "from": [
        {
          "cidr": "` + from + `"
        }
      ]
    }
  ]
}
`)
	if _, err := DecodeRules(data); err != nil {
		t.Fatalf("setup: %v", err)
	}
	return data
}

// TestAgentKeepsTheLastGoodRules delivers the rules broken in each way a
// config can reach a node (removed, truncated, another document, a field
// this version does not know): each time the kernel keeps the last good
// rules, untouched, and the agent's status and its report to the leader
// (the rules check of the node checks) say which it keeps and why. Usable
// rules again are applied at once.
func TestAgentKeepsTheLastGoodRules(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent-rules.json")
	tbl := newMemTable()
	a := &Agent{RulesFile: path, Tables: map[firewall.Family]Table{firewall.IPv4: tbl}, Log: slog.New(slog.DiscardHandler), Checks: noChecks{}}
	ctx := context.Background()

	// Nothing delivered yet: nothing changes, and the report says so.
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if c := rulesCheck(a.Status()); c.Result != agentv1.Unknown || !strings.Contains(c.Message, "missing") {
		t.Errorf("before any delivery: %+v", c)
	}
	if tbl.writes != 0 {
		t.Fatalf("%d writes without rules", tbl.writes)
	}

	good := rulesDoc(t, "203.0.113.0/24")
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	name := agentv1.ConfigName(good)
	if st := a.Status(); st.Rules != name || st.Ports != 1 || st.Error != "" {
		t.Fatalf("status %+v", st)
	}
	kernel, writes := tbl.dump(), tbl.writes

	faults := []struct {
		name  string
		apply func() error
	}{
		{"config removed", func() error { return nil }}, // removed below
		{"truncated", func() error { return os.WriteFile(path, good[:len(good)/2], 0o644) }},
		{"empty", func() error { return os.WriteFile(path, nil, 0o644) }},
		{"another document", func() error {
			return os.WriteFile(path, []byte(`{"apiVersion":"swarmsec.io/v1","kind":"NetworkPolicy","ports":[]}`), 0o644)
		}},
		{"a field this version does not know", func() error {
			return os.WriteFile(path, []byte(strings.Replace(string(good), `"port": 8080,`, `"port": 8080, "except": [],`, 1)), 0o644)
		}},
		{"unreadable", func() error { return os.Mkdir(path, 0o755) }},
	}
	for _, f := range faults {
		_ = os.RemoveAll(path)
		if err := os.WriteFile(path, good, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := a.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		_ = os.RemoveAll(path) // Swarm replaces the mounted file
		if err := f.apply(); err != nil {
			t.Fatal(err)
		}
		_ = a.Sync(ctx) // broken files fail the resync; that is logged by Run
		if got := tbl.dump(); got != kernel || tbl.writes != writes {
			t.Errorf("%s: the kernel's rules changed (%d writes):\n%s", f.name, tbl.writes-writes, got)
		}
		st := a.Status()
		if st.Rules != name || st.Ports != 1 || !strings.Contains(st.Error, "keeping the last good rules "+name) {
			t.Errorf("%s: status %+v", f.name, st)
		}
		c := rulesCheck(st)
		if c.Result != agentv1.Warning || !strings.Contains(c.Message, name) || c.Fix == "" {
			t.Errorf("%s: rules check %+v", f.name, c)
		}
		t.Logf("%s: %s", f.name, c.Message)
	}

	// Usable again, and tighter: applied at once.
	_ = os.RemoveAll(path)
	tighter := rulesDoc(t, "203.0.113.8/29")
	if err := os.WriteFile(path, tighter, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if st := a.Status(); st.Rules != agentv1.ConfigName(tighter) || st.Error != "" {
		t.Errorf("after a usable delivery: %+v", st)
	}
	if tbl.dump() == kernel {
		t.Error("the new rules were not applied")
	}
	if c := rulesCheck(a.Status()); c.Result != agentv1.OK {
		t.Errorf("rules check %+v", c)
	}
	t.Logf("faults: agent rules delivered broken: %d faults tried, kernel rules changed: 0, last good rules kept and reported each time", len(faults))
}

// The rules check rides in the report the agent logs for the leader.
func TestAgentReportCarriesTheRulesCheck(t *testing.T) {
	a := &Agent{RulesFile: filepath.Join(t.TempDir(), "none.json"), Log: slog.New(slog.DiscardHandler), Checks: noChecks{}}
	if err := a.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a.RunChecks(ctx, 1)
	r := a.Status().Node
	if r == nil {
		t.Fatal("no report")
	}
	if c, ok := r.Get(agentv1.CheckRules); !ok || c.Result != agentv1.Unknown {
		t.Errorf("report %+v", r)
	}
}
