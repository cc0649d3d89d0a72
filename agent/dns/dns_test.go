package dns

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/network"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/swarmsec/swarmsec/agent/netns"
	"github.com/swarmsec/swarmsec/agent/tasks"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// response builds the resolver's answer to name: rcode and A records.
func response(t testing.TB, name string, typ dnsmessage.Type, rcode dnsmessage.RCode, addrs ...string) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 1, Response: true, RCode: rcode})
	n := dnsmessage.MustNewName(name)
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: n, Type: typ, Class: dnsmessage.ClassINET})
	_ = b.StartAnswers()
	_ = b.CNAMEResource(dnsmessage.ResourceHeader{Name: n, Class: dnsmessage.ClassINET}, dnsmessage.CNAMEResource{CNAME: n})
	for _, a := range addrs {
		ip := netip.MustParseAddr(a)
		h := dnsmessage.ResourceHeader{Name: n, Class: dnsmessage.ClassINET, TTL: 600}
		if ip.Is4() {
			_ = b.AResource(h, dnsmessage.AResource{A: ip.As4()})
		} else {
			_ = b.AAAAResource(h, dnsmessage.AAAAResource{AAAA: ip.As16()})
		}
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// ipv4 wraps a payload in IPv4 and UDP (proto 17) or TCP (6) headers
// from 127.0.0.11 port sport.
func ipv4(proto byte, sport uint16, payload []byte) []byte {
	l4 := make([]byte, 8)
	switch proto {
	case 17:
		l4 = make([]byte, 8)
		binary.BigEndian.PutUint16(l4[4:], uint16(8+len(payload)))
	case 6:
		l4 = make([]byte, 20)
		l4[12] = 5 << 4
		payload = append(binary.BigEndian.AppendUint16(nil, uint16(len(payload))), payload...)
	}
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], 40000)
	ip := make([]byte, 20)
	ip[0], ip[9] = 0x45, proto
	copy(ip[12:], Resolver[:])
	copy(ip[16:], []byte{127, 0, 0, 1})
	return append(append(ip, l4...), payload...)
}

func TestParsePacket(t *testing.T) {
	msg := response(t, "Shop_DB.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "10.0.1.9", "2001:db8::9")
	for _, proto := range []byte{17, 6} {
		a, ok := ParsePacket(ipv4(proto, 53, msg))
		if !ok || a.Name != "shop_db" || a.Type != "A" || a.RCode != dnsmessage.RCodeSuccess || len(a.Addrs) != 2 ||
			a.Addrs[0] != netip.MustParseAddr("10.0.1.9") || a.Addrs[1] != netip.MustParseAddr("2001:db8::9") {
			t.Errorf("proto %d: %+v %v", proto, a, ok)
		}
	}
	// Not an answer of port 53, a query, a TCP message cut in two, junk.
	query := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 1})
	_ = query.StartQuestions()
	_ = query.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("db."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	q, _ := query.Finish()
	cut := ipv4(6, 53, msg)
	for name, p := range map[string][]byte{
		"other port": ipv4(17, 5353, msg), "query": ipv4(17, 53, q), "cut": cut[:len(cut)-5],
		"junk": ipv4(17, 53, []byte{1, 2, 3}), "short": {0x45, 0}, "icmp": ipv4(1, 53, msg),
	} {
		if a, ok := ParsePacket(p); ok {
			t.Errorf("%s parsed as %+v", name, a)
		}
	}
	if a, ok := ParseMessage(response(t, "x.", dnsmessage.TypeSRV, dnsmessage.RCodeNameError)); !ok || a.Type != "SRV" || a.RCode != dnsmessage.RCodeNameError {
		t.Errorf("SRV NXDOMAIN: %+v %v", a, ok)
	}
	if got := typeName(dnsmessage.Type(999)); got != "TYPE999" {
		t.Errorf("type 999 named %q", got)
	}
}

func TestClassify(t *testing.T) {
	b := NewBook(bookView(map[string][2][]string{
		"shop_db":  {{"10.0.1.9"}, {"10.0.1.10", "10.0.1.11"}},
		"shop_api": {nil, {"10.0.1.20"}}, // DNS round robin
	}))
	for _, c := range []struct {
		rcode          dnsmessage.RCode
		addrs          []string
		class, service string
	}{
		{dnsmessage.RCodeSuccess, []string{"10.0.1.9"}, agentv1.DNSVIP, "shop_db"},
		{dnsmessage.RCodeSuccess, []string{"10.0.1.10", "10.0.1.11"}, agentv1.DNSTasks, "shop_db"},
		{dnsmessage.RCodeSuccess, []string{"10.0.1.20"}, agentv1.DNSTasks, "shop_api"},
		{dnsmessage.RCodeSuccess, []string{"10.0.1.10", "10.0.1.20"}, agentv1.DNSTasks, ""},
		{dnsmessage.RCodeSuccess, []string{"10.0.1.10", "203.0.113.7"}, agentv1.DNSExternal, ""},
		{dnsmessage.RCodeSuccess, nil, agentv1.DNSEmpty, ""},
		{dnsmessage.RCodeNameError, nil, agentv1.DNSNXDomain, ""},
		{dnsmessage.RCodeServerFailure, nil, agentv1.DNSError, ""},
	} {
		a := Answer{Name: "x", Type: "A", RCode: c.rcode}
		for _, s := range c.addrs {
			a.Addrs = append(a.Addrs, netip.MustParseAddr(s))
		}
		if class, svc := b.Classify(&a); class != c.class || svc != c.service {
			t.Errorf("%v %v: %s %q, want %s %q", c.rcode, c.addrs, class, svc, c.class, c.service)
		}
	}
}

func key(i int) Key {
	return Key{Source: "shop_web", Name: fmt.Sprintf("name%d.example.org", i), Type: "A", Class: agentv1.DNSExternal}
}

func TestAggregatorCountsPerInterval(t *testing.T) {
	a := &Aggregator{MaxKeys: 10, Window: time.Hour}
	t0 := time.Date(2026, 12, 7, 2, 0, 0, 0, time.UTC)
	a.Add(key(1), t0)
	a.Add(key(1), t0.Add(time.Second))
	a.Add(key(2), t0.Add(2*time.Second))
	l, dropped, _ := a.Flush(t0.Add(time.Minute))
	if len(l) != 2 || dropped != 0 || l[0].Name != "name1.example.org" || l[0].Count != 2 || !l[0].FirstSeen.Equal(t0) || !l[0].LastSeen.Equal(t0.Add(time.Second)) {
		t.Fatalf("first interval %+v dropped %d", l, dropped)
	}
	a.Add(key(1), t0.Add(2*time.Minute))
	l, _, since := a.Flush(t0.Add(3 * time.Minute))
	if len(l) != 1 || l[0].Count != 1 || !l[0].FirstSeen.Equal(t0) || !since.Equal(t0.Add(time.Minute)) {
		t.Errorf("second interval %+v since %s", l, since)
	}
	if l, _, _ := a.Flush(t0.Add(4 * time.Minute)); len(l) != 0 {
		t.Errorf("an idle interval reported %+v", l)
	}
}

// At the bound a new key evicts the least recently seen one, whose
// unreported answers count as dropped; a key seen again moves up.
func TestAggregatorEvictsTheLeastRecentlySeen(t *testing.T) {
	a := &Aggregator{MaxKeys: 3, Window: time.Hour}
	t0 := time.Now()
	for i := range 3 {
		a.Add(key(i), t0.Add(time.Duration(i)*time.Second))
	}
	a.Add(key(0), t0.Add(3*time.Second)) // 0 is now the most recent; 1 the least
	a.Add(key(3), t0.Add(4*time.Second))
	a.Add(key(3), t0.Add(5*time.Second))
	if a.Len() != 3 {
		t.Fatalf("%d keys, bound 3", a.Len())
	}
	l, dropped, _ := a.Flush(t0.Add(time.Minute))
	names := map[string]uint64{}
	for _, x := range l {
		names[x.Name] = x.Count
	}
	if dropped != 1 || len(names) != 3 || names["name1.example.org"] != 0 || names["name0.example.org"] != 2 || names["name3.example.org"] != 2 {
		t.Errorf("kept %v, dropped %d", names, dropped)
	}
	// A flood of new names keeps the bound, and the newest.
	for i := 10; i < 1000; i++ {
		a.Add(key(i), t0.Add(time.Minute+time.Duration(i)*time.Millisecond))
	}
	l, dropped, _ = a.Flush(t0.Add(2 * time.Minute))
	if a.Len() != 3 || len(l) != 3 || l[0].Name != "name997.example.org" || dropped != 987 {
		t.Errorf("after a flood: %d keys, %+v, dropped %d", a.Len(), l, dropped)
	}
}

// A task flooding new names (100 a second get past the kernel's limit,
// the bound of 4,096 fills in 41 s) must not evict another service's
// lookups before the report: the flooding service pays for its own
// flood, and its newest names stay.
func TestAggregatorAFloodEvictsTheFloodersOwn(t *testing.T) {
	a := &Aggregator{MaxKeys: 10, Window: time.Hour}
	t0 := time.Now()
	probe := Key{Source: "shop_cache", Name: "tasks.shop_db", Type: "A", Class: agentv1.DNSNXDomain}
	for i := range 3 {
		a.Add(probe, t0.Add(time.Duration(i)*time.Millisecond))
	}
	for i := range 1000 {
		a.Add(key(i), t0.Add(time.Second+time.Duration(i)*time.Millisecond))
	}
	if a.Len() != 10 {
		t.Fatalf("%d keys, bound 10", a.Len())
	}
	l, dropped, _ := a.Flush(t0.Add(time.Minute))
	var probes uint64
	for _, x := range l {
		if x.Source == probe.Source {
			probes += x.Count
		}
	}
	if probes != 3 || dropped != 991 || l[len(l)-1].Name != "name999.example.org" {
		t.Errorf("shop_cache's 3 lookups: %d reported, %d dropped, %+v", probes, dropped, l)
	}
	// The flooder's next name evicts its own oldest again.
	a.Add(key(1000), t0.Add(2*time.Minute))
	a.Add(probe, t0.Add(2*time.Minute))
	l, dropped, _ = a.Flush(t0.Add(3 * time.Minute))
	if a.Len() != 10 || len(l) != 2 || !l[0].FirstSeen.Equal(t0.UTC()) || l[0].Count != 1 || dropped != 0 {
		t.Errorf("%d keys, %+v, dropped %d", a.Len(), l, dropped)
	}
}

func TestAggregatorForgetsIdleKeys(t *testing.T) {
	a := &Aggregator{MaxKeys: 10, Window: 10 * time.Minute}
	t0 := time.Now()
	a.Add(key(1), t0)
	a.Add(key(2), t0.Add(8*time.Minute))
	a.Flush(t0.Add(9 * time.Minute))
	if a.Len() != 2 {
		t.Fatalf("forgot too early: %d", a.Len())
	}
	a.Flush(t0.Add(11 * time.Minute))
	if a.Len() != 1 {
		t.Fatalf("%d keys after key 1's window", a.Len())
	}
	a.Add(key(1), t0.Add(12*time.Minute))
	l, _, _ := a.Flush(t0.Add(13 * time.Minute))
	if len(l) != 1 || !l[0].FirstSeen.Equal(t0.Add(12*time.Minute).UTC()) {
		t.Errorf("a forgotten key came back as %+v", l)
	}
}

func TestLinesSplitReports(t *testing.T) {
	var l []agentv1.DNSLookup
	for i := range 2*agentv1.DNSPerLine + 1 {
		l = append(l, agentv1.DNSLookup{Name: fmt.Sprint(i)})
	}
	now := time.Now()
	lines := Lines("n1", now, now.Add(-time.Minute), l, 7, 0)
	if len(lines) != 3 || lines[0].Dropped != 7 || lines[1].Dropped != 0 || lines[2].Parts != 3 || len(lines[2].Lookups) != 1 || time.Duration(lines[0].Interval) != time.Minute {
		t.Errorf("lines %+v", lines)
	}
	if l := Lines("n1", now, now, nil, 0, 0); l != nil {
		t.Errorf("an empty interval logs %+v", l)
	}
}

// engine is a node's engine with one task of shop_web on shop_default,
// and the agent's on the host network.
type engine struct {
	running bool
	// pid, when set, is the task's pid from then on (0: 42).
	pid atomic.Int32
}

func (e *engine) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	if !e.running {
		return []container.Summary{{ID: "agent"}}, nil
	}
	return []container.Summary{{ID: "agent"}, {ID: "c1"}}, nil
}

func (e *engine) ContainerInspect(_ context.Context, id string) (container.InspectResponse, error) {
	if id == "agent" {
		c := container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{ID: id, State: &container.State{Running: true, Pid: 7}},
			Config: &container.Config{Labels: map[string]string{tasks.LabelService: "swarmsec_agent", tasks.LabelTaskName: "swarmsec_agent.x"}}}
		c.NetworkSettings = &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"host": {NetworkID: "h"}}}
		c.NetworkSettings.SandboxKey = "/var/run/docker/netns/default"
		return c, nil
	}
	pid := 42
	if p := e.pid.Load(); p != 0 {
		pid = int(p)
	}
	c := container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{ID: "c1", State: &container.State{Running: true, Pid: pid}},
		Config: &container.Config{Labels: map[string]string{tasks.LabelService: "shop_web", tasks.LabelTaskName: "shop_web.1.x"}}}
	c.NetworkSettings = &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"shop_default": {NetworkID: "n1", IPAddress: "10.0.1.3"}}}
	c.NetworkSettings.SandboxKey = "/var/run/docker/netns/abc"
	return c, nil
}

func (e *engine) NetworkInspect(_ context.Context, id string, _ network.InspectOptions) (network.Inspect, error) {
	if id == "h" {
		return network.Inspect{ID: "h", Name: "host", Driver: "host", Scope: "local"}, nil
	}
	return network.Inspect{ID: "n1", Name: "shop_default", Driver: "overlay", Scope: "swarm", Services: map[string]network.ServiceInfo{
		"shop_db":  {VIP: "10.0.1.9/24", Tasks: []network.Task{{Name: "shop_db.1.y", EndpointIP: "10.0.1.10"}}},
		"shop_web": {VIP: "10.0.1.2/24", Tasks: []network.Task{{Name: "shop_web.1.x", EndpointIP: "10.0.1.3"}}},
	}}, nil
}

func (e *engine) Events(context.Context, events.ListOptions) (<-chan events.Message, <-chan error) {
	return nil, nil
}

// The watcher installs the table once per task (again when it is gone),
// listens once per task, names the source service, and stops listening
// when the task goes.
func TestWatcherKeepsATableAndAListenerPerTask(t *testing.T) {
	e := &engine{running: true}
	installs, listens := 0, 0
	var cancelled atomic.Int32
	table := false
	var fn func([]byte)
	w := &Watcher{Engine: e, Agg: &Aggregator{}, Node: "n1", ProcDir: "/host/proc",
		OpenNS: func(path string) (*netns.Handle, error) {
			if path != "/host/proc/42/ns/net" {
				return nil, errors.New("opened " + path)
			}
			return netns.Open("/proc/self/ns/net")
		},
		Installed: func(int) (bool, error) { return table, nil },
		Install:   func(_ int, g uint16) error { installs++; table = g == DefaultGroup; return nil },
		Listen: func(ctx context.Context, _ int, _ uint16, f func([]byte)) error {
			listens++
			fn = f
			go func() { <-ctx.Done(); cancelled.Add(1) }()
			return nil
		}}
	ctx := context.Background()
	for range 2 {
		if err := w.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if installs != 1 || listens != 1 {
		t.Fatalf("%d installs, %d listeners after two syncs", installs, listens)
	}
	table = false // flushed by someone
	if err := w.Sync(ctx); err != nil || installs != 2 || listens != 1 {
		t.Fatalf("after the table went: %d installs, %d listeners, %v", installs, listens, err)
	}
	fn(ipv4(17, 53, response(t, "shop_db.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "10.0.1.9")))
	fn(ipv4(17, 53, response(t, "tasks.shop_db.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "10.0.1.10")))
	fn(ipv4(17, 53, response(t, "payments.", dnsmessage.TypeA, dnsmessage.RCodeNameError)))
	lines := w.Flush(time.Now())
	if len(lines) != 1 || len(lines[0].Lookups) != 3 {
		t.Fatalf("lines %+v", lines)
	}
	got := map[string]bool{}
	for _, l := range lines[0].Lookups {
		got[l.Key()] = true
	}
	for _, k := range []string{"shop_web|shop_db|A|vip|shop_db", "shop_web|tasks.shop_db|A|tasks|shop_db", "shop_web|payments|A|nxdomain|"} {
		if !got[k] {
			t.Errorf("missing %s in %v", k, got)
		}
	}
	e.running = false
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if len(w.listening) != 0 {
		t.Errorf("still listening for %v", w.listening)
	}
	deadline := time.Now().Add(time.Second)
	for cancelled.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if cancelled.Load() != 1 {
		t.Error("the gone task's listener was not cancelled")
	}
}

// A task that stops between the discovery and the open leaves its pid
// to another process (a new task's, the node's own): the watcher must
// neither install nor listen in that namespace, and does once the task
// is seen again.
func TestWatcherLeavesAPidTakenByAnother(t *testing.T) {
	e := &engine{running: true}
	installs, listens := 0, 0
	w := &Watcher{Engine: e, Agg: &Aggregator{}, Node: "n1", ProcDir: "/host/proc",
		OpenNS: func(string) (*netns.Handle, error) {
			e.pid.CompareAndSwap(0, 4242) // the task's pid 42 went, and came back as another's
			return netns.Open("/proc/self/ns/net")
		},
		Installed: func(int) (bool, error) { return false, nil },
		Install:   func(int, uint16) error { installs++; return nil },
		Counted:   func(int) (uint64, error) { return 0, nil },
		Listen:    func(context.Context, int, uint16, func([]byte)) error { listens++; return nil },
	}
	if err := w.Sync(context.Background()); err == nil || installs != 0 || listens != 0 {
		t.Fatalf("%d installs, %d listeners in a namespace no longer the task's (%v)", installs, listens, err)
	}
	// The next discovery sees pid 4242 (the same task, say): all is done.
	if err := w.Sync(context.Background()); err != nil || installs != 1 || listens != 1 {
		t.Fatalf("%d installs, %d listeners, %v", installs, listens, err)
	}
}

// The kernel's limit (and a full NFLOG queue) drop answers without a
// word: the table counts every answer before the limit, and the report
// says how many of them never reached the agent.
func TestWatcherReportsTheAnswersItDidNotSee(t *testing.T) {
	e := &engine{running: true}
	var counted atomic.Uint64
	var fn func([]byte)
	w := &Watcher{Engine: e, Agg: &Aggregator{}, Node: "n1", ProcDir: "/host/proc",
		OpenNS:    func(string) (*netns.Handle, error) { return netns.Open("/proc/self/ns/net") },
		Installed: func(int) (bool, error) { return true, nil },
		Install:   func(int, uint16) error { return nil },
		Counted:   func(int) (uint64, error) { return counted.Load(), nil },
		Listen: func(_ context.Context, _ int, _ uint16, f func([]byte)) error {
			fn = f
			return nil
		}}
	ctx := context.Background()
	counted.Store(5) // before the listener: not the agent's to see
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	answer := ipv4(17, 53, response(t, "shop_db.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "10.0.1.9"))
	for range 200 {
		fn(answer)
	}
	counted.Add(300) // 300 answers, 200 logged: 100 over the limit
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	lines := w.Flush(time.Now())
	if len(lines) != 1 || lines[0].Unseen != 100 || lines[0].Lookups[0].Count != 200 {
		t.Fatalf("lines %+v", lines)
	}
	// Nothing new unseen: nothing reported; a table put back counts from 0.
	fn(answer)
	counted.Add(1)
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		fn(answer)
	}
	counted.Store(3) // the table put back counted them from 0
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	counted.Add(4)
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if lines := w.Flush(time.Now()); len(lines) != 1 || lines[0].Unseen != 4 {
		t.Errorf("after the table came back: %+v", lines)
	}
}

// BenchmarkAggregatorDistinctNames feeds names that never repeat (a
// service probing names, or a flood of external lookups): the aggregates
// stay at the bound and the heap flat.
func BenchmarkAggregatorDistinctNames(b *testing.B) {
	a := &Aggregator{MaxKeys: DefaultMaxKeys, Window: time.Hour}
	now := time.Now()
	var ms runtime.MemStats
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		a.Add(Key{Source: "shop_web", Name: fmt.Sprintf("host-%d.probe.example.org", i), Type: "A", Class: agentv1.DNSNXDomain}, now)
		if i%60000 == 0 {
			a.Flush(now)
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(a.Len()), "keys")
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "liveMiB")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heapMiB")
}

// TestLinesFitTheEngine: the engine splits a log line over 16 KiB into
// parts a reader cannot parse, losing every lookup of the line. A task
// picks its names: 253 bytes of control characters each (six bytes
// apiece in JSON) must still give whole lines.
func TestLinesFitTheEngine(t *testing.T) {
	now := time.Now()
	var l []agentv1.DNSLookup
	for i := range 3 * agentv1.DNSPerLine {
		name := fmt.Sprintf("%03d", i) + strings.Repeat("\x1b", maxName-3)
		l = append(l, agentv1.DNSLookup{Source: strings.Repeat("s", 63), Name: name, Type: "TYPE65535", Class: agentv1.DNSNXDomain,
			Service: strings.Repeat("v", 63), Count: 1 << 60, FirstSeen: now, LastSeen: now})
	}
	lines := Lines(strings.Repeat("n", 64), now, now.Add(-time.Minute), l, 1<<60, 0)
	got := 0
	for _, line := range lines {
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info(agentv1.DNSMessage, agentv1.DNSKey, line)
		if buf.Len() >= 16<<10 {
			t.Errorf("part %d/%d: %d bytes, %d lookups: the engine splits it", line.Part, line.Parts, buf.Len(), len(line.Lookups))
		}
		if line.Parts != len(lines) {
			t.Errorf("part %d says %d parts of %d", line.Part, line.Parts, len(lines))
		}
		got += len(line.Lookups)
	}
	if got != len(l) {
		t.Errorf("%d lookups logged of %d", got, len(l))
	}
}

// The agent's logs rotate (the stack: 3 files of 10 MB): one task asking
// 4,096 new names of 253 bytes a minute would log 7 MB a minute and push
// every node report, flow and drop record of the hour out of them. A
// source's lookups are reported up to sourceBytes a minute, the most
// recently seen first; the rest count as dropped.
func TestWatcherBoundsEachSourcesReport(t *testing.T) {
	a := &Aggregator{}
	w := &Watcher{Agg: a, Node: "n1"}
	t0 := time.Now()
	probe := Key{Source: "shop_cache", Name: "tasks.shop_db", Type: "A", Class: agentv1.DNSNXDomain}
	a.Flush(t0) // the interval: a minute
	a.Add(probe, t0)
	for i := range DefaultMaxKeys - 1 {
		a.Add(Key{Source: "shop_web", Name: fmt.Sprintf("%04d", i) + strings.Repeat("\x01", maxName-4), Type: "A", Class: agentv1.DNSNXDomain},
			t0.Add(time.Duration(i)*time.Millisecond))
	}
	lines := w.Flush(t0.Add(time.Minute))
	size, web, cache := 0, 0, 0
	newest := false
	for _, l := range lines {
		b, _ := json.Marshal(l)
		size += len(b)
		for _, x := range l.Lookups {
			switch x.Source {
			case "shop_web":
				web++
				newest = newest || strings.HasPrefix(x.Name, fmt.Sprintf("%04d", DefaultMaxKeys-2))
			case "shop_cache":
				cache++
			}
		}
	}
	if cache != 1 || web == 0 || !newest || size > 2*sourceBytes || uint64(web)+lines[0].Dropped != DefaultMaxKeys-1 {
		t.Errorf("%d bytes in %d lines: shop_web %d lookups (its newest: %v), shop_cache %d, dropped %d", size, len(lines), web, newest, cache, lines[0].Dropped)
	}
}

func TestSourceBudget(t *testing.T) {
	for interval, want := range map[time.Duration]int{time.Minute: sourceBytes, 2 * time.Second: 4 << 10, 30 * time.Second: sourceBytes / 2, time.Hour: 60 * sourceBytes} {
		if got := SourceBudget(interval); got != want {
			t.Errorf("%s: %d bytes, want %d", interval, got, want)
		}
	}
}

// FuzzParsePacket: a task can put any packet from 127.0.0.11:53 on its
// own loopback (CAP_NET_RAW is in Docker's default set), and the agent
// parses what the kernel logs. It must not panic, and a name it keeps is
// bounded.
func FuzzParsePacket(f *testing.F) {
	msg := response(f, "Shop_DB.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "10.0.1.9", "2001:db8::9")
	f.Add(ipv4(17, 53, msg))
	f.Add(ipv4(6, 53, msg))
	f.Add(ipv4(17, 53, response(f, "x.", dnsmessage.TypeSRV, dnsmessage.RCodeNameError)))
	f.Fuzz(func(t *testing.T, p []byte) {
		a, ok := ParsePacket(p)
		if ok && (a.Name == "" || len(a.Name) > maxName || len(a.Addrs) > len(p)/4) {
			t.Errorf("%q: %+v", p, a)
		}
	})
}
