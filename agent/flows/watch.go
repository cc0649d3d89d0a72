package flows

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/docker/docker/api/types/network"

	"github.com/swarmsec/swarmsec/agent/netns"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// Docker is what watching flows asks of the node's engine.
type Docker interface {
	netns.Docker
	NetworkInspect(ctx context.Context, networkID string, options network.InspectOptions) (network.Inspect, error)
}

// Watcher reads the local tasks' conntrack every Poll and logs the
// aggregates every Report.
type Watcher struct {
	Docker Docker
	// ProcRoot is where the agent sees the node's /proc: a task's
	// namespace is opened as ProcRoot/PID/ns/net. Empty: through its
	// sandbox key, under Root.
	ProcRoot string
	// Root is where the agent sees the engine's /var/run/docker/netns
	// (empty: there).
	Root string
	Agg  *Aggregator
	// Poll is how often conntrack is read (10 s when 0): a TCP connection
	// stays in conntrack at least 2 minutes after it closes, so every one
	// is seen.
	Poll time.Duration
	// Report is how often the aggregates are logged (a minute when 0).
	Report time.Duration
	Node   string
	Log    *slog.Logger

	// MaxConns bounds the connections read from one task
	// (DefaultMaxConns when 0): a dump is held in memory whole, and the
	// agent shares its node's memory with what it enforces. A task
	// holding more is skipped, and its connections counted as dropped.
	MaxConns int
	// Count gives a namespace's number of connections (ConnCount when
	// nil).
	Count func(ns *netns.Handle) (int, error)
	// Dump reads a namespace's connections (Dump when nil).
	Dump func(fd int) ([]Conn, error)
	// Addrs gives a namespace's own addresses (read inside it when nil).
	Addrs func(ns *netns.Handle) (map[netip.Addr]bool, error)

	// warned is when a failed read was last logged: a node without the
	// capability fails every poll, and says so every warnEvery.
	warned time.Time

	// seen holds, per container, the connections of its last read and
	// their bytes: a connection is new once, and bytes count as deltas.
	seen map[string]map[uint32]uint64
}

// warnEvery spaces the warnings of reads that keep failing.
const warnEvery = 10 * time.Minute

// Run reads and reports until ctx ends; it reports once more on its way
// out.
func (w *Watcher) Run(ctx context.Context) error {
	poll, report := w.Poll, w.Report
	if poll <= 0 {
		poll = 10 * time.Second
	}
	if report <= 0 {
		report = time.Minute
	}
	pt, rt := time.NewTicker(poll), time.NewTicker(report)
	defer pt.Stop()
	defer rt.Stop()
	w.Agg.Flush(time.Now()) // starts the first interval
	for {
		if err := w.Read(ctx, time.Now()); err != nil && ctx.Err() == nil && time.Since(w.warned) >= warnEvery {
			w.warned = time.Now()
			w.Log.Warn("flows not read (said again in "+warnEvery.String()+" if it goes on)", "err", err)
		}
		select {
		case <-ctx.Done():
			w.log(w.Flush(time.Now()))
			return nil
		case <-rt.C:
			w.log(w.Flush(time.Now()))
		case <-pt.C:
		}
	}
}

// Read reads every local task's connections once into the aggregates.
// A task it cannot read is skipped (said in the error); the others count.
func (w *Watcher) Read(ctx context.Context, now time.Time) error {
	tasks, err := netns.LocalTasks(ctx, w.Docker)
	if err != nil {
		return err
	}
	book := w.book(ctx, tasks)
	w.Agg.BeginRead()
	seen := make(map[string]map[uint32]uint64, len(tasks))
	var errs []string
	for _, t := range tasks {
		if t.SandboxKey == "" {
			continue // the host's network: no namespace of its own
		}
		ids, err := w.readTask(t, book, now)
		if err != nil {
			errs = append(errs, fmt.Sprintf("task %s of %s: %v", t.TaskID, t.Service, err))
			continue
		}
		seen[t.ContainerID] = ids
	}
	// Containers gone are forgotten with their connections.
	w.seen = seen
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

func (w *Watcher) readTask(t netns.Task, book *Book, now time.Time) (map[uint32]uint64, error) {
	path, err := t.NetNSPath(w.ProcRoot, w.Root)
	if err != nil {
		return nil, err
	}
	ns, err := netns.Open(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	addrs := w.Addrs
	if addrs == nil {
		addrs = OwnAddrs
	}
	own, err := addrs(ns)
	if err != nil {
		return nil, err
	}
	for _, a := range t.Addrs() {
		own[a] = true
	}
	count, limit := w.Count, w.MaxConns
	if count == nil {
		count = ConnCount
	}
	if limit <= 0 {
		limit = DefaultMaxConns
	}
	if n, err := count(ns); err == nil && n > limit {
		w.Agg.Drop(uint64(n))
		return w.seen[t.ContainerID], fmt.Errorf("%d connections, more than the %d read from one task: counted as dropped", n, limit)
	}
	dump := w.Dump
	if dump == nil {
		dump = Dump
	}
	conns, err := dump(ns.Fd())
	if err != nil {
		return nil, err
	}
	prev := w.seen[t.ContainerID]
	ids := make(map[uint32]uint64, len(conns))
	sightings := map[Key]Sighting{}
	for _, c := range conns {
		k, ok := classify(t.Service, own, book, c)
		if !ok {
			continue
		}
		s := sightings[k]
		before, known := prev[c.ID]
		if !known {
			s.New++
			s.Bytes += c.Bytes
			if c.Unanswered {
				s.Unanswered++
			}
		} else if c.Bytes >= before {
			s.Bytes += c.Bytes - before
		}
		if c.Open {
			s.Open++
		}
		sightings[k] = s
		ids[c.ID] = c.Bytes
	}
	for k, s := range sightings {
		w.Agg.Add(k, now, s)
	}
	return ids, nil
}

// book names every address of the networks the local tasks are on.
func (w *Watcher) book(ctx context.Context, tasks []netns.Task) *Book {
	b := &Book{}
	inspected := map[string]bool{}
	for _, t := range tasks {
		for _, a := range t.Networks {
			for _, ip := range a.Addrs {
				b.Add(ip, t.Service)
			}
			if inspected[a.NetworkID] || a.NetworkID == "" {
				continue
			}
			inspected[a.NetworkID] = true
			n, err := w.Docker.NetworkInspect(ctx, a.NetworkID, network.InspectOptions{Verbose: true})
			if err != nil {
				continue // gone meanwhile; its tasks' own addresses still name them
			}
			if !n.Ingress && n.Driver == "overlay" {
				for _, c := range n.IPAM.Config {
					if p, err := netip.ParsePrefix(c.Subnet); err == nil {
						b.AddSubnet(p)
					}
				}
			}
			for name, si := range n.Services {
				b.Add(parseAddr(si.VIP), name)
				for _, task := range si.Tasks {
					b.Add(parseAddr(task.EndpointIP), name)
				}
			}
		}
	}
	return b
}

// parseAddr reads "10.0.1.2" or "10.0.1.2/24".
func parseAddr(s string) netip.Addr {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr()
	}
	a, _ := netip.ParseAddr(s)
	return a
}

// DefaultMaxConns is the default bound on the connections read from one
// task: a dump is held whole while it is read.
const DefaultMaxConns = 20000

// ConnCount reads how many connections a namespace's conntrack holds,
// from inside (its nf_conntrack_count).
func ConnCount(ns *netns.Handle) (int, error) {
	var n int
	err := ns.Do(func() error {
		b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_count")
		if err != nil {
			return err
		}
		n, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	return n, err
}

// OwnAddrs reads the addresses of a namespace's interfaces, from inside.
func OwnAddrs(ns *netns.Handle) (map[netip.Addr]bool, error) {
	own := map[netip.Addr]bool{}
	err := ns.Do(func() error {
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok {
					own[ip.Unmap()] = true
				}
			}
		}
		return nil
	})
	return own, err
}

// Flush ends the interval: the report of what it saw, in lines of at most
// agentv1.FlowsPerLine flows (none when nothing was seen or dropped).
func (w *Watcher) Flush(now time.Time) []agentv1.Flows {
	flows, dropped, since := w.Agg.Flush(now)
	return Lines(w.Node, now, since, flows, dropped)
}

// Lines splits one interval's report into log lines.
func Lines(node string, now, since time.Time, flows []agentv1.Flow, dropped uint64) []agentv1.Flows {
	if len(flows) == 0 && dropped == 0 {
		return nil
	}
	parts := max(1, (len(flows)+agentv1.FlowsPerLine-1)/agentv1.FlowsPerLine)
	out := make([]agentv1.Flows, 0, parts)
	for i := range parts {
		lo, hi := i*agentv1.FlowsPerLine, min((i+1)*agentv1.FlowsPerLine, len(flows))
		f := agentv1.Flows{Node: node, Time: now.UTC(), Part: i + 1, Parts: parts, Flows: flows[lo:hi]}
		if !since.IsZero() {
			f.Interval = agentv1.Duration(now.Sub(since).Round(time.Second))
		}
		if i == 0 {
			f.Dropped = dropped
		}
		if f.Flows == nil {
			f.Flows = []agentv1.Flow{}
		}
		out = append(out, f)
	}
	return out
}

func (w *Watcher) log(lines []agentv1.Flows) {
	for _, l := range lines {
		w.Log.Info(agentv1.FlowsMessage, agentv1.FlowsKey, l)
	}
}
