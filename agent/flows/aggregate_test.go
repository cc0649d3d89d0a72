package flows

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

func key(i int) Key {
	return Key{Kind: agentv1.FlowService, Source: "a", Destination: fmt.Sprintf("svc%d", i), Port: 80, Protocol: "tcp"}
}

func TestAggregatorCountsPerIntervalAndKeepsFirstSeen(t *testing.T) {
	a := &Aggregator{MaxKeys: 10, Window: time.Hour}
	t0 := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	a.BeginRead()
	a.Add(key(1), t0, Sighting{New: 2, Open: 2, Bytes: 100})
	a.Add(key(1), t0, Sighting{New: 1, Open: 1}) // a second replica, same read
	flows, dropped, _ := a.Flush(t0.Add(time.Minute))
	if len(flows) != 1 || dropped != 0 {
		t.Fatalf("flows %+v dropped %d", flows, dropped)
	}
	if f := flows[0]; f.Connections != 3 || f.Open != 3 || f.Bytes != 100 || !f.FirstSeen.Equal(t0) || f.Target() != "svc1:80/tcp" {
		t.Errorf("flow %+v", f)
	}
	// The next interval counts only what it saw; open is the last read's.
	a.BeginRead()
	a.Add(key(1), t0.Add(2*time.Minute), Sighting{Open: 1})
	flows, _, since := a.Flush(t0.Add(3 * time.Minute))
	if len(flows) != 1 || flows[0].Connections != 0 || flows[0].Open != 1 || !flows[0].FirstSeen.Equal(t0) || !flows[0].LastSeen.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("second interval %+v", flows)
	}
	if !since.Equal(t0.Add(time.Minute)) {
		t.Errorf("interval began %s", since)
	}
	// Nothing seen: nothing reported.
	if flows, _, _ := a.Flush(t0.Add(4 * time.Minute)); len(flows) != 0 {
		t.Errorf("idle interval reported %+v", flows)
	}
}

func TestAggregatorBoundDropsAndCounts(t *testing.T) {
	a := &Aggregator{MaxKeys: 3, Window: time.Hour}
	now := time.Now()
	a.BeginRead()
	for i := range 5 {
		ok := a.Add(key(i), now, Sighting{New: 2})
		if ok != (i < 3) {
			t.Errorf("key %d added %v", i, ok)
		}
	}
	// A key already kept still counts at the bound.
	if !a.Add(key(0), now, Sighting{New: 1}) {
		t.Error("a kept key refused at the bound")
	}
	if a.Len() != 3 {
		t.Errorf("%d keys kept, bound 3", a.Len())
	}
	flows, dropped, _ := a.Flush(now)
	if len(flows) != 3 || dropped != 4 {
		t.Errorf("%d flows, %d dropped; want 3 and 4", len(flows), dropped)
	}
	if _, dropped, _ := a.Flush(now); dropped != 0 {
		t.Errorf("dropped carried over: %d", dropped)
	}
}

func TestAggregatorForgetsIdleKeys(t *testing.T) {
	a := &Aggregator{MaxKeys: 2, Window: 10 * time.Minute}
	t0 := time.Now()
	a.BeginRead()
	a.Add(key(1), t0, Sighting{New: 1})
	a.Add(key(2), t0.Add(8*time.Minute), Sighting{New: 1})
	a.Flush(t0.Add(9 * time.Minute))
	if a.Len() != 2 {
		t.Fatalf("forgot too early: %d", a.Len())
	}
	// Full: a new key makes room by forgetting key 1, idle for 11 min.
	a.BeginRead()
	if !a.Add(key(3), t0.Add(11*time.Minute), Sighting{New: 1}) {
		t.Fatal("no room made from an idle key")
	}
	if a.Len() != 2 {
		t.Errorf("%d keys", a.Len())
	}
	// Flush forgets what is idle too, and a forgotten key starts afresh.
	a.Flush(t0.Add(30 * time.Minute))
	if a.Len() != 0 {
		t.Errorf("%d keys after the window", a.Len())
	}
	a.BeginRead()
	a.Add(key(1), t0.Add(31*time.Minute), Sighting{New: 1})
	flows, _, _ := a.Flush(t0.Add(32 * time.Minute))
	if len(flows) != 1 || !flows[0].FirstSeen.Equal(t0.Add(31*time.Minute).UTC()) {
		t.Errorf("forgotten key came back as %+v", flows)
	}
}

func TestLinesSplitReports(t *testing.T) {
	var flows []agentv1.Flow
	for i := range 2*agentv1.FlowsPerLine + 1 {
		flows = append(flows, agentv1.Flow{Destination: fmt.Sprint(i)})
	}
	now := time.Now()
	lines := Lines("n1", now, now.Add(-time.Minute), flows, 7)
	if len(lines) != 3 || lines[0].Dropped != 7 || lines[1].Dropped != 0 || lines[2].Parts != 3 || len(lines[2].Flows) != 1 || time.Duration(lines[0].Interval) != time.Minute {
		t.Errorf("lines %+v", lines)
	}
	if l := Lines("n1", now, now, nil, 0); l != nil {
		t.Errorf("an empty interval logs %+v", l)
	}
	if l := Lines("n1", now, now, nil, 3); len(l) != 1 || l[0].Dropped != 3 || l[0].Flows == nil {
		t.Errorf("only drops: %+v", l)
	}
}

// BenchmarkAggregatorDistinctFlows feeds ten times the bound in distinct
// keys, read after read: the heap stays at the bound's size.
func BenchmarkAggregatorDistinctFlows(b *testing.B) {
	a := &Aggregator{MaxKeys: DefaultMaxKeys, Window: time.Hour}
	now := time.Now()
	keys := make([]Key, 10*DefaultMaxKeys)
	for i := range keys {
		keys[i] = key(i)
	}
	var ms runtime.MemStats
	b.ResetTimer()
	b.ReportAllocs()
	for i := range b.N {
		if i%1000 == 0 {
			a.BeginRead()
		}
		a.Add(keys[i%len(keys)], now, Sighting{New: 1})
		if i%60000 == 0 {
			a.Flush(now)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(a.Len()), "keys")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heapMiB")
}
