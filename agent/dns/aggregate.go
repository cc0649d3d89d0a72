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
	// The list of its source's entries by last sighting, most recent
	// first.
	prev, next *entry
}

// list is one source's entries, most recently seen first.
type list struct {
	head, tail *entry
	n          int
}

// Aggregator keeps at most MaxKeys aggregates: a new key at the bound
// evicts the least recently seen key of the source that holds the most
// (its lookups not yet reported are counted as dropped), and Flush
// forgets those idle for Window. Unlike connections, a flood of new names
// must not hide the next ones: a service probing names is what the audit
// looks for. Nor may one service's flood (a task picks its names) evict
// the others' lookups before they are reported: the service that holds
// the most pays for a new key. Safe for concurrent use.
type Aggregator struct {
	MaxKeys int
	Window  time.Duration

	mu      sync.Mutex
	entries map[Key]*entry
	sources map[string]*list
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

// Add counts one answer at now.
func (a *Aggregator) Add(k Key, now time.Time) {
	maxKeys, _ := a.bounds()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.entries == nil {
		a.entries, a.sources = map[Key]*entry{}, map[string]*list{}
	}
	e := a.entries[k]
	if e == nil {
		for len(a.entries) >= maxKeys {
			l := a.largest()
			if l == nil {
				break
			}
			old := l.tail
			a.dropped += old.count
			a.remove(old)
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

// largest is the list of the source holding the most keys (of those,
// the one whose least recently seen is oldest).
func (a *Aggregator) largest() *list {
	var best *list
	for _, l := range a.sources {
		if best == nil || l.n > best.n || (l.n == best.n && l.tail.last.Before(best.tail.last)) {
			best = l
		}
	}
	return best
}

func (a *Aggregator) remove(e *entry) {
	a.unlink(e)
	delete(a.entries, e.key)
}

func (a *Aggregator) unlink(e *entry) {
	l := a.sources[e.key.Source]
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		l.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = nil, nil
	if l.n--; l.n == 0 {
		delete(a.sources, e.key.Source)
	}
}

func (a *Aggregator) pushFront(e *entry) {
	l := a.sources[e.key.Source]
	if l == nil {
		l = &list{}
		a.sources[e.key.Source] = l
	}
	e.next = l.head
	if l.head != nil {
		l.head.prev = e
	}
	l.head = e
	if l.tail == nil {
		l.tail = e
	}
	l.n++
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
	for _, e := range a.entries {
		if e.count == 0 {
			continue
		}
		lookups = append(lookups, agentv1.DNSLookup{Source: e.key.Source, Name: e.key.Name, Type: e.key.Type, Class: e.key.Class,
			Service: e.key.Service, Count: e.count, FirstSeen: e.first.UTC(), LastSeen: e.last.UTC()})
		e.count = 0
	}
	// Each source's least recently seen are at its tail.
	for _, l := range a.sources {
		for l.n > 0 && now.Sub(l.tail.last) > window {
			a.remove(l.tail)
		}
	}
	slices.SortFunc(lookups, func(x, y agentv1.DNSLookup) int {
		return cmp.Or(cmp.Compare(x.Source, y.Source), cmp.Compare(x.Name, y.Name), cmp.Compare(x.Type, y.Type),
			cmp.Compare(x.Class, y.Class), cmp.Compare(x.Service, y.Service))
	})
	dropped, since = a.dropped, a.since
	a.dropped, a.since = 0, now
	return lookups, dropped, since
}

// sourceBytes bounds the JSON of one source's lookups a minute of
// reports: the agent's logs rotate (the stack keeps 30 MB), and one task
// asking 4,096 new names of 253 bytes a minute would log 7 MB a minute,
// pushing every node report, flow and drop record of the hour out of
// them.
const sourceBytes = 64 << 10

// SourceBudget is one source's share of a report covering interval:
// sourceBytes a minute, and at least 4 KiB.
func SourceBudget(interval time.Duration) int {
	return max(4<<10, int(int64(sourceBytes)*int64(interval)/int64(time.Minute)))
}

// BoundSources keeps of each source's lookups the most recently seen, up
// to budget bytes of their JSON, and says how many lookups the others
// counted. The kept stay in their order.
func BoundSources(lookups []agentv1.DNSLookup, budget int) (kept []agentv1.DNSLookup, dropped uint64) {
	size := map[string]int{}
	byRecency := slices.Clone(lookups)
	slices.SortStableFunc(byRecency, func(x, y agentv1.DNSLookup) int { return y.LastSeen.Compare(x.LastSeen) })
	keep := map[string]bool{}
	for i := range byRecency {
		l := &byRecency[i]
		b, _ := json.Marshal(l) // strings, numbers and times: it cannot fail
		if size[l.Source]+len(b) > budget {
			size[l.Source] = budget // the older ones go too
			dropped += l.Count
			continue
		}
		size[l.Source] += len(b)
		keep[l.Key()] = true
	}
	if dropped == 0 {
		return lookups, 0
	}
	for _, l := range lookups {
		if keep[l.Key()] {
			kept = append(kept, l)
		}
	}
	return kept, dropped
}

// lineBytes bounds the JSON of one line's lookups: the engine splits a
// log line over 16 KiB into parts no reader can parse, and a task picks
// the names it asks (253 bytes of control characters are six bytes each
// in JSON), so the count of lookups alone does not bound a line.
const lineBytes = 12 << 10

// Lines splits one interval's report into log lines of at most
// agentv1.DNSPerLine lookups and lineBytes of their JSON (none when
// nothing was seen, dropped or unseen).
func Lines(node string, now, since time.Time, lookups []agentv1.DNSLookup, dropped, unseen uint64) []agentv1.DNS {
	if len(lookups) == 0 && dropped == 0 && unseen == 0 {
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
			d.Dropped, d.Unseen = dropped, unseen
		}
		if d.Lookups == nil {
			d.Lookups = []agentv1.DNSLookup{}
		}
		out = append(out, d)
	}
	return out
}
