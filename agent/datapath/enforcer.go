package datapath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	nflog "github.com/florianl/go-nflog/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/swarmsec/swarmsec/agent/netns"
	"github.com/swarmsec/swarmsec/agent/tasks"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// Enforcer keeps every local task's table in line with the rules and
// reports the drops as flows.
type Enforcer struct {
	Engine tasks.Engine
	// Group is the NFLOG group the tables log drops to, in each task's
	// namespace.
	Group uint16
	Node  string
	Log   *slog.Logger
	// Flows counts the flow records by direction, source and destination
	// service and verdict (NewFlows); nil counts none.
	Flows *prometheus.CounterVec
	// FlowsPerSecond bounds the flow records logged (the rest are
	// counted, and summed up in a line): 20 when 0.
	FlowsPerSecond int
	// ProcDir, when set, is where the agent sees the node's /proc (the
	// stack mounts it at /host/proc): a task's namespace is opened as
	// <ProcDir>/<pid>/ns/net. Else its sandbox key is opened, which in a
	// container sees only the namespaces that existed when it started
	// (their mounts do not propagate where / is a private mount).
	ProcDir string
	// OpenNS opens a sandbox (netns.Open when nil): tests give their own.
	OpenNS func(path string) (*netns.Handle, error)

	syncMu  sync.Mutex // one sync at a time
	mu      sync.Mutex
	rules   *agentv1.Rules
	view    *tasks.View
	applied map[string]applied // by sandbox key
	kick    chan struct{}
	limiter *limiter
}

type applied struct {
	ruleset string
	rules   int
	cancel  context.CancelFunc // the flow listener
	done    chan struct{}
}

// NewFlows makes the flow counter.
func NewFlows() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "swarmsec_agent_flows_total",
		Help: "Connection attempts the per-task rules judged and logged (rate-limited in the kernel, 10/s per rule), by direction, source and destination service and verdict (blocked, would-block: an audit-mode policy would drop it, allowed: a rule with log: all admitted it).",
	}, []string{"direction", "source", "destination", "verdict"})
}

// SetRules gives the enforcer the last good rules and syncs now.
func (e *Enforcer) SetRules(ctx context.Context, rules *agentv1.Rules) error {
	e.mu.Lock()
	e.rules = rules
	e.mu.Unlock()
	return e.Sync(ctx)
}

// Kick asks for a sync (a task started): Run does it at once.
func (e *Enforcer) Kick() {
	e.mu.Lock()
	if e.kick == nil {
		e.kick = make(chan struct{}, 1)
	}
	k := e.kick
	e.mu.Unlock()
	select {
	case k <- struct{}{}:
	default:
	}
}

// Run follows the engine's events, syncing when a task starts or stops
// or a network attachment changes, until ctx ends. Tables stay when it
// stops.
func (e *Enforcer) Run(ctx context.Context) {
	e.Kick()
	e.mu.Lock()
	k := e.kick
	e.mu.Unlock()
	go tasks.Watch(ctx, e.Engine, e.Kick)
	for {
		select {
		case <-ctx.Done():
			e.stopListeners()
			return
		case <-k:
			if err := e.Sync(ctx); err != nil {
				e.Log.Error("task rules not synced; the tables in place stay", "err", err)
			}
		}
	}
}

// Sync discovers the local tasks and makes each one's table match the
// rules: applied where it differs or was tampered with, removed where the
// rules leave the task nothing to drop. Without rules it does nothing.
func (e *Enforcer) Sync(ctx context.Context) error {
	e.syncMu.Lock()
	defer e.syncMu.Unlock()
	e.mu.Lock()
	rules := e.rules
	e.mu.Unlock()
	if rules == nil {
		return nil
	}
	v, err := tasks.Discover(ctx, e.Engine)
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.view = v
	if e.applied == nil {
		e.applied = map[string]applied{}
	}
	e.mu.Unlock()
	open := e.opener()
	seen := map[string]bool{}
	var errs []error
	for i := range v.Tasks {
		t := &v.Tasks[i]
		if t.SandboxKey == "" {
			continue
		}
		seen[t.SandboxKey] = true
		if err := e.syncTask(ctx, rules, v, t, func(string) (*netns.Handle, error) { return open(t) }); err != nil {
			errs = append(errs, fmt.Errorf("task %s (%s): %w", t.Name, t.Container[:min(12, len(t.Container))], err))
		}
	}
	e.mu.Lock()
	for key, a := range e.applied {
		if !seen[key] { // the task is gone, and its namespace with it
			if a.cancel != nil {
				a.cancel()
			}
			delete(e.applied, key)
		}
	}
	e.mu.Unlock()
	return errors.Join(errs...)
}

func (e *Enforcer) syncTask(ctx context.Context, rules *agentv1.Rules, v *tasks.View, t *tasks.Task, open func(string) (*netns.Handle, error)) error {
	rs := Render(rules, v, t)
	want := rs.String()
	h, err := open(t.SandboxKey)
	if err != nil {
		return err
	}
	defer h.Close()
	have, err := Rules(h.Fd())
	if err != nil {
		return err
	}
	e.mu.Lock()
	prev, known := e.applied[t.SandboxKey]
	e.mu.Unlock()
	if rs.Empty() {
		if have >= 0 {
			if err := e.owned(ctx, t); err != nil {
				return err
			}
			if err := Remove(h.Fd()); err != nil {
				return err
			}
			e.Log.Info("task rules removed", "task", t.Name)
		}
		if known && prev.cancel != nil {
			prev.cancel()
		}
		e.mu.Lock()
		delete(e.applied, t.SandboxKey)
		e.mu.Unlock()
		return nil
	}
	if known && prev.ruleset == want && prev.rules == have {
		return nil
	}
	if err := e.owned(ctx, t); err != nil {
		return err
	}
	start := time.Now()
	if err := Apply(h.Fd(), &rs, e.Group); err != nil {
		return err
	}
	n, err := Rules(h.Fd())
	if err != nil {
		return err
	}
	e.Log.Info("task rules applied", "task", t.Name, "service", t.Service, "nftRules", n, "took", time.Since(start).String())
	a := applied{ruleset: want, rules: n}
	if known && prev.cancel != nil {
		a.cancel, a.done = prev.cancel, prev.done
	} else {
		a.cancel, a.done = e.listen(ctx, t)
	}
	e.mu.Lock()
	e.applied[t.SandboxKey] = a
	e.mu.Unlock()
	return nil
}

// owned checks, when t's namespace is opened by its pid, that the task
// still runs with that pid. Call it with the namespace open (the open file
// pins the namespace it named): a pid freed and taken again between the
// discovery and the open names another's namespace (a new task's, the
// node's own), and t's rules written there would judge the wrong workload.
func (e *Enforcer) owned(ctx context.Context, t *tasks.Task) error {
	if e.ProcDir == "" || t.Pid <= 0 {
		return nil // opened by its sandbox key, which is the task's alone
	}
	ci, err := e.Engine.ContainerInspect(ctx, t.Container)
	if err != nil {
		return fmt.Errorf("inspect its container: %w", err)
	}
	if ci.ContainerJSONBase == nil || ci.State == nil || !ci.State.Running || ci.State.Pid != t.Pid {
		return fmt.Errorf("pid %d is no longer its (the task stopped): nothing written to that namespace", t.Pid)
	}
	return nil
}

// opener opens a task's namespace where the agent sees it.
func (e *Enforcer) opener() func(*tasks.Task) (*netns.Handle, error) {
	open := e.OpenNS
	if open == nil {
		open = netns.Open
	}
	return func(t *tasks.Task) (*netns.Handle, error) {
		if e.ProcDir != "" && t.Pid > 0 {
			return open(filepath.Join(e.ProcDir, strconv.Itoa(t.Pid), "ns", "net"))
		}
		return open(t.SandboxKey)
	}
}

// listen reads the drops logged in t's namespace until cancelled.
func (e *Enforcer) listen(ctx context.Context, t *tasks.Task) (context.CancelFunc, chan struct{}) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	task := *t
	go func() {
		defer close(done)
		h, err := e.opener()(&task)
		if err != nil {
			e.Log.Warn("drops of a task not reported", "task", task.Name, "err", err)
			return
		}
		defer h.Close()
		if err := e.owned(ctx, &task); err != nil {
			e.Log.Warn("drops of a task not reported", "task", task.Name, "err", err)
			return
		}
		nf, err := nflog.Open(&nflog.Config{Group: e.Group, Copymode: nflog.CopyPacket, Bufsize: 128, NetNS: h.Fd()})
		if err != nil {
			e.Log.Warn("drops of a task not reported", "task", task.Name, "err", err)
			return
		}
		defer nf.Close()
		hook := func(a nflog.Attribute) int {
			if a.Prefix != nil && a.Payload != nil {
				e.record(&task, *a.Prefix, *a.Payload)
			}
			return 0
		}
		errf := func(error) int {
			if ctx.Err() != nil {
				return 1
			}
			return 0
		}
		if err := nf.RegisterWithErrorFunc(ctx, hook, errf); err != nil {
			e.Log.Warn("drops of a task not reported", "task", task.Name, "err", err)
			return
		}
		<-ctx.Done()
	}()
	return cancel, done
}

// record turns one logged packet into a flow record, counts it and logs
// it within the rate.
func (e *Enforcer) record(t *tasks.Task, prefix string, payload []byte) {
	k, ok := parse(payload)
	if !ok {
		return
	}
	e.mu.Lock()
	rules, v := e.rules, e.view
	if e.limiter == nil {
		e.limiter = newLimiter(e.FlowsPerSecond)
	}
	lim := e.limiter
	e.mu.Unlock()
	f := agentv1.FlowRecord{Time: time.Now().UTC(), Node: e.Node, Verdict: agentv1.VerdictBlocked, Protocol: string(k.proto)}
	if k.other != "" {
		f.Protocol = k.other
	}
	self := agentv1.FlowEndpoint{Service: t.Service, Task: t.Name}
	owner := func(a netip.Addr, port uint16) agentv1.FlowEndpoint {
		ep := agentv1.FlowEndpoint{IP: a.String(), Port: port}
		if v != nil {
			ep.Service, ep.Task, _ = v.Owner(t, a)
		}
		return ep
	}
	out := true
	switch cleanPrefix(prefix) {
	case PrefixOut:
	case PrefixIn:
		out = false
	case PrefixAuditOut:
		f.Verdict = agentv1.VerdictWouldBlock
	case PrefixAuditIn:
		f.Verdict, out = agentv1.VerdictWouldBlock, false
	case PrefixAllowOut:
		f.Verdict = agentv1.VerdictAllowed
	default:
		return
	}
	if out {
		f.Direction = "egress"
		f.Source, f.Destination = self, owner(k.dst, k.dstPort)
		f.Source.IP, f.Source.Port = k.src.String(), k.srcPort
	} else {
		f.Direction = "ingress"
		f.Source, f.Destination = owner(k.src, k.srcPort), self
		f.Destination.IP, f.Destination.Port = k.dst.String(), k.dstPort
	}
	switch {
	case rules == nil:
	case f.Verdict == agentv1.VerdictAllowed:
		f.Policy = Admitted(rules, f.Source.Service, f.Destination.Service, k.dst, k.proto, k.dstPort)
	case f.Verdict == agentv1.VerdictWouldBlock:
		if all := rules.WithAudit(); all != nil {
			f.Policy = "audit: " + Decided(all, f.Source.Service, f.Destination.Service, k.proto, k.dstPort)
		}
	default:
		f.Policy = Decided(rules, f.Source.Service, f.Destination.Service, k.proto, k.dstPort)
	}
	if e.Flows != nil {
		dst := f.Destination.Service
		if dst == "" {
			dst = "outside"
		}
		src := f.Source.Service
		if src == "" {
			src = "unknown"
		}
		e.Flows.WithLabelValues(f.Direction, src, dst, f.Verdict).Inc()
	}
	if suppressed, ok := lim.allow(); ok {
		e.Log.Warn(agentv1.FlowRecordMessage, "flow", f, "suppressed", suppressed)
	}
}

func (e *Enforcer) stopListeners() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range e.applied {
		if a.cancel != nil {
			a.cancel()
		}
	}
}

// limiter lets through n records a second and counts the rest, which
// the next record let through reports.
type limiter struct {
	mu         sync.Mutex
	n          int
	second     time.Time
	used       int
	suppressed int
}

func newLimiter(n int) *limiter {
	if n <= 0 {
		n = 20
	}
	return &limiter{n: n}
}

func (l *limiter) allow() (suppressed int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now().Truncate(time.Second)
	if !now.Equal(l.second) {
		l.second, l.used = now, 0
	}
	if l.used >= l.n {
		l.suppressed++
		return 0, false
	}
	l.used++
	s := l.suppressed
	l.suppressed = 0
	return s, true
}
