package compile

import (
	"iter"
	"slices"
)

// pairs is the allowed relation over service positions, with the
// directions the rules declared for each pair. It is kept as compressed
// rows, each service's peers sorted: at 10,000 services a map of pairs was
// the largest allocation of a plan, and a service has few peers.
type pairs struct {
	// start[i]:start[i+1] is service i's row in entries.
	start []int32
	// entries are peer<<2 | dirs, dirs being dirLoToHi and dirHiToLo of
	// the pair (lower position first), the same in both rows.
	entries []int32
}

const (
	dirLoToHi uint8 = 1 // the lower position may connect to the higher
	dirHiToLo uint8 = 2
)

// declaration is one rule's peer: selected and peers may talk, in dir.
type declaration struct {
	selected, peers []int
	dir             uint8
}

// newPairs builds the relation over n services from the rules' declarations.
func newPairs(n int, decls []declaration) pairs {
	count := make([]int32, n+1)
	each := func(yield func(a, b int, dirs uint8)) {
		for _, d := range decls {
			for _, a := range d.selected {
				for _, b := range d.peers {
					if a == b {
						continue
					}
					// Normalise to the pair's order: a initiates on an
					// egress rule, b on an ingress one.
					fromLo := (d.dir == dirEgress) == (a < b)
					dirs := dirHiToLo
					if fromLo {
						dirs = dirLoToHi
					}
					yield(a, b, dirs)
				}
			}
		}
	}
	each(func(a, b int, _ uint8) { count[a+1]++; count[b+1]++ })
	for i := range n {
		count[i+1] += count[i]
	}
	p := pairs{start: make([]int32, n+1), entries: make([]int32, count[n])}
	next := slices.Clone(count[:n])
	each(func(a, b int, dirs uint8) {
		p.entries[next[a]] = int32(b)<<2 | int32(dirs)
		next[a]++
		p.entries[next[b]] = int32(a)<<2 | int32(dirs)
		next[b]++
	})
	// Sort each row and merge a peer declared twice, compacting in place.
	w := int32(0)
	for i := range n {
		row := p.entries[count[i]:count[i+1]]
		slices.Sort(row)
		p.start[i] = w
		for j, e := range row {
			if j > 0 && e>>2 == p.entries[w-1]>>2 {
				p.entries[w-1] |= e & 3
				continue
			}
			p.entries[w] = e
			w++
		}
	}
	p.start[n] = w
	p.entries = p.entries[:w:w]
	return p
}

// dirs returns the directions declared between a and b, 0 when no policy
// lets them talk.
func (p pairs) dirs(a, b int) uint8 {
	if len(p.start) == 0 {
		return 0
	}
	row := p.entries[p.start[a]:p.start[a+1]]
	i, ok := slices.BinarySearchFunc(row, int32(b), func(e, peer int32) int { return int(e>>2) - int(peer) })
	if !ok {
		return 0
	}
	return uint8(row[i] & 3)
}

// has reports whether a policy lets a and b talk.
func (p pairs) has(a, b int) bool { return p.dirs(a, b) != 0 }

// len is the number of pairs.
func (p pairs) len() int { return len(p.entries) / 2 }

// all yields each pair once, lower position first, in order.
func (p pairs) all() iter.Seq2[[2]int, uint8] {
	return func(yield func([2]int, uint8) bool) {
		for a := 0; a+1 < len(p.start); a++ {
			for _, e := range p.entries[p.start[a]:p.start[a+1]] {
				if b := int(e >> 2); b > a && !yield([2]int{a, b}, uint8(e&3)) {
					return
				}
			}
		}
	}
}
