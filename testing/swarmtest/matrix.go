package swarmtest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"

	"github.com/docker/docker/client"
)

// Pair is one cell of a reachability matrix: a probe from service From to
// service To.
type Pair struct{ From, To string }

// ProbeFunc probes To from From. It is called from several goroutines at
// once, so it must not fail the test itself: it returns an error instead.
type ProbeFunc func(ctx context.Context, from, to string) (ok bool, out string, err error)

// ServiceProbe probes tasks.<to>:8080 from a task of service from (see
// ProbeE for cli and opts).
func ServiceProbe(cli *client.Client, opts ...ProbeOpt) ProbeFunc {
	return func(ctx context.Context, from, to string) (bool, string, error) {
		return ProbeE(ctx, cli, from, TasksAddr(to), opts...)
	}
}

// Cell is what probing one pair gave, next to what was expected.
type Cell struct {
	Expected, Actual bool
	Output           string
	Err              error
}

// Mismatch reports whether the cell differs from what was expected (a probe
// error counts as a mismatch).
func (c Cell) Mismatch() bool { return c.Err != nil || c.Expected != c.Actual }

// Matrix is the reachability between every service of From and every one of
// To.
type Matrix struct {
	From, To []string
	Cells    map[Pair]Cell
}

// DefaultConcurrency bounds the probes in flight: each is an exec in a task,
// and a blocked one waits for its whole timeout.
const DefaultConcurrency = 4

// RunMatrix probes every pair of from × to (a service probing itself
// included) with at most concurrency probes at once (DefaultConcurrency when
// not positive), recording expect(from, to) beside each result.
func RunMatrix(ctx context.Context, from, to []string, expect func(from, to string) bool, probe ProbeFunc, concurrency int) *Matrix {
	if concurrency <= 0 {
		concurrency = DefaultConcurrency
	}
	m := &Matrix{From: from, To: to, Cells: map[Pair]Cell{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, concurrency)
	for _, f := range from {
		for _, t := range to {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				ok, out, err := probe(ctx, f, t)
				mu.Lock()
				m.Cells[Pair{f, t}] = Cell{Expected: expect(f, t), Actual: ok, Output: out, Err: err}
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return m
}

// RowProbeFunc probes every target of to from service from at once, as
// ProbeEachE does; a non-nil error fails the whole row.
type RowProbeFunc func(ctx context.Context, from string, to []string) (map[string]ProbeResult, error)

// RunMatrixByRows is RunMatrix with one probe call per row (each source
// probing every target at once), at most concurrency rows at once
// (DefaultConcurrency when not positive): the same cells for a tenth of
// the execs of a ten-column matrix.
func RunMatrixByRows(ctx context.Context, from, to []string, expect func(from, to string) bool, probe RowProbeFunc, concurrency int) *Matrix {
	if concurrency <= 0 {
		concurrency = DefaultConcurrency
	}
	m := &Matrix{From: from, To: to, Cells: map[Pair]Cell{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, concurrency)
	for _, f := range from {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			res, err := probe(ctx, f, to)
			mu.Lock()
			defer mu.Unlock()
			for _, t := range to {
				r := res[t]
				if err != nil {
					r = ProbeResult{Err: err}
				}
				m.Cells[Pair{f, t}] = Cell{Expected: expect(f, t), Actual: r.OK, Output: r.Output, Err: r.Err}
			}
		}()
	}
	wg.Wait()
	return m
}

// ServiceRowProbe probes tasks.<to>:8080 for every to from one task of
// service from, in one exec (see ProbeEachE for cli and opts).
func ServiceRowProbe(cli *client.Client, opts ...ProbeOpt) RowProbeFunc {
	return func(ctx context.Context, from string, to []string) (map[string]ProbeResult, error) {
		addrs := make([]string, len(to))
		for i, t := range to {
			addrs[i] = TasksAddr(t)
		}
		res, err := ProbeEachE(ctx, cli, from, addrs, opts...)
		if err != nil {
			return nil, err
		}
		out := map[string]ProbeResult{}
		for i, t := range to {
			out[t] = res[addrs[i]]
		}
		return out, nil
	}
}

// CheckMatrix runs RunMatrix, logs the matrix and marks the test failed
// (without stopping it) for each cell that differs from expect. The matrix
// is logged one line per call, so that each line carries the test's file
// and line like any other log line.
func CheckMatrix(ctx context.Context, tb testing.TB, from, to []string, expect func(from, to string) bool, probe ProbeFunc) *Matrix {
	tb.Helper()
	return checkMatrix(tb, RunMatrix(ctx, from, to, expect, probe, 0))
}

// CheckMatrixByRows is CheckMatrix with one probe call per row (see
// RunMatrixByRows and ServiceRowProbe).
func CheckMatrixByRows(ctx context.Context, tb testing.TB, from, to []string, expect func(from, to string) bool, probe RowProbeFunc) *Matrix {
	tb.Helper()
	return checkMatrix(tb, RunMatrixByRows(ctx, from, to, expect, probe, 0))
}

func checkMatrix(tb testing.TB, m *Matrix) *Matrix {
	tb.Helper()
	if mm := m.Mismatches(); len(mm) > 0 {
		tb.Errorf("reachability differs from expected in %d of %d cells:", len(mm), len(m.Cells))
	} else {
		tb.Logf("reachability as expected:")
	}
	for _, line := range strings.Split(strings.TrimSuffix(m.String(), "\n"), "\n") {
		tb.Log(line)
	}
	return m
}

// Mismatches returns the pairs whose cell differs from expected, in row
// order.
func (m *Matrix) Mismatches() []Pair {
	var out []Pair
	for _, f := range m.From {
		for _, t := range m.To {
			if m.Cells[Pair{f, t}].Mismatch() {
				out = append(out, Pair{f, t})
			}
		}
	}
	return out
}

// String renders the matrix, one row per source and one column per
// target: "ok" reached, "--" blocked, "ERR" the probe itself failed; a cell
// that differs from expected is marked "!=" followed by what was expected.
// The probe output of each mismatch follows the table.
func (m *Matrix) String() string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "from \\ to")
	for _, t := range m.To {
		fmt.Fprint(tw, "\t", t)
	}
	fmt.Fprintln(tw)
	for _, f := range m.From {
		fmt.Fprint(tw, f)
		for _, t := range m.To {
			fmt.Fprint(tw, "\t", m.Cells[Pair{f, t}].symbol())
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	for _, p := range m.Mismatches() {
		c := m.Cells[p]
		if c.Err != nil {
			fmt.Fprintf(&b, "%s -> %s: expected %s, probe failed: %v", p.From, p.To, reach(c.Expected), c.Err)
		} else {
			fmt.Fprintf(&b, "%s -> %s: expected %s, got %s", p.From, p.To, reach(c.Expected), reach(c.Actual))
		}
		b.WriteString("\n")
		for _, line := range strings.Split(strings.TrimSpace(c.Output), "\n") {
			if line != "" {
				fmt.Fprintf(&b, "    %s\n", line)
			}
		}
	}
	return b.String()
}

func (c Cell) symbol() string {
	s := "--"
	if c.Actual {
		s = "ok"
	}
	if c.Err != nil {
		s = "ERR"
	}
	if c.Mismatch() {
		want := "--"
		if c.Expected {
			want = "ok"
		}
		s += " !=" + want
	}
	return s
}

func reach(ok bool) string {
	if ok {
		return "reachable"
	}
	return "blocked"
}
