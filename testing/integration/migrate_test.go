//go:build integration

package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/apply"
	"github.com/swarmsec/swarmsec/reconciler/controller"
	"github.com/swarmsec/swarmsec/reconciler/migrate"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// migStack is a stack deployed on one unencrypted overlay network, each
// service answering to its short name there (dnsrr: without IPVS a VIP
// does not answer, task addresses do).
type migStack struct {
	name     string
	net      string
	netID    string
	services []string
	shorts   []string
}

func (s *migStack) svc(short string) string { return s.name + "_" + short }

// migStacks numbers the stacks of a run, so each has its own names.
var migStacks atomic.Int64

// deployMigStack creates the network (attachable, with a label and an MTU
// option the migration must keep) and n services on it. Cleanups remove
// the services, then whatever network of the stack's name swarmsec left.
func deployMigStack(ctx context.Context, t *testing.T, cli *client.Client, n int, netOpts ...swarmtest.NetworkOpt) *migStack {
	t.Helper()
	s := &migStack{name: fmt.Sprintf("mg%s-%d", swarmtest.RunID()[:6], migStacks.Add(1))}
	s.net = s.name + "_default"
	// Registered first, so it runs after the services are gone.
	t.Cleanup(func() {
		ctx := context.WithoutCancel(ctx)
		removeNetworksNamed(ctx, t, cli, s.net, s.net+"-swarmsec-tmp")
		removeManagedNetworks(ctx, t, cli, s.name)
	})
	opts := append([]swarmtest.NetworkOpt{
		swarmtest.Attachable(),
		swarmtest.WithNetworkLabels(map[string]string{v1.LabelStackNamespace: s.name, "team": "payments"}),
		func(o *network.CreateOptions) { o.Options = map[string]string{"com.docker.network.driver.mtu": "1400"} },
	}, netOpts...)
	s.netID = swarmtest.CreateNetwork(ctx, t, cli, s.net, opts...)
	for i := range n {
		short := fmt.Sprintf("s%d", i)
		swarmtest.CreateService(ctx, t, cli,
			swarmtest.WithName(s.svc(short)),
			swarmtest.WithServiceLabels(map[string]string{v1.LabelStackNamespace: s.name, "app": short}),
			swarmtest.WithNetwork(s.net, short),
			swarmtest.WithEndpointMode(swarm.ResolutionModeDNSRR),
		)
		s.services = append(s.services, s.svc(short))
		s.shorts = append(s.shorts, short)
	}
	for _, svc := range s.services {
		swarmtest.WaitTasksRunning(ctx, t, cli, svc, 1)
	}
	return s
}

// removeNetworksNamed removes this test's networks by name: the migrated
// one has a new ID the network's own cleanup does not know.
func removeNetworksNamed(ctx context.Context, t *testing.T, cli *client.Client, names ...string) {
	nets, err := cli.NetworkList(ctx, network.ListOptions{})
	if err != nil {
		t.Errorf("list networks: %v", err)
		return
	}
	for _, n := range nets {
		if slices.Contains(names, n.Name) {
			if err := swarmtest.RemoveNetworkE(ctx, cli, n.ID); err != nil {
				t.Errorf("remove network %s: %v", n.Name, err)
			}
		}
	}
}

func encryptStack(stack string) *v1.Policy {
	name := stack + "-enc"
	return &v1.Policy{Name: name, Kind: v1.KindEncryptionPolicy, Generation: name, Encryption: &v1.EncryptionPolicy{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindEncryptionPolicy},
		Metadata: v1.ObjectMeta{Name: name},
		Spec:     v1.EncryptionPolicySpec{NetworkSelector: v1.LabelSelector{MatchLabels: map[string]string{v1.LabelStackNamespace: stack}}},
	}}
}

// writeCounter counts the calls that can change Swarm.
type writeCounter struct {
	writes, serviceUpdates atomic.Int64
}

func (c *writeCounter) ObserveDockerCall(op string, _ time.Duration, _ error) {
	switch op {
	case dockerapi.OpServiceUpdate:
		c.serviceUpdates.Add(1)
		c.writes.Add(1)
	case dockerapi.OpNetworkCreate, dockerapi.OpNetworkRemove:
		c.writes.Add(1)
	}
}

func (c *writeCounter) reset() { c.writes.Store(0); c.serviceUpdates.Store(0) }

// migReconciler is a fresh swarmsec process (an empty store) that sees only
// the given stacks and counts its calls.
func migReconciler(t *testing.T, cli *client.Client, limits plan.Limits, stacks []*migStack, policies ...*v1.Policy) (*reconcile.Reconciler, *writeCounter) {
	t.Helper()
	c := &writeCounter{}
	scope := scopedAPI{API: cli}
	for _, s := range stacks {
		scope.stacks = append(scope.stacks, s.name)
	}
	r := &reconcile.Reconciler{
		Docker: dockerapi.NewInstrumented(scope, c), Store: state.New(), Mode: reconcile.ModeEnforce,
		Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)), Limits: limits, ProgressDelay: 200 * time.Millisecond, PendingDelay: time.Second,
	}
	if err := r.SetPolicies(policies); err != nil {
		t.Fatal(err)
	}
	return r, c
}

// convergeMig runs passes until nothing waits, as swarmsec apply does.
func convergeMig(ctx context.Context, t *testing.T, r *reconcile.Reconciler) (*reconcile.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	_, res, err := r.Converge(ctx, nil)
	return res, err
}

// sampler lists the stack's services (and their running tasks) over and
// over while a migration runs and records every moment two of them share
// no network.
type sampler struct {
	mu         sync.Mutex
	samples    int
	violations []string
	stop       func()
	done       chan struct{}
}

func sampleSharing(ctx context.Context, t *testing.T, cli *client.Client, s *migStack) *sampler {
	ctx, cancel := context.WithCancel(ctx)
	sm := &sampler{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(sm.done)
		for ctx.Err() == nil {
			err := sharedNow(ctx, cli, s)
			if ctx.Err() != nil {
				return
			}
			sm.mu.Lock()
			sm.samples++
			if err != nil {
				sm.violations = append(sm.violations, time.Now().Format("15:04:05.000 ")+err.Error())
			}
			sm.mu.Unlock()
			time.Sleep(100 * time.Millisecond)
		}
	}()
	t.Cleanup(sm.finish)
	return sm
}

func (sm *sampler) finish() { sm.stop(); <-sm.done }

func (sm *sampler) check(t *testing.T) {
	t.Helper()
	sm.finish()
	sm.mu.Lock()
	defer sm.mu.Unlock()
	t.Logf("sharing sampled %d times", sm.samples)
	if sm.samples < 10 {
		t.Errorf("only %d samples", sm.samples)
	}
	if len(sm.violations) > 0 {
		t.Errorf("%d of %d samples broke sharing, first: %s", len(sm.violations), sm.samples, sm.violations[0])
	}
}

// sharedNow checks that every pair of the stack's services shares a
// network in its spec, and every pair of their running tasks too.
func sharedNow(ctx context.Context, cli *client.Client, s *migStack) error {
	svcs, err := cli.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", v1.LabelStackNamespace+"="+s.name))})
	if err != nil {
		return err
	}
	tasks, err := cli.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("desired-state", "running"))})
	if err != nil {
		return err
	}
	specNets, taskNets, names := map[string][]string{}, map[string][][]string{}, map[string]string{}
	for _, svc := range svcs {
		names[svc.ID] = svc.Spec.Name
		for _, a := range svc.Spec.TaskTemplate.Networks {
			specNets[svc.Spec.Name] = append(specNets[svc.Spec.Name], a.Target)
		}
	}
	for _, task := range tasks {
		name, ok := names[task.ServiceID]
		if !ok || task.Status.State != swarm.TaskStateRunning {
			continue
		}
		var ids []string
		for _, a := range task.NetworksAttachments {
			ids = append(ids, a.Network.ID)
		}
		taskNets[name] = append(taskNets[name], ids)
	}
	share := func(a, b []string) bool {
		return slices.ContainsFunc(a, func(x string) bool { return slices.Contains(b, x) })
	}
	for i, a := range s.services {
		if len(specNets[a]) == 0 {
			return fmt.Errorf("%s is on no network", a)
		}
		for _, b := range s.services[i+1:] {
			if !share(specNets[a], specNets[b]) {
				return fmt.Errorf("specs of %s %v and %s %v share no network", a, specNets[a], b, specNets[b])
			}
			for _, ta := range taskNets[a] {
				for _, tb := range taskNets[b] {
					if !share(ta, tb) {
						return fmt.Errorf("running tasks of %s %v and %s %v share no network", a, ta, b, tb)
					}
				}
			}
		}
	}
	return nil
}

// checkMigratedOnSwarm checks the end state: one encrypted network of the
// stack network's name with its labels, flags and options, every service
// on it with its alias, no temporary network.
func checkMigratedOnSwarm(ctx context.Context, t *testing.T, cli *client.Client, s *migStack, services ...string) string {
	t.Helper()
	n, err := cli.NetworkInspect(ctx, s.net, network.InspectOptions{})
	if err != nil {
		t.Fatalf("network %s: %v", s.net, err)
	}
	if _, ok := n.Options["encrypted"]; !ok || n.ID == s.netID {
		t.Errorf("%s: id %s (was %s), options %v: not replaced by an encrypted network", s.net, n.ID, s.netID, n.Options)
	}
	if n.Labels[v1.LabelStackNamespace] != s.name || n.Labels["team"] != "payments" || n.Labels[swarmtest.LabelTest] != "1" ||
		n.Labels[v1.LabelMigratedFrom] != s.netID {
		t.Errorf("labels not kept: %v", n.Labels)
	}
	if !n.Attachable || n.Internal || n.Options["com.docker.network.driver.mtu"] != "1400" {
		t.Errorf("flags or options not kept: attachable %t internal %t options %v", n.Attachable, n.Internal, n.Options)
	}
	if _, err := cli.NetworkInspect(ctx, s.net+"-swarmsec-tmp", network.InspectOptions{}); err == nil {
		t.Errorf("temporary network %s-swarmsec-tmp left", s.net)
	}
	if len(services) == 0 {
		services = s.services
	}
	for _, name := range services {
		svc, _, err := cli.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		short := strings.TrimPrefix(name, s.name+"_")
		as := svc.Spec.TaskTemplate.Networks
		if len(as) != 1 || as[0].Target != n.ID || !slices.Equal(as[0].Aliases, []string{short}) {
			t.Errorf("service %s networks %+v, want only %s with alias %s", name, as, n.ID, short)
		}
	}
	return n.ID
}

// probeAlias checks that service from reaches service to by its short
// name (its alias on the stack network).
func probeAlias(ctx context.Context, t *testing.T, cli *client.Client, s *migStack, from, to string) {
	t.Helper()
	swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
		ok, out := swarmtest.Probe(ctx, t, cli, s.svc(from), net.JoinHostPort(to, strconv.Itoa(swarmtest.AppPort)))
		return ok, out
	})
}

func TestMigrateStackNetworkOnRealSwarm(t *testing.T) {
	ctx := context.Background()
	cli := engine(ctx, t)
	s := deployMigStack(ctx, t, cli, 6)
	r, calls := migReconciler(t, cli, plan.Limits{}, []*migStack{s}, encryptStack(s.name))

	pl, err := r.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p := pl.Pending(); len(p) != 1 || p[0].Kind != plan.ActionMigrateNetwork || p[0].Name != s.net {
		t.Fatalf("plan: %+v", p)
	}
	t.Logf("plan: %s", strings.Join(pl.Pending()[0].Reasons, "; "))

	sm := sampleSharing(ctx, t, cli, s)
	start := time.Now()
	res, err := convergeMig(ctx, t, r)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("migrated %s with 6 services in %s: %d writes, %d service updates", s.net,
		time.Since(start).Round(100*time.Millisecond), calls.writes.Load(), calls.serviceUpdates.Load())
	for _, ar := range res.Results {
		if ar.Action.Kind != plan.ActionMigrateNetwork || ar.Err != nil {
			t.Fatalf("result: %+v", ar)
		}
	}
	if n := calls.serviceUpdates.Load(); n != 24 {
		t.Errorf("%d service updates, want 24", n)
	}
	sm.check(t)
	checkMigratedOnSwarm(ctx, t, cli, s)
	for _, svc := range s.services {
		swarmtest.WaitServiceConverged(ctx, t, cli, svc)
	}
	probeAlias(ctx, t, cli, s, "s0", "s5")
	probeAlias(ctx, t, cli, s, "s3", "s1")

	// A second apply (a new process) finds nothing to do.
	r2, calls2 := migReconciler(t, cli, plan.Limits{}, []*migStack{s}, encryptStack(s.name))
	pl, _, err = r2.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := calls2.writes.Load(); n != 0 || len(pl.Pending()) != 0 {
		t.Errorf("second apply: %d writes, plan %+v", n, pl.Pending())
	}
}

// TestMigrateKilledAtEachStepOnRealSwarm kills swarmsec right after it
// wrote each step in turn (its rolling updates just started) and starts a
// fresh one, which goes on from what Swarm shows.
func TestMigrateKilledAtEachStepOnRealSwarm(t *testing.T) {
	ctx := context.Background()
	cli := engine(ctx, t)
	s := deployMigStack(ctx, t, cli, 3)
	sm := sampleSharing(ctx, t, cli, s)
	start := time.Now()
	for k := 1; k <= 8; k++ {
		r, _ := migReconciler(t, cli, plan.Limits{}, []*migStack{s}, encryptStack(s.name))
		runCtx, kill := context.WithCancel(ctx)
		var killedAt string
		r.OnResult = func(ar apply.ActionResult) {
			if ar.Action.Kind != plan.ActionMigrateNetwork || len(ar.Action.Steps) == 0 || killedAt != "" {
				return
			}
			if what := ar.Action.Steps[0].What; strings.HasPrefix(what, fmt.Sprintf("step %d/8 ", k)) {
				killedAt = what
				kill()
			}
		}
		_, _, err := r.Converge(runCtx, nil)
		kill()
		if killedAt == "" {
			t.Fatalf("run %d never reached step %d: %v", k, k, err)
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatalf("run %d: %v", k, err)
		}
		t.Logf("%5.1fs killed after %s", time.Since(start).Seconds(), killedAt)
		if err := sharedNow(ctx, cli, s); err != nil {
			t.Errorf("after the kill at step %d: %v", k, err)
		}
	}
	r, calls := migReconciler(t, cli, plan.Limits{}, []*migStack{s}, encryptStack(s.name))
	if _, err := convergeMig(ctx, t, r); err != nil {
		t.Fatal(err)
	}
	t.Logf("%5.1fs finished by a fresh reconciler (%d writes)", time.Since(start).Seconds(), calls.writes.Load())
	sm.check(t)
	checkMigratedOnSwarm(ctx, t, cli, s)
	calls.reset()
	if _, _, err := r.Reconcile(ctx); err != nil || calls.writes.Load() != 0 {
		t.Errorf("next pass: %v, %d writes", err, calls.writes.Load())
	}
}

// TestMigrateThenRestoreOnRealSwarm isolates s0, migrates the stack
// network, then deletes the policies: s0 comes back to the migrated
// network, under its alias.
func TestMigrateThenRestoreOnRealSwarm(t *testing.T) {
	ctx := context.Background()
	cli := engine(ctx, t)
	s := deployMigStack(ctx, t, cli, 3)
	isolate := policy(s.name+"-lock", v1.NetworkPolicySpec{
		ServiceSelector: *labels(v1.LabelStackNamespace, s.name, "app", "s0"),
		Ingress:         []v1.IngressRule{{From: []v1.Peer{{ServiceSelector: labels(v1.LabelService, s.svc("s1"))}}}},
	})
	r, calls := migReconciler(t, cli, plan.DefaultLimits, []*migStack{s}, isolate)
	if _, _, err := r.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.SetPolicies([]*v1.Policy{isolate, encryptStack(s.name)}); err != nil {
		t.Fatal(err)
	}
	if _, err := convergeMig(ctx, t, r); err != nil {
		t.Fatal(err)
	}
	newID := checkMigratedOnSwarm(ctx, t, cli, s, s.svc("s2"))
	s0, _, _ := cli.ServiceInspectWithRaw(ctx, s.svc("s0"), swarm.ServiceInspectOptions{})
	if slices.ContainsFunc(s0.Spec.TaskTemplate.Networks, func(a swarm.NetworkAttachmentConfig) bool { return a.Target == newID }) {
		t.Error("isolated s0 was put on the migrated network")
	}

	// Policies deleted: s0 returns to the stack network, now the migrated one.
	if err := r.SetPolicies(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := convergeMig(ctx, t, r); err != nil {
		t.Fatal(err)
	}
	checkMigratedOnSwarm(ctx, t, cli, s)
	for _, svc := range s.services {
		swarmtest.WaitServiceConverged(ctx, t, cli, svc)
	}
	probeAlias(ctx, t, cli, s, "s2", "s0")
	calls.reset()
	if _, _, err := r.Reconcile(ctx); err != nil || calls.writes.Load() != 0 {
		t.Errorf("next pass: %v, %d writes", err, calls.writes.Load())
	}
}

// TestMigrateOptOutOnRealSwarm: neither a network nor a service labelled
// swarmsec.io/ignore=true is changed, even when a policy selects them.
func TestMigrateOptOutOnRealSwarm(t *testing.T) {
	ctx := context.Background()
	cli := engine(ctx, t)
	ignored := deployMigStack(ctx, t, cli, 1, swarmtest.WithNetworkLabels(map[string]string{v1.LabelIgnore: "true"}))
	withIgnoredService := deployMigStack(ctx, t, cli, 2)
	if err := updateService(ctx, cli, withIgnoredService.svc("s1"), func(spec *swarm.ServiceSpec) { spec.Labels[v1.LabelIgnore] = "true" }); err != nil {
		t.Fatal(err)
	}
	r, calls := migReconciler(t, cli, plan.Limits{}, []*migStack{ignored, withIgnoredService},
		encryptStack(ignored.name), encryptStack(withIgnoredService.name))
	pl, _, err := r.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n := calls.writes.Load(); n != 0 || len(pl.Pending()) != 0 {
		t.Errorf("%d writes, plan %+v", n, pl.Pending())
	}
	notes := strings.Join(pl.Notes, "\n")
	if !strings.Contains(notes, ignored.net+" opts out") || !strings.Contains(notes, "service "+withIgnoredService.svc("s1")+" opts out") {
		t.Errorf("notes:\n%s", notes)
	}
	for _, s := range []*migStack{ignored, withIgnoredService} {
		if n, err := cli.NetworkInspect(ctx, s.net, network.InspectOptions{}); err != nil || n.ID != s.netID {
			t.Errorf("network %s changed: %v", s.net, err)
		}
	}
}

func updateService(ctx context.Context, cli *client.Client, name string, change func(*swarm.ServiceSpec)) error {
	svc, _, err := cli.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
	if err != nil {
		return err
	}
	change(&svc.Spec)
	_, err = cli.ServiceUpdate(ctx, svc.ID, svc.Version, svc.Spec, swarm.ServiceUpdateOptions{})
	return err
}

// TestMigrateBlastRadiusOnRealSwarm caps each pass at five service
// updates: the migration takes several passes, each stopping where the
// services share a network.
func TestMigrateBlastRadiusOnRealSwarm(t *testing.T) {
	ctx := context.Background()
	cli := engine(ctx, t)
	s := deployMigStack(ctx, t, cli, 3)
	sm := sampleSharing(ctx, t, cli, s)
	r, calls := migReconciler(t, cli, plan.Limits{MaxServiceUpdates: 5}, []*migStack{s}, encryptStack(s.name))
	total := int64(0)
	for pass := 1; ; pass++ {
		total += calls.serviceUpdates.Load()
		calls.reset()
		_, res, err := r.Reconcile(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if n := calls.serviceUpdates.Load(); n > 0 {
			t.Logf("pass %d: %d service updates", pass, n)
		}
		if n := calls.serviceUpdates.Load(); n > 5 {
			t.Fatalf("pass %d: %d service updates, limit 5", pass, n)
		}
		if err := sharedNow(ctx, cli, s); err != nil {
			t.Fatalf("after pass %d: %v", pass, err)
		}
		if res.RequeueAfter == 0 {
			if total += calls.serviceUpdates.Load(); total != 12 {
				t.Errorf("%d service updates, want 12", total)
			}
			break
		}
		if pass > 600 {
			t.Fatal("no end")
		}
		time.Sleep(res.RequeueAfter)
	}
	sm.check(t)
	checkMigratedOnSwarm(ctx, t, cli, s)
}

// TestMigrateBlockedByContainerOnRealSwarm: a container started with
// `docker run --network` on the network stops the migration before it
// starts, named in the error; once it is gone the migration runs.
func TestMigrateBlockedByContainerOnRealSwarm(t *testing.T) {
	ctx := context.Background()
	cli := engine(ctx, t)
	s := deployMigStack(ctx, t, cli, 1)
	name := s.name + "-shell"
	c, err := cli.ContainerCreate(ctx, &container.Config{Image: swarmtest.BuildAppImage(ctx, t, cli), Labels: swarmtest.Labels()},
		&container.HostConfig{}, &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{s.net: {}}}, nil, name)
	if err != nil {
		t.Fatal(err)
	}
	removeContainer := func() {
		if err := cli.ContainerRemove(context.WithoutCancel(ctx), c.ID, container.RemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove container %s: %v", name, err)
		}
	}
	t.Cleanup(removeContainer)
	if err := cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		t.Fatal(err)
	}
	r, calls := migReconciler(t, cli, plan.Limits{}, []*migStack{s}, encryptStack(s.name))
	_, _, err = r.Reconcile(ctx)
	if !errors.Is(err, plan.ErrBlocked) || !strings.Contains(err.Error(), name) {
		t.Fatalf("err = %v, want blocked naming %s", err, name)
	}
	if n := calls.writes.Load(); n != 0 {
		t.Errorf("%d writes while blocked", n)
	}
	removeContainer()
	if _, err := convergeMig(ctx, t, r); err != nil {
		t.Fatal(err)
	}
	checkMigratedOnSwarm(ctx, t, cli, s)
}

// TestDriftRevertedWhileMigratingOnRealSwarm runs the controller while it
// migrates a six-service network, and meanwhile attaches an isolated
// service of another stack to its stack network by hand: passes never wait
// for the migration's rolling updates, so the drift is reverted within 2s,
// and the migration still finishes with the services sharing a network
// throughout.
func TestDriftRevertedWhileMigratingOnRealSwarm(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cli := engine(ctx, t)
	s := deployMigStack(ctx, t, cli, 6)
	a := deployApp(ctx, t, cli, 28091, "api", "db")
	api, db := a.svc("api"), a.svc("db")
	isolate := policy(a.stack+"-db", v1.NetworkPolicySpec{
		ServiceSelector: *labels(v1.LabelStackNamespace, a.stack, "app", "db"),
		PolicyTypes:     []v1.PolicyType{v1.PolicyTypeIngress, v1.PolicyTypeEgress},
		Ingress:         []v1.IngressRule{{From: []v1.Peer{{ServiceSelector: labels(v1.LabelService, api)}}}},
	})
	c := &writeCounter{}
	r := &reconcile.Reconciler{
		Docker: dockerapi.NewInstrumented(scopedAPI{API: cli, stacks: []string{s.name, a.stack}}, c), Store: state.New(),
		Mode: reconcile.ModeEnforce, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
	if err := r.SetPolicies([]*v1.Policy{isolate}); err != nil {
		t.Fatal(err)
	}
	if _, err := convergeMig(ctx, t, r); err != nil {
		t.Fatal(err)
	}
	onlyManaged := func() (bool, string) {
		_, names := serviceNetworks(ctx, t, cli, db)
		return slices.Equal(names, []string{"swarmsec-" + a.stack + "-db"}), fmt.Sprintf("db networks %v", names)
	}
	swarmtest.Poll(ctx, t, time.Minute, onlyManaged)
	swarmtest.WaitServiceConverged(ctx, t, cli, db)

	sm := sampleSharing(ctx, t, cli, s)
	ctrl := &controller.Controller{Reconciler: r, Resync: time.Hour, Log: r.Log}
	done := make(chan error, 1)
	go func() { done <- ctrl.Run(ctx) }()
	if err := ctrl.SetPolicies([]*v1.Policy{isolate, encryptStack(s.name)}); err != nil {
		t.Fatal(err)
	}
	// Once the services are on their way onto the temporary network.
	swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
		svc, _, err := cli.ServiceInspectWithRaw(ctx, s.svc("s0"), swarm.ServiceInspectOptions{})
		if err != nil {
			return false, err.Error()
		}
		return len(svc.Spec.TaskTemplate.Networks) > 1, "s0 not on the temporary network yet"
	})
	stackNet, err := cli.NetworkInspect(ctx, a.net, network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := updateService(ctx, cli, db, func(spec *swarm.ServiceSpec) {
		spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: stackNet.ID})
	}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	swarmtest.Poll(ctx, t, 20*time.Second, onlyManaged)
	took := time.Since(start)
	t.Logf("drift reverted in %s while the migration ran", took.Round(10*time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("drift reverted after %s, want within 2s", took.Round(10*time.Millisecond))
	}

	migrated := time.Now()
	swarmtest.Poll(ctx, t, 5*time.Minute, func() (bool, string) {
		nets, err := cli.NetworkList(ctx, network.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		// The whole list: the encrypted network may come before the
		// temporary one in it.
		encrypted := false
		for _, n := range nets {
			if n.Name == migrate.TempName(s.net) {
				return false, "the temporary network is still there"
			}
			if _, ok := n.Options["encrypted"]; ok && n.Name == s.net {
				encrypted = true
			}
		}
		return encrypted, s.net + " is not encrypted yet"
	})
	t.Logf("migration finished %s after the drift was reverted (%d service updates in all)",
		time.Since(migrated).Round(100*time.Millisecond), c.serviceUpdates.Load())
	sm.check(t)
	checkMigratedOnSwarm(ctx, t, cli, s)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("controller: %v", err)
	}
}
