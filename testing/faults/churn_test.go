package faults

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/controller"
	"github.com/swarmsec/swarmsec/reconciler/manifest"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/reconciler/watch"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/fake"
)

// The churn: a git-sync-style swap of the manifest root every 100 ms, 100
// times, some revisions half written when the link moves to them.
const (
	churnSwaps    = 100
	churnInterval = 100 * time.Millisecond
	churnServices = 5
	// maxBurst is the watcher's bound, in debounce periods, on how long a
	// directory that never goes quiet delays a read (watch.maxBurst).
	maxBurst = 5
)

// ordered are the (isolated, peer) pairs of the churn's services; set k
// uses ordered[k*7%20], so the 20 sets around any set are all different
// and a write from a superseded one shows.
var ordered = func() [][2]int {
	var out [][2]int
	for a := range churnServices {
		for b := range churnServices {
			if a != b {
				out = append(out, [2]int{a, b})
			}
		}
	}
	return out
}()

func churnPair(k int) (isolated, peer string) {
	p := ordered[k*7%len(ordered)]
	return svcName(p[0]), svcName(p[1])
}

func svcName(i int) string { return fmt.Sprintf("churn_s%d", i) }

// churnDoc is set k: one policy isolating a service but from one peer.
func churnDoc(k int) string {
	iso, peer := churnPair(k)
	return fmt.Sprintf(`apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata:
  name: iso%03d
spec:
  serviceSelector:
    matchLabels: {app: %s}
  policyTypes: [Ingress]
  ingress:
    - from:
        - serviceSelector:
            matchLabels: {app: %s}
`, k, strings.TrimPrefix(iso, "churn_"), strings.TrimPrefix(peer, "churn_"))
}

// halfDoc is set k cut in the middle of its selector, as a reader sees a
// file being written in place.
func halfDoc(k int) string {
	d := churnDoc(k)
	return d[:strings.Index(d, "matchLabels")+5]
}

// allowed says whether set k lets services x and y share a network.
func allowed(k int, x, y string) bool {
	iso, peer := churnPair(k)
	switch iso {
	case x:
		return y == peer
	case y:
		return x == peer
	}
	return true
}

type pair struct{ a, b string }

func mkPair(a, b string) pair {
	if b < a {
		a, b = b, a
	}
	return pair{a, b}
}

// recorder is the fake Swarm with every write recorded: when it was made
// and which pairs of services it made share a network that did not before.
type recorder struct {
	*fake.Swarm
	mu     sync.Mutex
	pairs  map[pair]bool
	writes []write
}

type write struct {
	at     time.Time
	op     string
	object string
	added  []pair
}

func (r *recorder) ServiceUpdate(ctx context.Context, id string, version swarm.Version, spec swarm.ServiceSpec, opts swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at := time.Now()
	resp, err := r.Swarm.ServiceUpdate(ctx, id, version, spec, opts)
	if err == nil {
		now := r.sharing()
		var added []pair
		for p := range now {
			if !r.pairs[p] {
				added = append(added, p)
			}
		}
		r.pairs = now
		r.writes = append(r.writes, write{at: at, op: "ServiceUpdate", object: spec.Name, added: added})
	}
	return resp, err
}

func (r *recorder) NetworkCreate(ctx context.Context, name string, opts network.CreateOptions) (network.CreateResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at := time.Now()
	resp, err := r.Swarm.NetworkCreate(ctx, name, opts)
	if err == nil {
		r.writes = append(r.writes, write{at: at, op: "NetworkCreate", object: name})
	}
	return resp, err
}

func (r *recorder) NetworkRemove(ctx context.Context, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	at := time.Now()
	err := r.Swarm.NetworkRemove(ctx, id)
	if err == nil {
		r.writes = append(r.writes, write{at: at, op: "NetworkRemove", object: id})
	}
	return err
}

// sharing is who shares a network now, by the services' specs.
func (r *recorder) sharing() map[pair]bool {
	ctx := context.Background()
	svcs, err := r.ServiceList(ctx, swarm.ServiceListOptions{})
	if err != nil {
		panic(err) // the fake lists without failing unless told to
	}
	on := map[string][]string{}
	for _, s := range svcs {
		for _, a := range s.Spec.TaskTemplate.Networks {
			n, err := r.NetworkInspect(ctx, a.Target, network.InspectOptions{})
			if err != nil {
				panic(err)
			}
			on[n.ID] = append(on[n.ID], s.Spec.Name)
		}
	}
	out := map[pair]bool{}
	for _, members := range on {
		for i, a := range members {
			for _, b := range members[i+1:] {
				out[mkPair(a, b)] = true
			}
		}
	}
	return out
}

func (r *recorder) snapshot() ([]write, map[pair]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.writes), r.sharing()
}

// exactly says whether the sharing is what set k allows, no more, no less.
func exactly(k int, now map[pair]bool) bool {
	for a := range churnServices {
		for b := a + 1; b < churnServices; b++ {
			x, y := svcName(a), svcName(b)
			if now[mkPair(x, y)] != allowed(k, x, y) {
				return false
			}
		}
	}
	return true
}

type delivery struct {
	at    time.Time
	set   int // -1: not one complete set
	stale int
}

type passWindow struct{ start, end time.Time }

type churnLog struct {
	mu         sync.Mutex
	deliveries []delivery
	passes     []passWindow
}

func (l *churnLog) deliver(d delivery) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.deliveries = append(l.deliveries, d)
}

func (l *churnLog) pass(p controller.Pass) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.passes = append(l.passes, passWindow{p.Start, p.Start.Add(p.Duration)})
}

func (l *churnLog) copy() ([]delivery, []passWindow) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.deliveries), slices.Clone(l.passes)
}

// setOf names the set a snapshot holds: one policy isoNNN, or -1.
func setOf(s watch.Snapshot) int {
	if len(s.Objects) != 1 || !strings.HasPrefix(s.Objects[0].Name, "iso") {
		return -1
	}
	k, err := strconv.Atoi(strings.TrimPrefix(s.Objects[0].Name, "iso"))
	if err != nil {
		return -1
	}
	return k
}

func churnSwarm(t *testing.T) *recorder {
	t.Helper()
	f := fake.New()
	ctx := context.Background()
	nw, err := f.NetworkCreate(ctx, "churn_default", network.CreateOptions{
		Driver: "overlay", Scope: "swarm", Labels: map[string]string{v1.LabelStackNamespace: "churn"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range churnServices {
		spec := swarm.ServiceSpec{}
		spec.Name = svcName(i)
		spec.Labels = map[string]string{v1.LabelStackNamespace: "churn", "app": strings.TrimPrefix(spec.Name, "churn_")}
		spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "churn/app"}
		spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: nw.ID}}
		f.AddService(spec)
	}
	r := &recorder{Swarm: f}
	r.pairs = r.sharing()
	return r
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// repoint moves the link to target at once, as git-sync does.
func repoint(t *testing.T, target, link string) {
	t.Helper()
	tmp := link + ".tmp"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

// TestManifestChurn swaps the manifest root 100 times in 10 s under the
// real watcher and controller (on the fake Swarm): every tenth revision is
// half written when the link moves to it and completed 40 ms later; then
// the file in force is left half written. The last complete set must win, no
// write may come from a set superseded before the pass that made it began
// (each write's new pairs are checked against the sets in force since),
// and the passes stay within a bound.
func TestManifestChurn(t *testing.T) {
	if objs, errs := manifest.LoadFile(writeTemp(t, halfDoc(1))); len(errs) == 0 || len(objs) != 0 {
		t.Fatalf("setup: the half-written file must not decode: %d objects, errors %v", len(objs), errs)
	}

	r := churnSwarm(t)
	base := t.TempDir()
	root := filepath.Join(base, "current")
	rev := func(k int) string { return filepath.Join(base, fmt.Sprintf("rev%03d", k)) }
	writeFile(t, filepath.Join(rev(0), "p.yaml"), churnDoc(0))
	repoint(t, filepath.Base(rev(0)), root)

	log := slog.New(slog.DiscardHandler)
	debounce := watch.DefaultDebounce
	w := watch.New(root, watch.Options{Debounce: debounce, Resync: time.Hour, Logger: log})
	rec := &reconcile.Reconciler{Docker: r, Store: state.New(), Mode: reconcile.ModeEnforce, Log: log}
	clog := &churnLog{}
	ctrl := &controller.Controller{Reconciler: rec, Resync: time.Hour, Log: log, OnPass: clog.pass}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = w.Run(ctx) }()
	first := make(chan struct{})
	go func() {
		// What `swarmsec run` does with each snapshot (followManifests).
		defer wg.Done()
		started := false
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-w.Updates():
				if err := ctrl.SetPolicies(state.Policies(s.Objects)); err != nil {
					t.Errorf("set policies: %v", err)
				}
				clog.deliver(delivery{at: time.Now(), set: setOf(s), stale: len(s.Stale)})
				if !started {
					started = true
					close(first)
				}
			}
		}
	}()
	<-first
	go func() { defer wg.Done(); _ = ctrl.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	converged := func(k int, what string) time.Duration {
		t.Helper()
		start := time.Now()
		for deadline := start.Add(20 * time.Second); ; {
			if _, now := r.snapshot(); exactly(k, now) {
				return time.Since(start)
			}
			if time.Now().After(deadline) {
				_, now := r.snapshot()
				d, _ := clog.copy()
				t.Errorf("%s: set %d not in force after 20s; sharing %v; deliveries %+v", what, k, now, d)
				return time.Since(start)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	converged(0, "start")

	// The churn.
	churnStart := time.Now()
	_, passesBefore := clog.copy()
	tick := time.NewTicker(churnInterval)
	// Quiet gaps longer than the debounce (a loaded machine pausing this
	// goroutine) each allow one more read.
	gaps, lastWrite := 0, time.Now()
	wrote := func() {
		if time.Since(lastWrite) > debounce {
			gaps++
		}
		lastWrite = time.Now()
	}
	for k := 1; k <= churnSwaps; k++ {
		<-tick.C
		path := filepath.Join(rev(k), "p.yaml")
		if k%10 != 5 {
			writeFile(t, path, churnDoc(k))
			repoint(t, filepath.Base(rev(k)), root)
			wrote()
			continue
		}
		writeFile(t, path, halfDoc(k))
		repoint(t, filepath.Base(rev(k)), root)
		wrote()
		time.Sleep(40 * time.Millisecond)
		writeFile(t, path, churnDoc(k)) // in place: the rest of the file
		wrote()
	}
	tick.Stop()
	lastSwap := time.Now()
	churnTook := lastSwap.Sub(churnStart)
	settle := converged(churnSwaps, "after the churn")

	// A writer dies half way through the file in force: the set stays,
	// the file is reported stale.
	writeFile(t, filepath.Join(rev(churnSwaps), "p.yaml"), halfDoc(churnSwaps+1))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		d, _ := clog.copy()
		if last := d[len(d)-1]; last.stale == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the half-written file was not reported stale within 10s")
		}
	}

	// Converged means quiet: one more pass that lists everything writes
	// nothing.
	writesDone, _ := r.snapshot()
	mark := time.Now()
	ctrl.Relist("check")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, passes := clog.copy()
		if len(passes) > 0 && passes[len(passes)-1].start.After(mark) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no pass after the relist")
		}
	}
	writesAll, _ := r.snapshot()
	if len(writesAll) != len(writesDone) {
		t.Errorf("a pass on the converged set wrote %d times: %+v", len(writesAll)-len(writesDone), writesAll[len(writesDone):])
	}

	deliveries, passes := clog.copy()
	last := deliveries[len(deliveries)-1]
	if last.set != churnSwaps || last.stale != 1 {
		t.Errorf("the last snapshot holds set %d with %d stale files; want the last complete set %d, the half-written file stale", last.set, last.stale, churnSwaps)
	}
	prev := 0
	for _, d := range deliveries {
		if d.set < prev {
			t.Errorf("set %d delivered after set %d: a superseded set came back", d.set, prev)
		}
		prev = max(prev, d.set)
	}

	// Every write's new pairs are allowed by a set delivered between the
	// start of its pass and the write itself.
	forbidden := 0
	for _, wr := range writesAll {
		if len(wr.added) == 0 {
			continue
		}
		pi := slices.IndexFunc(passes, func(p passWindow) bool { return !wr.at.Before(p.start) && !wr.at.After(p.end) })
		if pi < 0 {
			t.Errorf("%s %s at %s: in no pass", wr.op, wr.object, wr.at.Format(time.StampMicro))
			continue
		}
		var live []int
		for i, d := range deliveries {
			later := i+1 < len(deliveries) && deliveries[i+1].at.Before(passes[pi].start)
			if !later && !d.at.After(wr.at) {
				live = append(live, d.set)
			}
		}
		for _, p := range wr.added {
			if !slices.ContainsFunc(live, func(k int) bool { return allowed(k, p.a, p.b) }) {
				forbidden++
				t.Errorf("%s %s made %s and %s share a network: no set in force since its pass began (%v) allows it", wr.op, wr.object, p.a, p.b, live)
			}
		}
	}

	// The bound: a snapshot at most every maxBurst debounce periods while
	// the churn lasts, one more per quiet gap longer than the debounce (none
	// unless this goroutine was held up), plus the first and the last; each
	// snapshot takes at most 3 passes to converge uncapped (README, Applying
	// safely) and the events of its writes at most one more.
	churnPasses := len(passes) - len(passesBefore)
	snapshots := 0
	for _, d := range deliveries {
		if d.at.After(churnStart) {
			snapshots++
		}
	}
	maxSnapshots := int(churnTook/(maxBurst*debounce)) + gaps + 2
	bound := 4*maxSnapshots + 1
	if snapshots > maxSnapshots {
		t.Errorf("%d snapshots delivered during %s of churn; bound %d", snapshots, churnTook.Round(time.Millisecond), maxSnapshots)
	}
	if churnPasses > bound {
		t.Errorf("%d passes for the churn; bound %d", churnPasses, bound)
	}
	t.Logf("faults: manifest churn: %d swaps (%d half written) in %s; %d snapshots (bound %d, %d quiet gaps), %d passes (bound %d), %d writes; forbidden pairs seen: %d; converged %s after the last swap",
		churnSwaps, churnSwaps/10+1, churnTook.Round(time.Millisecond), snapshots, maxSnapshots, gaps, churnPasses, bound,
		len(writesAll), forbidden, settle.Round(time.Millisecond))
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "p.yaml")
	writeFile(t, p, content)
	return p
}
