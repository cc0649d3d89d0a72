package flows

import (
	"cmp"
	"slices"
	"sync"
	"time"

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// Defaults of the bounds.
const (
	DefaultMaxKeys = 4096
	DefaultWindow  = time.Hour
)

// Key is what connections are aggregated by.
type Key struct {
	Kind             string
	Source           string
	SourceBlock      string
	Destination      string
	DestinationBlock string
	Port             uint16
	Protocol         string
}

// Sighting is what one read saw of one key.
type Sighting struct {
	// New connections, never seen before.
	New uint64
	// Unanswered of the new ones: UDP no reply came back for when first
	// seen.
	Unanswered uint64
	// Open connections at the read.
	Open uint64
	// Bytes both ways since the previous read.
	Bytes uint64
}

type entry struct {
	first, last time.Time
	// Of the interval since the last Flush.
	conns, bytes, open, unanswered uint64
	touched                        bool
	// The read that last set open.
	read uint64
}

// Aggregator keeps at most MaxKeys aggregates, each forgotten once idle
// for Window. It is safe for concurrent use.
type Aggregator struct {
	MaxKeys int
	Window  time.Duration

	mu      sync.Mutex
	entries map[Key]*entry
	read    uint64
	expired uint64 // the read that last looked for idle aggregates
	dropped uint64
	since   time.Time
}

func (a *Aggregator) bounds() (int, time.Duration) {
	n, w := a.MaxKeys, a.Window
	if n <= 0 {
		n = DefaultMaxKeys
	}
	if w <= 0 {
		w = DefaultWindow
	}
	return n, w
}

// BeginRead starts one read of every namespace: the open counts of the
// reads before it stop counting.
func (a *Aggregator) BeginRead() {
	a.mu.Lock()
	a.read++
	a.mu.Unlock()
}

// Add records a sighting at now. It returns false when the key is new and
// the bound is reached (even after forgetting the idle aggregates): the
// sighting's new connections are then counted as dropped.
func (a *Aggregator) Add(k Key, now time.Time, s Sighting) bool {
	maxKeys, window := a.bounds()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.entries == nil {
		a.entries = map[Key]*entry{}
	}
	e := a.entries[k]
	if e == nil {
		if len(a.entries) >= maxKeys && a.expired != a.read {
			// Once a read: a flood of new keys must not walk the map
			// for each.
			a.expired = a.read
			a.expireLocked(now, window)
		}
		if len(a.entries) >= maxKeys {
			a.dropped += max(s.New, 1)
			return false
		}
		e = &entry{first: now}
		a.entries[k] = e
	}
	if e.read != a.read {
		e.read, e.open = a.read, 0
	}
	e.last = now
	e.conns += s.New
	e.unanswered += s.Unanswered
	e.bytes += s.Bytes
	e.open += s.Open
	e.touched = true
	return true
}

func (a *Aggregator) expireLocked(now time.Time, window time.Duration) {
	for k, e := range a.entries {
		if now.Sub(e.last) > window {
			delete(a.entries, k)
		}
	}
}

// Drop counts connections seen and not aggregated.
func (a *Aggregator) Drop(n uint64) {
	a.mu.Lock()
	a.dropped += n
	a.mu.Unlock()
}

// Len is the number of aggregates kept.
func (a *Aggregator) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.entries)
}

// Flush returns the aggregates seen since the last Flush, sorted by key,
// with the connections dropped meanwhile and when the interval began, then
// starts a new interval and forgets the aggregates idle for Window.
func (a *Aggregator) Flush(now time.Time) (flows []agentv1.Flow, dropped uint64, since time.Time) {
	_, window := a.bounds()
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, e := range a.entries {
		if !e.touched {
			continue
		}
		flows = append(flows, agentv1.Flow{
			Kind: k.Kind, Source: k.Source, SourceBlock: k.SourceBlock, Destination: k.Destination, DestinationBlock: k.DestinationBlock,
			Port: k.Port, Protocol: k.Protocol, Connections: e.conns, Unanswered: e.unanswered, Open: e.open, Bytes: e.bytes,
			FirstSeen: e.first.UTC(), LastSeen: e.last.UTC(),
		})
		e.conns, e.unanswered, e.bytes, e.touched = 0, 0, 0, false
	}
	a.expireLocked(now, window)
	slices.SortFunc(flows, func(x, y agentv1.Flow) int {
		return cmp.Or(cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Source, y.Source), cmp.Compare(x.SourceBlock, y.SourceBlock),
			cmp.Compare(x.Destination, y.Destination), cmp.Compare(x.DestinationBlock, y.DestinationBlock),
			cmp.Compare(x.Port, y.Port), cmp.Compare(x.Protocol, y.Protocol))
	})
	dropped, since = a.dropped, a.since
	a.dropped, a.since = 0, now
	return flows, dropped, since
}
