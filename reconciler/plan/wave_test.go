package plan

import (
	"fmt"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/network"
	"pgregory.net/rapid"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

func TestWaveSizeDoubles(t *testing.T) {
	for _, c := range []struct{ limit, healthy, want int }{
		{20, 0, 20}, {20, 1, 40}, {20, 2, 80}, {20, 5, 640}, {1, 3, 8}, {0, 4, 0}, {3, 200, maxWave},
	} {
		if got := WaveSize(c.limit, c.healthy); got != c.want {
			t.Errorf("WaveSize(%d, %d) = %d, want %d", c.limit, c.healthy, got, c.want)
		}
	}
	// The cluster: 600 updates at the default cap take five
	// waves (20+40+80+160, then the last 300), 3,000 eight.
	for _, c := range []struct{ updates, limit, want int }{
		{600, 20, 5}, {3000, 20, 8}, {20, 20, 1}, {21, 20, 2}, {0, 20, 0}, {600, 0, 1},
	} {
		if got := Waves(c.updates, c.limit); got != c.want {
			t.Errorf("Waves(%d, %d) = %d, want %d", c.updates, c.limit, got, c.want)
		}
	}
}

// The slow start's rule: the first wave is the cap, each healthy one
// doubles the next, and the waves Waves counts are the fewest that write
// every update.
func TestWavesCoverTheUpdatesWithTheFewestWaves(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		limit := rapid.IntRange(1, 50).Draw(rt, "limit")
		updates := rapid.IntRange(1, 100000).Draw(rt, "updates")
		if WaveSize(limit, 0) != limit {
			rt.Fatalf("first wave %d, want the cap %d", WaveSize(limit, 0), limit)
		}
		waves := Waves(updates, limit)
		written := 0
		for k := range waves {
			if k > 0 && WaveSize(limit, k) != 2*WaveSize(limit, k-1) {
				rt.Fatalf("wave %d is %d after %d", k+1, WaveSize(limit, k), WaveSize(limit, k-1))
			}
			if k == waves-1 && written >= updates {
				rt.Fatalf("%d waves write %d updates before the last", waves, written)
			}
			written += WaveSize(limit, k)
		}
		if written < updates {
			rt.Fatalf("%d waves write %d of %d updates", waves, written, updates)
		}
	})
}

// A wave is the order's first updates: ScheduleUpTo stops where Schedule's
// order would be cut, with the same updates in the same order and waves.
func TestScheduleUpToIsSchedulesPrefix(t *testing.T) {
	var svcs []*state.Service
	var nets []*state.Network
	var policies []*v1.Policy
	for k := range 6 {
		stack := fmt.Sprintf("s%d", k)
		nets = append(nets, state.NewNetwork(network.Summary{ID: "net-" + stack, Name: stack + "_default", Driver: "overlay", Scope: "swarm",
			Labels: map[string]string{v1.LabelStackNamespace: stack}}))
		for _, app := range []string{"web", "api", "db", "cache", "worker"} {
			svcs = append(svcs, appService("id-"+stack+app, stack+"_"+app, map[string]string{v1.LabelStackNamespace: stack, "app": app}, "net-"+stack))
		}
		policies = append(policies, policytest.NetPol(stack+"-backends", v1.NetworkPolicySpec{
			ServiceSelector: v1.LabelSelector{
				MatchLabels:      map[string]string{v1.LabelStackNamespace: stack},
				MatchExpressions: []v1.LabelSelectorRequirement{{Key: "app", Operator: v1.OpIn, Values: []string{"api", "db", "cache"}}},
			},
			Ingress: []v1.IngressRule{{From: []v1.Peer{policytest.Peer("app", "web")}}},
		}))
	}
	st := storeWith(t, svcs, nets, policies)
	st.View(func(tx state.ReadTx) {
		d, err := compile.Compile(tx, nil)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Diff(tx, d)
		if err != nil {
			t.Fatal(err)
		}
		var updates []Action
		for _, a := range p.Actions {
			if a.Kind == ActionUpdateService {
				updates = append(updates, a)
			}
		}
		all, _, err := Schedule(tx, d, updates)
		if err != nil || len(all) < 10 {
			t.Fatalf("%v, %d updates now", err, len(all))
		}
		key := func(as []Action) string {
			var out []string
			for _, a := range as {
				out = append(out, fmt.Sprintf("%s/%d/%v", a.ID, a.Wave, a.Service.Target))
			}
			return strings.Join(out, " ")
		}
		for limit := 1; limit <= len(all)+1; limit++ {
			now, later, err := ScheduleUpTo(tx, d, updates, limit)
			if err != nil {
				t.Fatal(err)
			}
			if want := all[:min(limit, len(all))]; key(now) != key(want) {
				t.Fatalf("limit %d: %s, want %s", limit, key(now), key(want))
			}
			if len(now)+len(later) < len(updates) {
				t.Fatalf("limit %d: %d now and %d later of %d updates", limit, len(now), len(later), len(updates))
			}
		}
	})
}
