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
