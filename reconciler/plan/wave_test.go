package plan

import (
	"testing"

	"pgregory.net/rapid"
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
