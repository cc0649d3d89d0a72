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
	start []int
	// entries are peer<<2 | dirs, dirs being dirLoToHi and dirHiToLo of
	// the pair (lower position first), the same in both rows.
	entries []int32
}

const (
	dirLoToHi uint8 = 1 // the lower position may connect to the higher
	dirHiToLo uint8 = 2
)

// declaration is one rule's peer: selected and peers may talk, in dir.
// policy and rule say where it was declared (see Desired.Rules).
type declaration struct {
	selected, peers []int
	dir             uint8
	policy          string
	rule            int // in the policy's ingress or egress list, as dir says
}

// newPairs builds the relation over n services from the rules'
// declarations. It takes memory for the distinct pairs only: rules that
// repeat a match (one per port, or look-alike services an attacker made
// to match many selectors) cost time, not rows.
func newPairs(n int, decls []declaration) pairs {
	// Which declarations each service is on the selected or peer side of.
	bySel, byPeer := invert(n, decls, func(d declaration) []int { return d.selected }),
		invert(n, decls, func(d declaration) []int { return d.peers })
	// Sized for every declared pair, up to a bound: repeats make the sum
	// larger than the rows, and past the bound append grows them.
	declared := 0
	for _, d := range decls {
		declared += 2 * len(d.selected) * len(d.peers)
	}
	p := pairs{start: make([]int, n+1), entries: make([]int32, 0, min(declared, 1<<20))}
	seen := make([]int32, n) // a+1 when b is in a's row being built
	dirs := make([]uint8, n)
	var row []int32
	for a := range n {
		row = row[:0]
		add := func(b int, d uint8) {
			if b == a {
				return
			}
			if seen[b] != int32(a+1) {
				seen[b], dirs[b] = int32(a+1), 0
				row = append(row, int32(b))
			}
			dirs[b] |= d
		}
		for _, k := range bySel.row(a) {
			for _, b := range decls[k].peers {
				add(b, direction(a, b, decls[k].dir))
			}
		}
		for _, k := range byPeer.row(a) {
			for _, s := range decls[k].selected {
				add(s, direction(s, a, decls[k].dir))
			}
		}
		slices.Sort(row)
		for _, b := range row {
			p.entries = append(p.entries, b<<2|int32(dirs[b]))
		}
		p.start[a+1] = len(p.entries)
	}
	p.entries = slices.Clip(p.entries)
	return p
}

// direction is the bit for a rule between a selected service and a peer,
// in the pair's order: the selected side initiates on an egress rule, the
// peer on an ingress one.
func direction(selected, peer int, dir uint8) uint8 {
	if (dir == dirEgress) == (selected < peer) {
		return dirLoToHi
	}
	return dirHiToLo
}

// index lists, per service, the declarations that name it on one side.
type index struct {
	start []int32
	decls []int32
}

func (x index) row(i int) []int32 { return x.decls[x.start[i]:x.start[i+1]] }

// invert counts each row's length one slot ahead, so that filling the rows
// with start[i+1] as row i's cursor leaves start as the rows' bounds.
func invert(n int, decls []declaration, side func(declaration) []int) index {
	x := index{start: make([]int32, n+2)}
	for _, d := range decls {
		for _, i := range side(d) {
			x.start[i+2]++
		}
	}
	for i := 2; i < len(x.start); i++ {
		x.start[i] += x.start[i-1]
	}
	x.decls = make([]int32, x.start[n+1])
	for k, d := range decls {
		for _, i := range side(d) {
			x.decls[x.start[i+1]] = int32(k)
			x.start[i+1]++
		}
	}
	x.start = x.start[:n+1]
	return x
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
