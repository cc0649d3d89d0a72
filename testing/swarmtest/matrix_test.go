package swarmtest

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestRunMatrix(t *testing.T) {
	svcs := []string{"web", "api", "db"}
	// web reaches api, api reaches db, each reaches itself; db -> web is
	// reachable although it should not be, and api -> web errors.
	reachable := map[Pair]bool{{"web", "api"}: true, {"api", "db"}: true, {"db", "web"}: true}
	var inFlight, maxInFlight atomic.Int32
	probe := func(_ context.Context, from, to string) (bool, string, error) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(5 * time.Millisecond) // overlap the probes
		if from == "api" && to == "web" {
			return false, "", errors.New("exec failed")
		}
		ok := from == to || reachable[Pair{from, to}]
		return ok, "ok   10.0.0.1:8080 hostname=x", nil
	}
	expect := func(from, to string) bool {
		return from == to || (from == "web" && to == "api") || (from == "api" && to == "db")
	}
	m := RunMatrix(context.Background(), svcs, svcs, expect, probe, 2)

	if got := maxInFlight.Load(); got > 2 {
		t.Errorf("%d probes in flight, want at most 2", got)
	}
	if len(m.Cells) != 9 {
		t.Fatalf("%d cells, want 9", len(m.Cells))
	}
	want := []Pair{{"api", "web"}, {"db", "web"}}
	got := m.Mismatches()
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("mismatches %v, want %v", got, want)
	}
	s := m.String()
	t.Logf("\n%s", s)
	for _, line := range []string{
		"from \\ to  web       api  db\n",
		"web        ok        ok   --\n",
		"api        ERR !=--  ok   ok\n",
		"db         ok !=--   --   ok\n",
		"api -> web: expected blocked, probe failed: exec failed\n",
		"db -> web: expected blocked, got reachable\n    ok   10.0.0.1:8080 hostname=x\n",
	} {
		if !strings.Contains(s, line) {
			t.Errorf("matrix lacks %q", line)
		}
	}
}

func TestRunMatrixByRows(t *testing.T) {
	svcs := []string{"web", "api", "db"}
	var calls atomic.Int32
	probe := func(_ context.Context, from string, to []string) (map[string]ProbeResult, error) {
		calls.Add(1)
		if from == "db" {
			return nil, errors.New("exec failed")
		}
		out := map[string]ProbeResult{}
		for _, t := range to {
			out[t] = ProbeResult{OK: from == t || (from == "web" && t == "api"), Output: "probed " + t}
		}
		return out, nil
	}
	expect := func(from, to string) bool { return from == to || (from == "web" && to == "api") }
	m := RunMatrixByRows(context.Background(), svcs, svcs, expect, probe, 2)
	if n := calls.Load(); n != 3 {
		t.Errorf("%d row probes, want 3", n)
	}
	if len(m.Cells) != 9 {
		t.Fatalf("%d cells, want 9", len(m.Cells))
	}
	got := m.Mismatches()
	want := []Pair{{"db", "web"}, {"db", "api"}, {"db", "db"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("mismatches %v, want %v (the failed row's cells)", got, want)
	}
	if c := m.Cells[Pair{"web", "api"}]; !c.Actual || c.Output != "probed api" {
		t.Errorf("web -> api: %+v", c)
	}
}

func TestParseProbeEach(t *testing.T) {
	addrs := []string{"tasks.a:8080", "tasks.b:8080", "10.0.0.9:8080"}
	cmd := []string{"/testapp", "probe-each"}
	out := "=== tasks.a:8080 exit 0\nok   10.0.1.3:8080 hostname=4f95\n" +
		"=== tasks.b:8080 exit 1\nfail tasks.b resolve: no such host\n" +
		"=== 10.0.0.9:8080 exit 2\ntestapp: bad\n"
	res, err := parseProbeEach(out, addrs, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if r := res["tasks.a:8080"]; !r.OK || r.Err != nil || r.Output != "ok   10.0.1.3:8080 hostname=4f95\n" {
		t.Errorf("a: %+v", r)
	}
	if r := res["tasks.b:8080"]; r.OK || r.Err != nil || !strings.Contains(r.Output, "resolve") {
		t.Errorf("b: %+v", r)
	}
	if r := res["10.0.0.9:8080"]; r.OK || r.Err == nil {
		t.Errorf("exit 2: %+v, want an error", r)
	}
	if _, err := parseProbeEach(out, append(addrs, "tasks.c:8080"), cmd); err == nil {
		t.Error("an address without a result: no error")
	}
}
