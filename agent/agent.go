// Package agent is the node agent: one task per node keeps the rules the
// leader delivers (a mounted file, api/v1/agent.Rules) in the node's iptables
// and ip6tables, in chains of its own jumped from DOCKER-USER, and counts
// what they admit and block.
//
// It is level-triggered: every resync reads the file and makes the chains
// match, so rules Docker or a firewalld reload flushed come back within a
// resync. It fails closed: a missing or broken file changes nothing, and
// stopping leaves the rules in place (the last desired state stays
// enforced); only a delivered file with no ports removes them.
//
// It is the agent's side of the system: it imports the wire formats
// (api/v1/agent), the rendering (agent/firewall) and its node checks
// (agent/nodeprobe), never the controller's core (the store, the
// compiler, the planner); TestAgentImportsNoControllerCore keeps it so.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/swarmsec/swarmsec/agent/firewall"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// NFLOGGroup is the netlink group the agent's log rules send to.
const NFLOGGroup = 7331

// Table is a family's iptables with counters.
type Table interface {
	firewall.Table
	// Counters returns the packet count of each rule of chain, in order.
	Counters(table, chain string) ([]uint64, error)
}

// Agent keeps one node's rules.
type Agent struct {
	// RulesFile is the delivered rules (agentv1.RulesPath).
	RulesFile string
	// Tables are the node's families; a family without DOCKER-USER is
	// left alone, and said so.
	Tables map[firewall.Family]Table
	// Detect, when set, looks again for a family's table each resync
	// while it has none (dockerd started after the agent, a firewall
	// reload removed DOCKER-USER for a while).
	Detect func(firewall.Family) (Table, string, error)
	// Interval between resyncs.
	Interval time.Duration
	Log      *slog.Logger
	// Packets counts, per service, port and verdict, the packets the
	// rules admitted and blocked (registered by NewPackets).
	Packets *prometheus.CounterVec

	// Datapath, when set, is given every good rules document: it keeps
	// the per-task rules (agent/datapath.Enforcer).
	Datapath interface {
		SetRules(ctx context.Context, rules *agentv1.Rules) error
	}

	// Checks runs the node checks (RunChecks); nil skips them.
	Checks interface {
		Report(ctx context.Context) agentv1.Report
	}

	mu       sync.Mutex
	detected map[firewall.Family]time.Time // last Detect, a minute apart
	report   *agentv1.Report
	last     map[string]uint64 // counter by chain fingerprint and rule
	status   Status
	good     Status // the last sync of a usable rules file
	logged   string // the last resync error logged
}

// Status is what the agent last did, for its health endpoint and logs.
type Status struct {
	// Rules and Ports are the rules in force: while the delivered file is
	// missing or unusable, the last good ones, which stay in the kernel.
	Rules string `json:"rules"`
	Ports int    `json:"ports"`
	// Services is how many services the per-task rules cover.
	Services int       `json:"services,omitempty"`
	Synced   time.Time `json:"synced"`
	// Applied is when Rules were last read from a usable file.
	Applied time.Time `json:"applied,omitzero"`
	Error   string    `json:"error,omitempty"`
	Skipped []string  `json:"skipped,omitempty"`
	// Node is the last node checks report.
	Node *agentv1.Report `json:"node,omitempty"`
}

// NewPackets makes the agent's counter.
func NewPackets() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "swarmsec_agent_packets_total",
		Help: "Packets towards restricted published ports, by service, port and verdict (admitted, blocked).",
	}, []string{"service", "port", "verdict"})
}

// Table returns the family's table, looking for it again (Detect) while
// there is none.
func (a *Agent) Table(f firewall.Family) Table {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.Tables == nil {
		a.Tables = map[firewall.Family]Table{}
	}
	if a.Tables[f] == nil && a.Detect != nil && time.Since(a.detected[f]) >= time.Minute {
		if a.detected == nil {
			a.detected = map[firewall.Family]time.Time{}
		}
		a.detected[f] = time.Now()
		if t, path, err := a.Detect(f); err == nil {
			a.Log.Info("iptables backend found", "family", f.String(), "command", path)
			a.Tables[f] = t
		}
	}
	return a.Tables[f]
}

// Status returns the last resync's outcome and node checks.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.status
	st.Node = a.report
	return st
}

// RunChecks runs the node checks every period until ctx ends and logs the
// report (agentv1.ReportMessage) when it changes, and every
// agentv1.ReportInterval anyway, for the leader to read.
func (a *Agent) RunChecks(ctx context.Context, period time.Duration) {
	if a.Checks == nil {
		return
	}
	t := time.NewTicker(period)
	defer t.Stop()
	var logged time.Time
	for {
		r := a.Checks.Report(ctx)
		a.mu.Lock()
		rc := rulesCheck(a.status)
		r.Checks = append(r.Checks, rc)
		if rc.Result == agentv1.OK {
			r.Rules = a.status.Rules
		}
		changed := a.report == nil || !a.report.Equal(&r)
		a.report = &r
		a.mu.Unlock()
		if changed || time.Since(logged) >= agentv1.ReportInterval {
			a.Log.Info(agentv1.ReportMessage, agentv1.ReportKey, r)
			logged = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Run resyncs until ctx ends. It never removes rules on its way out.
func (a *Agent) Run(ctx context.Context) error {
	t := time.NewTicker(a.Interval)
	defer t.Stop()
	for {
		err := a.Sync(ctx)
		// Logged once per problem, not every resync: a broken file stays
		// broken until the leader delivers another.
		a.mu.Lock()
		msg, changed := a.status.Error, a.status.Error != a.logged
		a.logged = msg
		a.mu.Unlock()
		switch {
		case err != nil && changed:
			a.Log.Error("resync failed; the rules in place stay", "err", err, "rules", a.Status().Rules)
		case msg != "" && changed:
			a.Log.Warn("rules file unusable; the rules in place stay", "reason", msg, "rules", a.Status().Rules)
		case changed:
			a.Log.Info("rules file usable again", "rules", a.Status().Rules)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sync applies the delivered rules once and reads the counters. A missing,
// unreadable or broken file changes nothing: the last good rules stay in
// the kernel and in Status, with the error saying why.
func (a *Agent) Sync(ctx context.Context) error {
	st := Status{Synced: time.Now()}
	defer func() {
		a.mu.Lock()
		if st.Rules == "" && st.Error != "" {
			st.Rules, st.Ports, st.Applied = a.good.Rules, a.good.Ports, a.good.Applied
			if st.Rules != "" {
				st.Error += "; keeping the last good rules " + st.Rules
			}
		}
		a.status = st
		a.mu.Unlock()
	}()
	data, err := os.ReadFile(a.RulesFile)
	if errors.Is(err, fs.ErrNotExist) {
		st.Error = a.RulesFile + " is missing (no rules delivered, or the config was removed): nothing changed"
		return nil
	}
	if err != nil {
		st.Error = err.Error()
		return fmt.Errorf("rules %s: %w", a.RulesFile, err)
	}
	doc, err := DecodeRules(data)
	if err != nil {
		st.Error = fmt.Sprintf("%s: %v: nothing changed", a.RulesFile, err)
		return fmt.Errorf("rules %s: %w", a.RulesFile, err)
	}
	st.Rules, st.Ports, st.Services, st.Applied = agentv1.ConfigName(data), len(doc.Ports), len(doc.Services), st.Synced
	a.mu.Lock()
	a.good = st
	a.mu.Unlock()
	var errs []error
	if a.Datapath != nil {
		if err := a.Datapath.SetRules(ctx, doc); err != nil {
			errs = append(errs, fmt.Errorf("task rules: %w", err))
		}
	}
	for _, f := range []firewall.Family{firewall.IPv4, firewall.IPv6} {
		t := a.Table(f)
		if t == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rules, err := firewall.Rules(f, doc.Ports, NFLOGGroup)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		if ok, err := t.ChainExists("filter", firewall.DockerUser); err == nil && !ok {
			st.Skipped = append(st.Skipped, fmt.Sprintf("%s: no %s chain (Docker filters no %s here)", f, firewall.DockerUser, f))
			continue
		}
		wrote, err := firewall.Sync(t, rules)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		if wrote {
			a.Log.Info("rules applied", "family", f.String(), "rules", st.Rules, "ports", len(doc.Ports), "iptablesRules", len(rules))
		}
		a.count(f, t, rules, doc.Ports)
	}
	if err := errors.Join(errs...); err != nil {
		st.Error = err.Error()
		return err
	}
	return nil
}

// count adds what each rule matched since the last read to Packets. A
// chain replaced by a change starts from zero.
func (a *Agent) count(f firewall.Family, t Table, rules [][]string, ports []agentv1.Port) {
	if a.Packets == nil {
		return
	}
	chain, err := firewall.Active(t)
	if err != nil || chain == "" {
		return
	}
	counts, err := t.Counters("filter", chain)
	want := firewall.Want(rules)
	if err != nil || len(counts) != len(want) {
		return
	}
	// One rule set per port, for all the services that publish it.
	byKey := map[string][]string{}
	for _, p := range ports {
		byKey[p.Key()] = append(byKey[p.Key()], p.Service)
	}
	services := map[string]string{}
	for k, names := range byKey {
		slices.Sort(names)
		services[k] = strings.Join(names, "+")
	}
	fp := want[0][len(want[0])-1]
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.last == nil {
		a.last = map[string]uint64{}
	}
	for i, r := range want[1:] {
		verdict := ""
		switch {
		case slices.Equal(r[len(r)-2:], []string{"-j", "RETURN"}):
			verdict = "admitted"
		case slices.Equal(r[len(r)-2:], []string{"-j", "DROP"}):
			verdict = "blocked"
		default:
			continue
		}
		port := portOf(r)
		key := fmt.Sprintf("%s/%s/%d", f, fp, i)
		n := counts[i+1]
		if prev, ok := a.last[key]; ok && n >= prev {
			a.Packets.WithLabelValues(services[port], port, verdict).Add(float64(n - prev))
		} else if !ok {
			a.Packets.WithLabelValues(services[port], port, verdict).Add(float64(n))
		}
		a.last[key] = n
	}
}

// portOf reads "port/protocol" back from a rule's arguments.
func portOf(r []string) string {
	var port, proto string
	for i := 0; i+1 < len(r); i++ {
		switch r[i] {
		case "--ctorigdstport":
			port = r[i+1]
		case "-p":
			proto = r[i+1]
		}
	}
	if _, err := strconv.Atoi(port); err != nil {
		return ""
	}
	return port + "/" + proto
}

// rulesCheck reports, in the node checks the leader reads, which rules the
// agent holds and whether the delivered file was usable. Its message names
// no time, so an unchanged state logs no new report.
func rulesCheck(st Status) agentv1.Check {
	c := agentv1.Check{ID: agentv1.CheckRules, Result: agentv1.OK, Message: fmt.Sprintf("rules %s in force (%d ports)", st.Rules, st.Ports)}
	switch {
	case st.Error != "" && st.Rules == "":
		c.Result, c.Message = agentv1.Unknown, st.Error
	case st.Error != "":
		c.Result, c.Message = agentv1.Warning, st.Error
		c.Fix = "the leader delivers the rules again within a pass; check the agent service's config (docker service inspect swarmsec_agent)"
	case st.Rules == "":
		c.Result, c.Message = agentv1.Unknown, "no rules read yet"
	}
	return c
}
