package compile

import (
	"testing"

	"pgregory.net/rapid"
)

// TestPairsMatchAMapOfPairs checks the compressed relation against the
// obvious one: a map from the ordered pair to the directions declared.
func TestPairsMatchAMapOfPairs(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 12).Draw(t, "services")
		var decls []declaration
		want := map[[2]int]uint8{}
		if n > 0 {
			pos := rapid.SliceOfDistinct(rapid.IntRange(0, n-1), rapid.ID[int])
			for range rapid.IntRange(0, 6).Draw(t, "rules") {
				d := declaration{
					selected: pos.Draw(t, "selected"),
					peers:    pos.Draw(t, "peers"),
					dir:      rapid.SampledFrom([]uint8{dirIngress, dirEgress}).Draw(t, "dir"),
				}
				decls = append(decls, d)
				for _, a := range d.selected {
					for _, b := range d.peers {
						if a == b {
							continue
						}
						// a initiates on egress, b on ingress.
						from, to := a, b
						if d.dir == dirIngress {
							from, to = b, a
						}
						key, dirs := [2]int{from, to}, dirLoToHi
						if from > to {
							key, dirs = [2]int{to, from}, dirHiToLo
						}
						want[key] |= dirs
					}
				}
			}
		}
		p := newPairs(n, decls)
		if p.len() != len(want) {
			t.Fatalf("len = %d, want %d", p.len(), len(want))
		}
		for a := range n {
			for b := range n {
				key := [2]int{min(a, b), max(a, b)}
				if got := p.dirs(a, b); got != want[key] {
					t.Fatalf("dirs(%d, %d) = %d, want %d", a, b, got, want[key])
				}
				if p.has(a, b) != (want[key] != 0) {
					t.Fatalf("has(%d, %d) = %v", a, b, p.has(a, b))
				}
			}
		}
		last := [2]int{-1, -1}
		seen := 0
		for pair, dirs := range p.all() {
			if pair[0] >= pair[1] || (pair[0] < last[0] || pair[0] == last[0] && pair[1] <= last[1]) {
				t.Fatalf("all yields %v after %v: want each pair once, lower first, in order", pair, last)
			}
			if dirs != want[pair] {
				t.Fatalf("all yields %v with %d, want %d", pair, dirs, want[pair])
			}
			last = pair
			seen++
		}
		if seen != len(want) {
			t.Fatalf("all yields %d pairs, want %d", seen, len(want))
		}
	})
}

// TestPairsTakeRowsForDistinctPairs repeats one all-to-all rule, as one
// rule per port or look-alike services matching many selectors would: the
// rows hold each pair once, not once per declaration.
func TestPairsTakeRowsForDistinctPairs(t *testing.T) {
	const n, repeats = 300, 100
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	decls := make([]declaration, repeats)
	for i := range decls {
		decls[i] = declaration{selected: all, peers: all, dir: dirIngress}
	}
	p := newPairs(n, decls)
	if p.len() != n*(n-1)/2 {
		t.Fatalf("len = %d, want %d", p.len(), n*(n-1)/2)
	}
	if limit := max(n*(n-1), 1<<20); cap(p.entries) > limit {
		t.Errorf("rows hold %d entries for %d pairs", cap(p.entries), p.len())
	}
	if p.dirs(0, n-1) != dirLoToHi|dirHiToLo {
		t.Errorf("dirs(0, %d) = %d: an all-to-all rule allows both ways", n-1, p.dirs(0, n-1))
	}
}
