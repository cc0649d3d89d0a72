package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
)

// writeOps are the Docker calls that write (dockerapi.Writes); the lease's
// calls go through another client and are not counted.
var writeOps = []string{"ServiceUpdate", "NetworkCreate", "NetworkRemove", "ConfigCreate", "ConfigRemove"}

// writes counts the write calls that succeeded; failed ones are reported
// apart (a conflict retried is one call more, not one write more).
func writes(m metrics) float64 {
	total := 0.0
	for _, op := range writeOps {
		total += m.sum("swarmsec_docker_requests_total", `operation="`+op+`"`, `result="success"`)
	}
	return total
}

// writeText renders the write calls in m by operation and result.
func writeText(m metrics) string {
	var parts []string
	for series, v := range m {
		name, labels, _ := strings.Cut(series, "{")
		if name != "swarmsec_docker_requests_total" || v == 0 {
			continue
		}
		for _, op := range writeOps {
			if strings.Contains(labels, `operation="`+op+`"`) {
				parts = append(parts, fmt.Sprintf("%s %.0f", strings.TrimSuffix(labels, "}"), v))
			}
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// settle waits until the controller's writes stay the same for two
// scrapes a second apart (a pass may clean up after the one that
// converged: a record no service names, a network left), and returns the
// last scrape.
func settle(addr string) (metrics, error) {
	prev, err := scrape(addr)
	if err != nil {
		return nil, err
	}
	for stable := 0; stable < 2; {
		time.Sleep(time.Second)
		cur, err := scrape(addr)
		if err != nil {
			return nil, err
		}
		if writes(cur) == writes(prev) {
			stable++
		} else {
			stable = 0
		}
		prev = cur
	}
	return prev, nil
}

type sampleRow struct {
	at                       time.Duration
	rss, heap, goroutines    float64
	writes, passes, resynced float64
}

// soak runs `swarmsec run` (resync every 30 s) for d over the deployed
// stacks: one manual drift a second on an isolated service, timing each
// revert; one manifest change a minute (a stack's worker isolated, then
// back), waiting for the cluster to match; the controller's memory and
// goroutines sampled from /metrics every 10 s. It checks that no write
// happens without a cause: between manifest changes, the controller's
// writes equal the drifts (one revert each), resyncs finding nothing.
func (b *bench) soak(ctx context.Context, d time.Duration) error {
	addr, stop, err := b.startRun(ctx, "--resync", "30s")
	if err != nil {
		return err
	}
	defer stop()
	time.Sleep(time.Second)
	start := time.Now()
	var rows []sampleRow
	sampleNow := func() error {
		m, err := scrape(addr)
		if err != nil {
			return err
		}
		rows = append(rows, sampleRow{at: time.Since(start), rss: m.sum("process_resident_memory_bytes"),
			heap: m.sum("go_memstats_heap_alloc_bytes"), goroutines: m.sum("go_goroutines"),
			writes: writes(m), passes: m.sum("swarmsec_reconcile_duration_seconds_count"),
			resynced: m.sum("swarmsec_observations_total", `mode="list"`)})
		return nil
	}
	if err := sampleNow(); err != nil {
		return err
	}
	nextSample := start.Add(10 * time.Second)

	var reverts []time.Duration
	var unexplained, changeWrites float64
	changes, drifts := 0, 0
	for minute := 0; time.Since(start) < d; minute++ {
		// The manifest change, alone: what it writes is its own.
		before, err := scrape(addr)
		if err != nil {
			return err
		}
		if err := b.change(minute); err != nil {
			return err
		}
		if err := b.waitInSync(ctx, 2*time.Minute); err != nil {
			return fmt.Errorf("manifest change %d: %w", minute, err)
		}
		after, err := settle(addr)
		if err != nil {
			return err
		}
		changes++
		changeWrites += writes(after) - writes(before)

		// A drift a second until the minute is over; the writes of this
		// stretch must be the reverts, one per drift.
		before = after
		n := 0
		end := start.Add(time.Duration(minute+1) * time.Minute)
		for time.Now().Before(end) && time.Since(start) < d {
			tick := time.Now()
			took, err := b.driftOnce(ctx, drifts)
			if err != nil {
				return err
			}
			reverts = append(reverts, took)
			drifts++
			n++
			if time.Now().After(nextSample) {
				if err := sampleNow(); err != nil {
					return err
				}
				nextSample = nextSample.Add(10 * time.Second)
			}
			time.Sleep(time.Until(tick.Add(time.Second)))
		}
		if after, err = settle(addr); err != nil {
			return err
		}
		if w := writes(after) - writes(before); w != float64(n) {
			fmt.Printf("soak: minute %d: %.0f writes for %d drifts: %s\n", minute, w, n, writeText(after.minus(before)))
			unexplained += w - float64(n)
		}
	}
	if err := sampleNow(); err != nil {
		return err
	}
	elapsed := time.Since(start)

	slices.Sort(reverts)
	pct := func(p int) time.Duration {
		return reverts[min(len(reverts)-1, len(reverts)*p/100)].Round(time.Millisecond)
	}
	first, last := rows[0], rows[len(rows)-1]
	fmt.Printf("soak: %s (%d services, resync 30s): %d drifts reverted (p50 %s, p99 %s, max %s), %d manifest changes (%.0f writes), writes without a drift or change: %.0f\n",
		elapsed.Round(time.Second), 5*len(b.stacks), drifts, pct(50), pct(99), reverts[len(reverts)-1].Round(time.Millisecond), changes, changeWrites, unexplained)
	fmt.Printf("soak: %.0f passes, %.0f of them resyncs that listed everything\n", last.passes-first.passes, last.resynced-first.resynced)
	// Slopes over the run after its first tenth (warm-up), per hour.
	warm := rows[len(rows)/10:]
	for _, s := range []struct {
		name  string
		get   func(sampleRow) float64
		scale float64
		unit  string
	}{
		{"RSS", func(r sampleRow) float64 { return r.rss }, 1 << 20, "MiB"},
		{"heap", func(r sampleRow) float64 { return r.heap }, 1 << 20, "MiB"},
		{"goroutines", func(r sampleRow) float64 { return r.goroutines }, 1, ""},
	} {
		peak := 0.0
		for _, r := range rows {
			peak = max(peak, s.get(r))
		}
		fmt.Printf("soak: %s: start %.1f%s, end %.1f%s, peak %.1f%s, slope %+.2f%s/h over %d samples\n", s.name,
			s.get(first)/s.scale, s.unit, s.get(last)/s.scale, s.unit, peak/s.scale, s.unit,
			slope(warm, s.get)/s.scale, s.unit, len(warm))
	}
	if unexplained != 0 {
		return fmt.Errorf("%.0f writes without a drift or a manifest change", unexplained)
	}
	return nil
}

// slope is the least-squares slope of get over time, per hour.
func slope(rows []sampleRow, get func(sampleRow) float64) float64 {
	if len(rows) < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for _, r := range rows {
		x, y := r.at.Hours(), get(r)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	n := float64(len(rows))
	den := n*sxx - sx*sx
	if den == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / den
}

// change is the minute's manifest change: even minutes isolate a stack's
// worker (reachable from api only), odd minutes end that.
func (b *bench) change(minute int) error {
	path := filepath.Join(b.dir, "change.yaml")
	if minute%2 == 1 {
		return os.Remove(path)
	}
	st := b.stacks[(minute/2)%len(b.stacks)]
	doc := fmt.Sprintf(`apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata: {name: %[1]s-worker}
spec:
  serviceSelector: {matchLabels: {com.docker.stack.namespace: %[1]s, app: worker}}
  ingress:
    - from: [{serviceSelector: {matchLabels: {com.docker.stack.namespace: %[1]s, app: api}}}]
`, st)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// waitInSync polls `swarmsec plan` until it finds nothing to change.
func (b *bench) waitInSync(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	time.Sleep(500 * time.Millisecond) // the watcher's debounce and the pass
	for {
		cmd := exec.CommandContext(ctx, b.bin, "plan", "--manifests", b.dir, "--log-level", "error")
		out, err := cmd.CombinedOutput()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not in sync after %s: %w\n%s", timeout, err, tail(string(out), 10))
		}
		time.Sleep(time.Second)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// driftOnce attaches the i-th stack's db to its stack network by hand and
// returns how long the controller took to take it off again.
func (b *bench) driftOnce(ctx context.Context, i int) (time.Duration, error) {
	st := b.stacks[i%len(b.stacks)]
	name := st + "_db"
	svc, _, err := b.cli.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
	if err != nil {
		return 0, err
	}
	stackNet, err := b.cli.NetworkInspect(ctx, st+"_default", network.InspectOptions{})
	if err != nil {
		return 0, err
	}
	spec := svc.Spec
	spec.TaskTemplate.Networks = append(slices.Clone(spec.TaskTemplate.Networks), swarm.NetworkAttachmentConfig{Target: stackNet.ID})
	if _, err := b.cli.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		return 0, fmt.Errorf("drift %s: %w", name, err)
	}
	start := time.Now()
	for {
		cur, _, err := b.cli.ServiceInspectWithRaw(ctx, svc.ID, swarm.ServiceInspectOptions{})
		if err != nil {
			return 0, err
		}
		if !slices.ContainsFunc(cur.Spec.TaskTemplate.Networks, func(a swarm.NetworkAttachmentConfig) bool { return a.Target == stackNet.ID }) {
			return time.Since(start), nil
		}
		if time.Since(start) > time.Minute {
			return 0, fmt.Errorf("drift on %s not reverted after 1m", name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
