package dns

import (
	"cmp"
	"encoding/json"
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

// Key is what lookups are aggregated by.
type Key struct {
	Source, Name, Type, Class, Service string
}

type entry struct {
	key         Key
	first, last time.Time
	// count is of the interval since the last Flush.
	count uint64
	// The list of entries by last sighting, most recent first.
	prev, next *entry
}

// Aggregator keeps at most MaxKeys aggregates: a new key at the bound
// evicts the one seen least recently (its lookups not yet reported are
// counted as dropped), and Flush forgets those idle for Window. Unlike
// connections, a flood of new names must not hide the next ones: a
// service probing names is what the audit looks for. Safe for concurrent
// use.
type Aggregator struct {
	MaxKeys int
	Window  time.Duration

	mu         sync.Mutex
	entries    map[Key]*entry
	head, tail *entry // most and least recently seen
	dropped    uint64
	since      time.Time
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

// Add counts one answer at now.
func (a *Aggregator) Add(k Key, now time.Time) {
	maxKeys, _ := a.bounds()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.entries == nil {
		a.entries = map[Key]*entry{}
	}
	e := a.entries[k]
	if e == nil {
		for len(a.entries) >= maxKeys && a.tail != nil {
			old := a.tail
			a.dropped += old.count
			a.unlink(old)
			delete(a.entries, old.key)
		}
		e = &entry{key: k, first: now}
		a.entries[k] = e
	} else {
		a.unlink(e)
	}
	a.pushFront(e)
	e.last = now
	e.count++
}

func (a *Aggregator) unlink(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		a.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		a.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (a *Aggregator) pushFront(e *entry) {
	e.next = a.head
	if a.head != nil {
		a.head.prev = e
	}
	a.head = e
	if a.tail == nil {
		a.tail = e
	}
}

// Len is the number of aggregates kept.
func (a *Aggregator) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.entries)
}

// Flush returns the aggregates seen since the last Flush, sorted by key,
// with the lookups dropped meanwhile and when the interval began, then
// starts a new interval and forgets the aggregates idle for Window.
func (a *Aggregator) Flush(now time.Time) (lookups []agentv1.DNSLookup, dropped uint64, since time.Time) {
	_, window := a.bounds()
	a.mu.Lock()
	defer a.mu.Unlock()
	for e := a.head; e != nil; e = e.next {
		if e.count == 0 {
			continue
		}
		lookups = append(lookups, agentv1.DNSLookup{Source: e.key.Source, Name: e.key.Name, Type: e.key.Type, Class: e.key.Class,
			Service: e.key.Service, Count: e.count, FirstSeen: e.first.UTC(), LastSeen: e.last.UTC()})
		e.count = 0
	}
	// The least recently seen are at the tail.
	for a.tail != nil && now.Sub(a.tail.last) > window {
		old := a.tail
		a.unlink(old)
		delete(a.entries, old.key)
	}
	slices.SortFunc(lookups, func(x, y agentv1.DNSLookup) int {
		return cmp.Or(cmp.Compare(x.Source, y.Source), cmp.Compare(x.Name, y.Name), cmp.Compare(x.Type, y.Type),
			cmp.Compare(x.Class, y.Class), cmp.Compare(x.Service, y.Service))
	})
	dropped, since = a.dropped, a.since
	a.dropped, a.since = 0, now
	return lookups, dropped, since
}

// lineBytes bounds the JSON of one line's lookups: the engine splits a
// log line over 16 KiB into parts no reader can parse, and a task picks
// the names it asks (253 bytes of control characters are six bytes each
// in JSON), so the count of lookups alone does not bound a line.
const lineBytes = 12 << 10

// Lines splits one interval's report into log lines of at most
// agentv1.DNSPerLine lookups and lineBytes of their JSON (none when
// nothing was seen or dropped).
func Lines(node string, now, since time.Time, lookups []agentv1.DNSLookup, dropped uint64) []agentv1.DNS {
	if len(lookups) == 0 && dropped == 0 {
		return nil
	}
	var parts [][]agentv1.DNSLookup
	lo, size := 0, 0
	for i := range lookups {
		b, _ := json.Marshal(&lookups[i]) // strings, numbers and times: it cannot fail
		if i > lo && (i-lo == agentv1.DNSPerLine || size+len(b)+1 > lineBytes) {
			parts = append(parts, lookups[lo:i])
			lo, size = i, 0
		}
		size += len(b) + 1
	}
	parts = append(parts, lookups[lo:])
	out := make([]agentv1.DNS, 0, len(parts))
	for i, part := range parts {
		d := agentv1.DNS{Node: node, Time: now.UTC(), Part: i + 1, Parts: len(parts), Lookups: part}
		if !since.IsZero() {
			d.Interval = agentv1.Duration(now.Sub(since).Round(time.Second))
		}
		if i == 0 {
			d.Dropped = dropped
		}
		if d.Lookups == nil {
			d.Lookups = []agentv1.DNSLookup{}
		}
		out = append(out, d)
	}
	return out
}
