package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/swarmsec/swarmsec/agent/netns"
	"github.com/swarmsec/swarmsec/agent/tasks"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// DefaultGroup is the NFLOG group of the answers, in each task's
// namespace (the per-task rules' drops use 7332).
const DefaultGroup = 7333

// Watcher keeps the DNS table and a listener in every local task's
// namespace, and logs the aggregated lookups every Report.
type Watcher struct {
	Engine tasks.Engine
	// ProcDir, when set, is where the agent sees the node's /proc: a
	// task's namespace is opened as <ProcDir>/<pid>/ns/net. Else by its
	// sandbox key.
	ProcDir string
	// OpenNS opens a namespace (netns.Open when nil).
	OpenNS func(path string) (*netns.Handle, error)
	// Group is the NFLOG group (DefaultGroup when 0).
	Group uint16
	Agg   *Aggregator
	// Report is how often the aggregates are logged (a minute when 0);
	// Resync how often the tables are checked (10 s when 0), besides the
	// engine's events.
	Report, Resync time.Duration
	Node           string
	Log            *slog.Logger
	// Install and Listen are the kernel's (tests give their own).
	Install   func(fd int, group uint16) error
	Installed func(fd int) (bool, error)
	Counted   func(fd int) (uint64, error)
	Listen    func(ctx context.Context, fd int, group uint16, fn func([]byte)) error

	book      atomic.Pointer[Book]
	mu        sync.Mutex
	listening map[string]*listener // by container
	// unseen counts the answers of the interval the tables counted and
	// the agent did not get (the kernel's limit, a full NFLOG queue).
	unseen atomic.Uint64
	warned time.Time
}

// listener is one task's: what it got, and the table's count it compares
// that with (from when it began listening or the table was put back).
type listener struct {
	cancel   context.CancelFunc
	received atomic.Uint64
	// The baseline: the table's count and what was received then, and
	// the unseen answers already reported since; what was received at
	// the last look.
	counted, got, unseen, last uint64
}

// account compares the table's count with what the listener got since
// its baseline, and adds the answers not got that are new to the
// watcher's unseen.
func (w *Watcher) account(l *listener, counted uint64) {
	got := l.received.Load()
	if counted < l.counted {
		// The table was put back since the last look: its counters
		// restart, and what came since may be the new table's.
		l.counted, l.got, l.unseen = 0, l.last, 0
	}
	l.last = got
	c, g := counted-l.counted, got-l.got
	if c > g && c-g > l.unseen {
		w.unseen.Add(c - g - l.unseen)
		l.unseen = c - g
	}
}

// Run keeps the tables and listeners until ctx ends, and reports once
// more on its way out. The tables stay: they only log.
func (w *Watcher) Run(ctx context.Context) {
	report, resync := w.Report, w.Resync
	if report <= 0 {
		report = time.Minute
	}
	if resync <= 0 {
		resync = 10 * time.Second
	}
	kick := make(chan struct{}, 1)
	go tasks.Watch(ctx, w.Engine, func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	})
	rt, st := time.NewTicker(report), time.NewTicker(resync)
	defer rt.Stop()
	defer st.Stop()
	w.Agg.Flush(time.Now()) // starts the first interval
	for {
		if err := w.Sync(ctx); err != nil && ctx.Err() == nil && time.Since(w.warned) >= 10*time.Minute {
			w.warned = time.Now()
			w.Log.Warn("DNS lookups of some tasks not watched (said again in 10m if it goes on)", "err", err)
		}
		select {
		case <-ctx.Done():
			w.stop()
			w.log(w.Flush(time.Now()))
			return
		case <-rt.C:
			w.log(w.Flush(time.Now()))
		case <-st.C:
		case <-kick:
		}
	}
}

// Sync discovers the local tasks, names their networks' addresses, and
// makes sure each task's namespace has the table and a listener.
func (w *Watcher) Sync(ctx context.Context) error {
	v, err := tasks.Discover(ctx, w.Engine)
	if err != nil {
		return err
	}
	w.book.Store(NewBook(v))
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.listening == nil {
		w.listening = map[string]*listener{}
	}
	seen := map[string]bool{}
	var errs []error
	for i := range v.Tasks {
		t := &v.Tasks[i]
		if t.SandboxKey == "" || t.Service == "" || len(t.Addrs) == 0 {
			// No overlay of its own, so no embedded resolver to watch: a
			// task on the host network (the agent itself: its "namespace"
			// is the node's) or on the routing mesh only.
			continue
		}
		seen[t.Container] = true
		if err := w.syncTask(ctx, t); err != nil {
			errs = append(errs, fmt.Errorf("task %s: %w", t.Name, err))
		}
	}
	for id, l := range w.listening {
		if !seen[id] {
			l.cancel()
			delete(w.listening, id)
		}
	}
	return errors.Join(errs...)
}

func (w *Watcher) syncTask(ctx context.Context, t *tasks.Task) error {
	open := w.OpenNS
	if open == nil {
		open = netns.Open
	}
	path := t.SandboxKey
	if w.ProcDir != "" && t.Pid > 0 {
		path = filepath.Join(w.ProcDir, strconv.Itoa(t.Pid), "ns", "net")
	}
	h, err := open(path)
	if err != nil {
		return err
	}
	defer h.Close()
	group := w.group()
	installed := w.Installed
	if installed == nil {
		installed = Installed
	}
	// By its pid the namespace is the task's only while the task runs:
	// a pid freed and taken again between the discovery and the open is
	// another's (a new task's, the node's own). Before writing to it or
	// listening in it, the task must still run with that pid (the open
	// file holds the namespace it names).
	checked := false
	check := func() error {
		if checked || path == t.SandboxKey {
			return nil
		}
		checked = true
		ci, err := w.Engine.ContainerInspect(ctx, t.Container)
		if err != nil || ci.ContainerJSONBase == nil || ci.State == nil || !ci.State.Running || ci.State.Pid != t.Pid {
			return fmt.Errorf("%s: no longer its namespace (the task stopped)", path)
		}
		return nil
	}
	if ok, err := installed(h.Fd()); err != nil {
		return err
	} else if !ok {
		if err := check(); err != nil {
			return err
		}
		install := w.Install
		if install == nil {
			install = Install
		}
		if err := install(h.Fd(), group); err != nil {
			return err
		}
		if l, ok := w.listening[t.Container]; ok { // its counters start again
			l.counted, l.got, l.unseen = 0, l.last, 0
		}
	}
	counted := w.Counted
	if counted == nil {
		counted = Counted
	}
	if l, ok := w.listening[t.Container]; ok {
		if n, err := counted(h.Fd()); err == nil {
			w.account(l, n)
		}
		return nil
	}
	if err := check(); err != nil {
		return err
	}
	listen := w.Listen
	if listen == nil {
		listen = Listen
	}
	lctx, cancel := context.WithCancel(ctx)
	service := t.Service
	l := &listener{cancel: cancel}
	if err := listen(lctx, h.Fd(), group, func(p []byte) { l.received.Add(1); w.Record(service, p, time.Now()) }); err != nil {
		cancel()
		return err
	}
	// The answers counted before it listened were not its to get.
	l.counted, _ = counted(h.Fd())
	l.got, l.last = l.received.Load(), l.received.Load()
	w.listening[t.Container] = l
	return nil
}

func (w *Watcher) group() uint16 {
	if w.Group == 0 {
		return DefaultGroup
	}
	return w.Group
}

// Record counts one logged packet of a task of service.
func (w *Watcher) Record(service string, packet []byte, now time.Time) {
	a, ok := ParsePacket(packet)
	if !ok {
		return
	}
	book := w.book.Load()
	if book == nil {
		book = &Book{}
	}
	class, svc := book.Classify(&a)
	w.Agg.Add(Key{Source: service, Name: a.Name, Type: a.Type, Class: class, Service: svc}, now)
}

func (w *Watcher) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, l := range w.listening {
		l.cancel()
		delete(w.listening, id)
	}
}

// Flush ends the interval: the report of what it saw, in lines.
func (w *Watcher) Flush(now time.Time) []agentv1.DNS {
	lookups, dropped, since := w.Agg.Flush(now)
	interval := time.Minute
	if !since.IsZero() {
		interval = now.Sub(since)
	}
	lookups, over := BoundSources(lookups, SourceBudget(interval))
	return Lines(w.Node, now, since, lookups, dropped+over, w.unseen.Swap(0))
}

func (w *Watcher) log(lines []agentv1.DNS) {
	for _, l := range lines {
		w.Log.Info(agentv1.DNSMessage, agentv1.DNSKey, l)
	}
}
