// Command benchscale measures swarmsec at scale on the machine's engine (a
// one-node Swarm) and holds the figures against the engine's own floor,
// measured in the same run:
//
//	benchscale -services 1000 -swarmsec bin/swarmsec
//
// It creates N services with no replicas (no tasks: every cost is the
// engine's API and Raft) in stacks of five (web, api, db, cache, worker),
// with policies under which db and cache accept only api; it runs `swarmsec
// apply` with its default flags (waves from --max-service-updates 20,
// doubling), then issues the same writes with a plain client, 8 at a time
// (the floor: as many network and record creates, and an update of each
// service apply moved that moves it across as many networks again; then,
// as the rounds before measured it, the same with label-only updates); then a
// no-op apply; then the no-op passes of `swarmsec run` (resyncs that list
// everything and find nothing to do) against the four list calls they make,
// issued by a plain client; then 50 manual `--network-add` drifts on
// isolated services while `swarmsec run` runs, timing each revert and
// counting the Docker calls of the passes they cause (from /metrics); then
// restores the cluster and times `swarmsec run` converging it again; then
// the same segmentation declared by hand in stack files (one network per
// allowed pair), deployed with `docker stack deploy`. Everything it creates
// is labelled and removed at the end.
//
// With -replicas N the services run N tasks each of a real image: apply runs
// with --wait, and the floor issues its updates in apply's waves (20, then
// doubling), waiting for each as apply does; it stops after that.
//
// With -soak DURATION it soaks instead (make soak): see soak.go.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

const label = "swarmsec.bench"

func main() {
	n := flag.Int("services", 1000, "services to create (in stacks of five)")
	bin := flag.String("swarmsec", "bin/swarmsec", "the swarmsec binary")
	drifts := flag.Int("drifts", 50, "manual drifts to time while swarmsec run runs")
	byHand := flag.Bool("by-hand", true, "also deploy the same segmentation by hand with docker stack deploy")
	soak := flag.Duration("soak", 0, "instead of the measures, soak this long: a drift a second, a manifest change a minute, resyncs every 30s (make soak)")
	applyOnly := flag.Bool("apply-only", false, "stop after apply and its floor")
	flag.StringVar(&applyLog, "apply-log", "", "write the timed apply's info log (stderr) to this file, to see where its time goes")
	replicas := flag.Int("replicas", 0, "replicas per service (a real image; apply runs with --wait and the floor waits for each wave as apply does); implies -apply-only")
	flag.Parse()
	if *applyOnly {
		*drifts = -1
	}
	if *replicas > 0 {
		*drifts = -1
	}
	if err := run(context.Background(), *n/5, *bin, *drifts, *byHand, *soak, *replicas); err != nil {
		fmt.Fprintln(os.Stderr, "benchscale:", err)
		os.Exit(1)
	}
}

type bench struct {
	cli      *client.Client
	bin      string
	stacks   []string
	dir      string
	image    string // the services' image
	replicas uint64
}

func run(ctx context.Context, stacks int, bin string, drifts int, byHand bool, soak time.Duration, replicas int) error {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	defer cli.Close()
	info, err := cli.Info(ctx)
	if err != nil {
		return err
	}
	if info.Swarm.LocalNodeState != swarm.LocalNodeStateActive {
		if _, err := cli.SwarmInit(ctx, swarm.InitRequest{ListenAddr: "127.0.0.1", AdvertiseAddr: "127.0.0.1"}); err != nil {
			return fmt.Errorf("swarm init: %w", err)
		}
	}
	b := &bench{cli: cli, bin: bin, image: "swarmsec-bench:none", replicas: uint64(replicas)}
	if replicas > 0 {
		if b.image, err = swarmtest.BuildAppImageE(ctx, cli); err != nil {
			return err
		}
	}
	for i := range stacks {
		b.stacks = append(b.stacks, fmt.Sprintf("bs%04d", i))
	}
	if b.dir, err = os.MkdirTemp("", "benchscale"); err != nil {
		return err
	}
	defer os.RemoveAll(b.dir)
	defer b.cleanup(context.WithoutCancel(ctx))
	b.cleanup(ctx) // a run killed earlier

	start := time.Now()
	if err := b.deploy(ctx); err != nil {
		return err
	}
	fmt.Printf("created %d services (%d replicas each) in %d stacks in %s\n", 5*len(b.stacks), replicas, len(b.stacks), time.Since(start).Round(time.Millisecond))
	if replicas > 0 {
		svcs, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", label))})
		if err != nil {
			return err
		}
		if err := b.awaitUpdates(ctx, svcs); err != nil {
			return fmt.Errorf("tasks of the new services: %w", err)
		}
		fmt.Printf("their %d tasks run after %s\n", len(svcs)*replicas, time.Since(start).Round(time.Millisecond))
	}
	if err := b.writeManifests(); err != nil {
		return err
	}

	if soak > 0 {
		out, err := b.swarmsec(ctx, "apply", "--manifests", b.dir, "--max-service-updates", "0")
		if err != nil {
			return fmt.Errorf("apply: %w\n%s", err, out)
		}
		return b.soak(ctx, soak)
	}

	applied, floor, err := b.applyAndFloor(ctx, replicas)
	if err != nil {
		return err
	}
	if drifts < 0 { // -apply-only
		return nil
	}

	start = time.Now()
	out, err := b.swarmsec(ctx, "apply", "--manifests", b.dir)
	if err != nil || !strings.Contains(out, "Applied 0 changes") {
		return fmt.Errorf("no-op apply: %w\n%s", err, out)
	}
	fmt.Printf("no-op apply: %s, 0 writes\n", time.Since(start).Round(time.Millisecond))

	if err := b.noopPasses(ctx, 5); err != nil {
		return err
	}

	if err := b.drift(ctx, drifts); err != nil {
		return err
	}

	if err := b.runConverge(ctx, applied, floor); err != nil {
		return err
	}

	if !byHand {
		return nil
	}
	took, err := b.stackDeploy(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("by hand: docker stack deploy of the same segmentation (a network per allowed pair): %s; apply/by hand = %.2fx\n",
		took.Round(time.Millisecond), applied.Seconds()/took.Seconds())
	return nil
}

// applyAndFloor times swarmsec apply with its default flags (--wait with
// replicas) and then the floor (see floor), printing both.
func (b *bench) applyAndFloor(ctx context.Context, replicas int) (applied, floor time.Duration, err error) {
	creates, records, updates, err := b.planned(ctx)
	if err != nil {
		return 0, 0, err
	}
	args := []string{"apply", "--manifests", b.dir}
	if replicas > 0 {
		args = append(args, "--wait")
	}
	start := time.Now()
	out, err := b.timedApply(ctx, args...)
	applied = time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("apply: %w\n%s", err, out)
	}
	fmt.Printf("swarmsec %s (default flags: --max-service-updates 20, waves doubling): %s for %d network creates, %d record creates, %d service updates in %d waves\n",
		map[bool]string{true: "apply --wait", false: "apply"}[replicas > 0], applied.Round(time.Millisecond), creates, records, updates, strings.Count(out, "Wave "))

	waves := 0
	if replicas > 0 {
		waves = 20 // apply's first wave, --max-service-updates
	}
	floor, err = b.floor(ctx, creates, records, updates, false, waves)
	if err != nil {
		return 0, 0, err
	}
	fmt.Printf("engine floor (the same writes with a plain client, 8 at a time: the network and record creates, each update attaching as many networks as apply's%s): %s; apply/floor = %.2fx (goal 1.5x at 1,000, 2x at 5,000)\n",
		map[bool]string{true: ", in apply's waves, each waited for as apply --wait does", false: ""}[waves > 0], floor.Round(time.Millisecond), applied.Seconds()/floor.Seconds())
	if replicas == 0 {
		labels, err := b.floor(ctx, creates, records, updates, true, 0)
		if err != nil {
			return 0, 0, err
		}
		fmt.Printf("label-only floor (as the rounds before measured: each update changes a label, no network): %s; apply/label-only floor = %.2fx\n",
			labels.Round(time.Millisecond), applied.Seconds()/labels.Seconds())
	}
	return applied, floor, nil
}

// parallel runs fns 8 at a time and returns the first error.
func parallel(fns []func() error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		sem   = make(chan struct{}, 8)
	)
	for _, fn := range fns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}

var apps = []string{"web", "api", "db", "cache", "worker"}

func (b *bench) deploy(ctx context.Context) error {
	var fns []func() error
	for _, st := range b.stacks {
		fns = append(fns, func() error {
			net, err := b.cli.NetworkCreate(ctx, st+"_default", network.CreateOptions{Driver: "overlay", Scope: "swarm",
				Labels: map[string]string{label: "1", "com.docker.stack.namespace": st}})
			if err != nil {
				return err
			}
			for _, app := range apps {
				replicas := b.replicas
				spec := swarm.ServiceSpec{
					Annotations: swarm.Annotations{Name: st + "_" + app, Labels: map[string]string{label: "1", "com.docker.stack.namespace": st, "app": app}},
					Mode:        swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
					TaskTemplate: swarm.TaskSpec{
						ContainerSpec: &swarm.ContainerSpec{Image: b.image},
						Networks:      []swarm.NetworkAttachmentConfig{{Target: net.ID, Aliases: []string{app}}},
					},
				}
				if _, err := b.cli.ServiceCreate(ctx, spec, swarm.ServiceCreateOptions{}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return parallel(fns)
}

func (b *bench) writeManifests() error {
	var sb strings.Builder
	for _, st := range b.stacks {
		for _, app := range []string{"db", "cache"} {
			fmt.Fprintf(&sb, `---
apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata: {name: %[1]s-%[2]s}
spec:
  serviceSelector: {matchLabels: {com.docker.stack.namespace: %[1]s, app: %[2]s}}
  ingress:
    - from: [{serviceSelector: {matchLabels: {com.docker.stack.namespace: %[1]s, app: api}}}]
`, st, app)
		}
	}
	return os.WriteFile(filepath.Join(b.dir, "policies.yaml"), []byte(sb.String()), 0o644)
}

func (b *bench) swarmsec(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, b.bin, append(args, "--log-level", "warn")...).CombinedOutput()
	return string(out), err
}

// applyLog is -apply-log: where the timed apply's info log goes.
var applyLog string

// timedApply runs the apply applyAndFloor times, its info log to applyLog
// when set.
func (b *bench) timedApply(ctx context.Context, args ...string) (string, error) {
	if applyLog == "" {
		return b.swarmsec(ctx, args...)
	}
	f, err := os.Create(applyLog)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var out strings.Builder
	cmd := exec.CommandContext(ctx, b.bin, append(args, "--log-level", "info", "--log-format", "json")...)
	cmd.Stdout, cmd.Stderr = &out, f
	err = cmd.Run()
	return out.String(), err
}

// planned counts the writes swarmsec plans.
func (b *bench) planned(ctx context.Context) (creates, records, updates int, err error) {
	out, _ := exec.CommandContext(ctx, b.bin, "plan", "--manifests", b.dir, "-o", "json").Output()
	var p struct {
		Actions []struct {
			Kind string `json:"kind"`
		} `json:"actions"`
	}
	if err := json.Unmarshal(out, &p); err != nil {
		return 0, 0, 0, fmt.Errorf("plan: %w", err)
	}
	for _, a := range p.Actions {
		switch a.Kind {
		case "create-network":
			creates++
		case "update-service":
			updates++
		}
	}
	// Each newly isolated service gets a record.
	return creates, 2 * len(b.stacks), updates, nil
}

// floor issues the writes apply made with a plain client, 8 at a time: as
// many network creates (encrypted, internal) and record creates, and an
// update of every service apply moved that moves it the same way again,
// off each network apply attached and onto a network of the floor's. A
// service update that attaches and detaches networks costs the engine more
// than one that changes a label (each attachment allocates the service a
// virtual IP), so the floor's updates carry the same attachments; labelOnly
// measures the floor the rounds before used instead: a label change.
// waves > 0 issues the updates in apply's waves (the first waves entries,
// then doubling), each waiting until its rolling updates are done, as apply
// --wait does.
func (b *bench) floor(ctx context.Context, creates, records, updates int, labelOnly bool, waves int) (time.Duration, error) {
	svcs, err := b.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", label))})
	if err != nil {
		return 0, err
	}
	managed, err := b.cli.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", v1.LabelManaged+"=true"))})
	if err != nil {
		return 0, err
	}
	slices.SortFunc(managed, func(a, c network.Summary) int { return strings.Compare(a.Name, c.Name) })
	// Names of their own, and of this run: an engine that left its Swarm
	// with a task still attached can keep a swarm network's local copy.
	kind := fmt.Sprintf("%s%d-", map[bool]string{true: "label-", false: ""}[labelOnly], os.Getpid())
	start := time.Now()
	var fns []func() error
	floorNets := make([]string, creates)
	for i := range creates {
		fns = append(fns, func() error {
			name := fmt.Sprintf("bsfloor-%s%d", kind, i)
			n, err := b.cli.NetworkCreate(ctx, name, network.CreateOptions{Driver: "overlay", Scope: "swarm",
				Labels: map[string]string{label: "1"}, Options: map[string]string{"encrypted": "true"}, Internal: true})
			if err != nil {
				// Seen under load: the engine created the network and
				// answered that it exists, or that it was not found. If
				// it is there, go on.
				if ex, ierr := b.cli.NetworkInspect(ctx, name, network.InspectOptions{}); ierr == nil {
					n.ID, err = ex.ID, nil
				}
			}
			floorNets[i] = n.ID
			return err
		})
	}
	if err := parallel(fns); err != nil {
		return 0, err
	}
	fns = nil
	for i := range records {
		fns = append(fns, func() error {
			_, err := b.cli.ConfigCreate(ctx, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: fmt.Sprintf("bsfloor-%s%d", kind, i), Labels: map[string]string{label: "1"}}, Data: []byte("{}")})
			return err
		})
	}
	if err := parallel(fns); err != nil {
		return 0, err
	}
	// Each managed network of apply's gets one of the floor's.
	swap := map[string]string{}
	for i, n := range managed {
		if creates > 0 {
			swap[n.ID], swap[n.Name] = floorNets[i%creates], floorNets[i%creates]
		}
	}
	var moved []swarm.Service
	for _, s := range svcs {
		if labelOnly || slices.ContainsFunc(s.Spec.TaskTemplate.Networks, func(a swarm.NetworkAttachmentConfig) bool { return swap[a.Target] != "" }) {
			moved = append(moved, s)
		}
	}
	moved = moved[:min(updates, len(moved))]
	update := func(s swarm.Service, swap map[string]string) error { return b.update(ctx, s, swap, labelOnly) }
	for size, rest := waves, moved; len(rest) > 0; size *= 2 {
		batch := rest
		if waves > 0 {
			batch = rest[:min(size, len(rest))]
		}
		rest = rest[len(batch):]
		fns = nil
		for _, s := range batch {
			fns = append(fns, func() error { return update(s, swap) })
		}
		if err := parallel(fns); err != nil {
			return 0, err
		}
		if waves > 0 {
			if err := b.awaitUpdates(ctx, batch); err != nil {
				return 0, err
			}
		}
	}
	took := time.Since(start)
	if labelOnly {
		return took, nil
	}
	// Untimed: the services back on apply's networks, so that what
	// follows (a no-op apply, drifts) finds the cluster as apply left it.
	if err := b.moveBack(ctx, moved, managed, swap, waves > 0); err != nil {
		return 0, fmt.Errorf("the services back on apply's networks: %w", err)
	}
	return took, nil
}

// update changes a service as the floor does: a label (labelOnly), or
// each network of swap's for its counterpart. As any client, on "out of
// sequence" it reads again and retries.
func (b *bench) update(ctx context.Context, s swarm.Service, swap map[string]string, labelOnly bool) error {
	for attempt := 0; ; attempt++ {
		spec := s.Spec
		if labelOnly {
			spec.Labels["bsfloor"] = "1"
		} else {
			nets := slices.Clone(spec.TaskTemplate.Networks)
			for i, a := range nets {
				if id := swap[a.Target]; id != "" {
					nets[i].Target = id
				}
			}
			spec.TaskTemplate.Networks = nets
		}
		_, err := b.cli.ServiceUpdate(ctx, s.ID, s.Version, spec, swarm.ServiceUpdateOptions{})
		if err == nil || attempt == 5 || !strings.Contains(err.Error(), "out of sequence") {
			return err
		}
		if s, _, err = b.cli.ServiceInspectWithRaw(ctx, s.ID, swarm.ServiceInspectOptions{}); err != nil {
			return err
		}
	}
}

// moveBack puts the services the floor moved back on apply's networks.
func (b *bench) moveBack(ctx context.Context, moved []swarm.Service, managed []network.Summary, swap map[string]string, wait bool) error {
	back := map[string]string{}
	for _, n := range managed {
		if id := swap[n.ID]; id != "" {
			back[id] = n.ID
		}
	}
	var fns []func() error
	for _, s := range moved {
		fns = append(fns, func() error {
			now, _, err := b.cli.ServiceInspectWithRaw(ctx, s.ID, swarm.ServiceInspectOptions{})
			if err != nil {
				return err
			}
			return b.update(ctx, now, back, false)
		})
	}
	if err := parallel(fns); err != nil {
		return err
	}
	if wait {
		return b.awaitUpdates(ctx, moved)
	}
	return nil
}

// awaitUpdates waits until the services' rolling updates are done, as
// apply's wave does: per look, one service list and one task list; done
// when no update is in progress and each service runs its replicas with
// the networks of its spec.
func (b *bench) awaitUpdates(ctx context.Context, svcs []swarm.Service) error {
	ids := map[string]bool{}
	for _, s := range svcs {
		ids[s.ID] = true
	}
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(250 * time.Millisecond) {
		busy, err := b.updating(ctx, ids)
		if err != nil || busy == "" {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after 10m: %s", busy)
		}
	}
}

// updating says what the services' rolling updates still wait for ("" when
// nothing).
func (b *bench) updating(ctx context.Context, ids map[string]bool) (string, error) {
	all, err := b.cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", label))})
	if err != nil {
		return "", err
	}
	want := map[string]swarm.Service{}
	running := filters.NewArgs(filters.Arg("desired-state", "running"))
	for _, s := range all {
		if !ids[s.ID] {
			continue
		}
		if s.UpdateStatus != nil && s.UpdateStatus.State == swarm.UpdateStateUpdating {
			return s.Spec.Name + " is updating", nil
		}
		want[s.ID] = s
		running.Add("service", s.ID)
	}
	tasks, err := b.cli.TaskList(ctx, swarm.TaskListOptions{Filters: running})
	if err != nil {
		return "", err
	}
	have := map[string]int{}
	for _, t := range tasks {
		s, ok := want[t.ServiceID]
		if !ok {
			continue
		}
		if t.Status.State != swarm.TaskStateRunning || len(t.Spec.Networks) != len(s.Spec.TaskTemplate.Networks) {
			return fmt.Sprintf("%s: a task is %s", s.Spec.Name, t.Status.State), nil
		}
		have[t.ServiceID]++
	}
	for id, s := range want {
		if r := s.Spec.Mode.Replicated; r != nil && r.Replicas != nil && have[id] < int(*r.Replicas) {
			return fmt.Sprintf("%s runs %d of %d tasks", s.Spec.Name, have[id], *r.Replicas), nil
		}
	}
	return "", nil
}

// startRun starts `swarmsec run` with extra flags and waits until it is
// ready. It returns its /metrics address and a function that stops it.
func (b *bench) startRun(ctx context.Context, extra ...string) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := l.Addr().String()
	l.Close()
	args := append([]string{"run", "--manifests", b.dir, "--listen", addr, "--log-level", "warn"}, extra...)
	cmd := exec.CommandContext(ctx, b.bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr, stop, nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("swarmsec run not ready after 2m")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// metrics is one scrape of /metrics: each series ("name{labels}") and its
// value.
type metrics map[string]float64

func scrape(addr string) (metrics, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var sb strings.Builder
	if _, err := io.Copy(&sb, resp.Body); err != nil {
		return nil, err
	}
	m := metrics{}
	for _, line := range strings.Split(sb.String(), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m, nil
}

// sum adds the series of a family whose labels contain every one of match
// (each `key="value"`).
func (m metrics) sum(family string, match ...string) float64 {
	total := 0.0
	for series, v := range m {
		name, labels, _ := strings.Cut(series, "{")
		if name != family {
			continue
		}
		ok := true
		for _, l := range match {
			ok = ok && strings.Contains(labels, l)
		}
		if ok {
			total += v
		}
	}
	return total
}

// minus is the change from before to m.
func (m metrics) minus(before metrics) metrics {
	out := metrics{}
	for k, v := range m {
		out[k] = v - before[k]
	}
	return out
}

var listOps = []string{"ServiceList", "NetworkList", "NodeList", "ConfigList", "TaskList"}

// calls renders the Docker calls in m by operation, with those that found
// nothing (the agent service, when none runs) in brackets.
func (m metrics) calls() (lists, other float64, text string) {
	byOp, notFound := map[string]float64{}, map[string]float64{}
	for series, v := range m {
		name, labels, _ := strings.Cut(series, "{")
		if name != "swarmsec_docker_requests_total" || v == 0 {
			continue
		}
		op := labels[strings.Index(labels, `operation="`)+len(`operation="`):]
		op = op[:strings.IndexByte(op, '"')]
		byOp[op] += v
		if strings.Contains(labels, `result="not_found"`) {
			notFound[op] += v
		}
		if slices.Contains(listOps, op) {
			lists += v
		} else {
			other += v
		}
	}
	var parts []string
	for op, v := range byOp {
		part := fmt.Sprintf("%s %.0f", op, v)
		if notFound[op] > 0 {
			part += fmt.Sprintf(" (%.0f not found)", notFound[op])
		}
		parts = append(parts, part)
	}
	slices.Sort(parts)
	return lists, other, strings.Join(parts, ", ")
}

// listCalls times the four list calls a pass that lists makes, with the
// same options, issued one after the other by a plain client.
func (b *bench) listCalls(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	if _, err := b.cli.NetworkList(ctx, network.ListOptions{}); err != nil {
		return 0, err
	}
	if _, err := b.cli.ServiceList(ctx, swarm.ServiceListOptions{Status: true}); err != nil {
		return 0, err
	}
	if _, err := b.cli.NodeList(ctx, swarm.NodeListOptions{}); err != nil {
		return 0, err
	}
	if _, err := b.cli.ConfigList(ctx, swarm.ConfigListOptions{Filters: filters.NewArgs(filters.Arg("label", "swarmsec.io/purpose=original"))}); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// noopPasses runs `swarmsec run` with a short resync on the converged
// Swarm and holds the mean duration of n resync passes (they list
// everything and write nothing) against the four list calls alone, timed
// n times before and n times after.
func (b *bench) noopPasses(ctx context.Context, n int) error {
	var lists time.Duration
	for range n {
		d, err := b.listCalls(ctx)
		if err != nil {
			return err
		}
		lists += d
	}
	addr, stop, err := b.startRun(ctx, "--resync", "2s")
	if err != nil {
		return err
	}
	before, err := scrape(addr)
	if err != nil {
		stop()
		return err
	}
	var d metrics
	for deadline := time.Now().Add(5 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
		now, err := scrape(addr)
		if err != nil {
			stop()
			return err
		}
		d = now.minus(before)
		if d.sum("swarmsec_observations_total", `mode="list"`) >= float64(n) {
			break
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("no %d resyncs in 5m", n)
		}
	}
	stop()
	for range n {
		d, err := b.listCalls(ctx)
		if err != nil {
			return err
		}
		lists += d
	}
	passes := d.sum("swarmsec_reconcile_duration_seconds_count")
	pass := time.Duration(d.sum("swarmsec_reconcile_duration_seconds_sum") / passes * float64(time.Second))
	listed := lists / time.Duration(2*n)
	nl, other, text := d.calls()
	fmt.Printf("no-op pass under run (a resync that lists): %s per pass over %.0f passes; the four list calls alone: %s; pass/lists = %.2fx (goal 1.2x); calls per pass: %.1f lists, %.1f other (%s)\n",
		pass.Round(time.Millisecond), passes, listed.Round(time.Millisecond), pass.Seconds()/listed.Seconds(), nl/passes, other/passes, text)
	return nil
}

// drift starts `swarmsec run`, attaches isolated services to their stack
// network by hand one after the other, times each revert and counts the
// Docker calls of the passes the drifts caused.
func (b *bench) drift(ctx context.Context, n int) error {
	addr, stop, err := b.startRun(ctx)
	if err != nil {
		return err
	}
	defer stop()
	// The first pass's own reads and any pass it left are done.
	time.Sleep(time.Second)
	before, err := scrape(addr)
	if err != nil {
		return err
	}
	var took []time.Duration
	for i := range n {
		st := b.stacks[i%len(b.stacks)]
		name := st + "_db"
		svc, _, err := b.cli.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
		if err != nil {
			return err
		}
		stackNet, err := b.cli.NetworkInspect(ctx, st+"_default", network.InspectOptions{})
		if err != nil {
			return err
		}
		spec := svc.Spec
		spec.TaskTemplate.Networks = append(slices.Clone(spec.TaskTemplate.Networks), swarm.NetworkAttachmentConfig{Target: stackNet.ID})
		if _, err := b.cli.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
			return err
		}
		start := time.Now()
		for {
			cur, _, err := b.cli.ServiceInspectWithRaw(ctx, svc.ID, swarm.ServiceInspectOptions{})
			if err != nil {
				return err
			}
			if !slices.ContainsFunc(cur.Spec.TaskTemplate.Networks, func(a swarm.NetworkAttachmentConfig) bool { return a.Target == stackNet.ID }) {
				break
			}
			if time.Since(start) > time.Minute {
				return fmt.Errorf("drift on %s not reverted after 1m", name)
			}
			time.Sleep(10 * time.Millisecond)
		}
		took = append(took, time.Since(start))
	}
	// The passes that read back the last revert.
	time.Sleep(time.Second)
	after, err := scrape(addr)
	if err != nil {
		return err
	}
	d := after.minus(before)
	slices.Sort(took)
	fmt.Printf("drift: %d manual --network-add on isolated services while run runs: revert p50 %s, p99 %s (goal p99 < 1s)\n",
		n, took[len(took)/2].Round(time.Millisecond), took[min(len(took)-1, len(took)*99/100)].Round(time.Millisecond))
	passes := d.sum("swarmsec_reconcile_duration_seconds_count")
	listed := d.sum("swarmsec_observations_total", `mode="list"`)
	lists, other, text := d.calls()
	fmt.Printf("drift passes: %.0f passes for %d drifts, %.0f of them listed (resyncs), %.0f by events; Docker calls: %.0f lists (4 per resync), %.0f other (%s); per pass by events: %.2f calls; mean pass %.0f ms\n",
		passes, n, listed, passes-listed, lists, other, text, other/(passes-listed),
		(d.sum("swarmsec_reconcile_duration_seconds_sum"))/passes*1000)
	return nil
}

// runConverge restores the cluster (apply of no policies, timed), then
// times `swarmsec run` converging it again from its start until it has
// made every write apply made (from /metrics), against apply and the
// floor.
func (b *bench) runConverge(ctx context.Context, applied, floor time.Duration) error {
	empty, err := os.MkdirTemp("", "benchscale-empty")
	if err != nil {
		return err
	}
	defer os.RemoveAll(empty)
	start := time.Now()
	if out, err := b.swarmsec(ctx, "apply", "--manifests", empty, "--allow-empty"); err != nil {
		return fmt.Errorf("restore: %w\n%s", err, out)
	}
	fmt.Printf("restore (apply of no policies, default flags): %s\n", time.Since(start).Round(time.Millisecond))
	creates, _, updates, err := b.planned(ctx)
	if err != nil {
		return err
	}
	start = time.Now()
	addr, stop, err := b.startRun(ctx)
	if err != nil {
		return err
	}
	defer stop()
	for deadline := time.Now().Add(10 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		m, err := scrape(addr)
		if err != nil {
			return err
		}
		written := m.sum("swarmsec_actions_total", `result="created"`) + m.sum("swarmsec_actions_total", `result="configured"`)
		if written >= float64(creates+updates) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("run: %.0f of %d writes after 10m", written, creates+updates)
		}
	}
	took := time.Since(start)
	fmt.Printf("swarmsec run converging the same cluster from its start: %s for %d network creates and %d service updates; run/apply = %.2fx, run/floor = %.2fx\n",
		took.Round(time.Millisecond), creates, updates, took.Seconds()/applied.Seconds(), took.Seconds()/floor.Seconds())
	return nil
}

// stackDeploy deploys, as new stacks, the same services with the
// segmentation declared by hand: a network per allowed pair.
func (b *bench) stackDeploy(ctx context.Context) (time.Duration, error) {
	var files []string
	for _, st := range b.stacks {
		f := filepath.Join(b.dir, "sd"+st+".yml")
		body := fmt.Sprintf(`version: "3.8"
services:
  web: {image: swarmsec-bench:none, deploy: {replicas: 0, labels: {%[1]s: "1"}}, networks: [default]}
  api: {image: swarmsec-bench:none, deploy: {replicas: 0, labels: {%[1]s: "1"}}, networks: [default, api_db, api_cache]}
  db: {image: swarmsec-bench:none, deploy: {replicas: 0, labels: {%[1]s: "1"}}, networks: [api_db]}
  cache: {image: swarmsec-bench:none, deploy: {replicas: 0, labels: {%[1]s: "1"}}, networks: [api_cache]}
  worker: {image: swarmsec-bench:none, deploy: {replicas: 0, labels: {%[1]s: "1"}}, networks: [default]}
networks:
  default: {labels: {%[1]s: "1"}}
  api_db: {driver: overlay, internal: true, driver_opts: {encrypted: ""}, labels: {%[1]s: "1"}}
  api_cache: {driver: overlay, internal: true, driver_opts: {encrypted: ""}, labels: {%[1]s: "1"}}
`, label)
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			return 0, err
		}
		files = append(files, f)
	}
	start := time.Now()
	var fns []func() error
	for i, st := range b.stacks {
		fns = append(fns, func() error {
			out, err := exec.CommandContext(ctx, "docker", "stack", "deploy", "--resolve-image", "never", "-c", files[i], "sd"+st).CombinedOutput()
			if err != nil {
				return fmt.Errorf("stack deploy: %w: %s", err, out)
			}
			return nil
		})
	}
	err := parallel(fns)
	return time.Since(start), err
}

// cleanup removes every service, network and config the run created, and
// swarmsec's records and networks for them.
func (b *bench) cleanup(ctx context.Context) {
	f := filters.NewArgs(filters.Arg("label", label))
	svcs, _ := b.cli.ServiceList(ctx, swarm.ServiceListOptions{})
	var fns []func() error
	for _, s := range svcs {
		if s.Spec.Labels[label] != "" || strings.HasPrefix(s.Spec.Name, "bs") || strings.HasPrefix(s.Spec.Name, "sdbs") {
			fns = append(fns, func() error { return b.cli.ServiceRemove(ctx, s.ID) })
		}
	}
	_ = parallel(fns)
	cfgs, _ := b.cli.ConfigList(ctx, swarm.ConfigListOptions{})
	fns = nil
	for _, c := range cfgs {
		if c.Spec.Labels[label] != "" || strings.HasPrefix(c.Spec.Name, "swarmsec-original-") {
			fns = append(fns, func() error { return b.cli.ConfigRemove(ctx, c.ID) })
		}
	}
	_ = parallel(fns)
	for range 30 {
		nets, _ := b.cli.NetworkList(ctx, network.ListOptions{Filters: f})
		all, _ := b.cli.NetworkList(ctx, network.ListOptions{})
		for _, n := range all {
			if strings.Contains(n.Name, "bs0") && n.Labels["swarmsec.io/managed"] == "true" {
				nets = append(nets, n)
			}
		}
		if len(nets) == 0 {
			return
		}
		fns = nil
		for _, n := range nets {
			fns = append(fns, func() error { return b.cli.NetworkRemove(ctx, n.ID) })
		}
		_ = parallel(fns)
		time.Sleep(time.Second)
	}
}
