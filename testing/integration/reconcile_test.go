//go:build integration

// Package integration runs swarmsec against the machine's Docker engine as a
// one-node Swarm: real services, real networks, probes from inside tasks.
package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/controller"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// engine returns a client of the machine's engine, made a Swarm manager if
// it is not one yet.
func engine(ctx context.Context, t *testing.T) *client.Client {
	t.Helper()
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	swarmtest.EnsureSwarm(ctx, t, cli)
	return cli
}

// app is a stack deployed the insecure way people start: every service on
// one unencrypted overlay network, web published through the routing mesh.
type app struct {
	stack    string
	services []string // full service names
	net      string
	webPort  uint32
}

func (a *app) svc(short string) string { return a.stack + "_" + short }

// deployed counts the apps deployed by this run, to name them apart.
var deployed atomic.Int64

func deployApp(ctx context.Context, t *testing.T, cli *client.Client, webPort uint32, shorts ...string) *app {
	t.Helper()
	a := &app{stack: "it" + swarmtest.RunID()[:6] + strings.ToLower(t.Name()[len(t.Name())-3:]), webPort: webPort}
	if n := deployed.Add(1); n > 1 {
		a.stack += fmt.Sprint(n) // a second app of the same test
	}
	a.net = a.stack + "_default"
	// Registered first so it runs last, after the services are gone: it
	// removes the managed networks a failed test may have left.
	removeManagedNetworks(ctx, t, cli, a.stack)
	swarmtest.CreateNetwork(ctx, t, cli, a.net, swarmtest.WithNetworkLabels(map[string]string{v1.LabelStackNamespace: a.stack}))
	for _, short := range shorts {
		opts := []swarmtest.ServiceOpt{
			swarmtest.WithName(a.svc(short)),
			swarmtest.WithServiceLabels(map[string]string{v1.LabelStackNamespace: a.stack, "app": short}),
			swarmtest.WithNetwork(a.net, short),
		}
		if short == "web" {
			opts = append(opts, swarmtest.WithPublishedPort(webPort, swarmtest.AppPort, swarm.PortConfigPublishModeIngress),
				swarmtest.WithPublishedPort(webPort+1, 9090, swarm.PortConfigPublishModeIngress))
		}
		swarmtest.CreateService(ctx, t, cli, opts...)
		a.services = append(a.services, a.svc(short))
	}
	for _, s := range a.services {
		swarmtest.WaitTasksRunning(ctx, t, cli, s, 1)
	}
	// Records outlive their services unless a pass removes them: a test
	// that ends isolated leaves none behind.
	removeRecords(ctx, t, cli, a)
	return a
}

// removeManagedNetworks registers the removal of the networks swarmsec
// created whose name holds prefix (a test's stack or policy names).
// Register it before creating services: cleanups run last first, so it runs
// once the services are gone.
func removeManagedNetworks(ctx context.Context, t *testing.T, cli *client.Client, prefix string) {
	t.Cleanup(func() {
		ctx := context.WithoutCancel(ctx)
		nets, err := cli.NetworkList(ctx, network.ListOptions{})
		if err != nil {
			t.Errorf("list networks: %v", err)
			return
		}
		for _, n := range nets {
			if n.Labels[v1.LabelManaged] == "true" && strings.Contains(n.Name, prefix) {
				if err := swarmtest.RemoveNetworkE(ctx, cli, n.ID); err != nil {
					t.Errorf("remove managed network %s: %v", n.Name, err)
				}
			}
		}
	})
}

func policy(name string, spec v1.NetworkPolicySpec) *v1.Policy {
	return &v1.Policy{Name: name, Kind: v1.KindNetworkPolicy, Generation: name, Network: &v1.NetworkPolicy{
		TypeMeta: v1.TypeMeta{APIVersion: v1.APIVersion, Kind: v1.KindNetworkPolicy},
		Metadata: v1.ObjectMeta{Name: name},
		Spec:     spec,
	}}
}

func labels(kv ...string) *v1.LabelSelector {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return &v1.LabelSelector{MatchLabels: m}
}

// newReconciler is a swarmsec that sees only the app's stack: other tests
// may run on the same engine.
func newReconciler(cli *client.Client, t *testing.T, a *app, policies ...*v1.Policy) *reconcile.Reconciler {
	r := &reconcile.Reconciler{
		Docker: scopedAPI{API: cli, stacks: []string{a.stack}}, Store: state.New(), Mode: reconcile.ModeEnforce,
		Log:          slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		Limits:       plan.DefaultLimits,
		PendingDelay: time.Second,
	}
	if err := r.SetPolicies(policies); err != nil {
		t.Fatal(err)
	}
	return r
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

var _ io.Writer = testWriter{}

func converge(ctx context.Context, t *testing.T, cli *client.Client, r *reconcile.Reconciler, a *app) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if _, _, err := r.Converge(cctx, nil); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	for _, s := range a.services {
		swarmtest.WaitServiceConverged(ctx, t, cli, s)
	}
}

// checkMatrix probes every ordered pair of the app's services.
func checkMatrix(ctx context.Context, t *testing.T, cli *client.Client, a *app, allowed func(from, to string) bool) {
	t.Helper()
	swarmtest.CheckMatrixByRows(ctx, t, a.services, a.services, func(from, to string) bool {
		return from == to || allowed(from, to)
	}, swarmtest.ServiceRowProbe(cli))
}

// checkEncrypted fails unless every network of each isolated service is a
// managed, encrypted overlay.
func checkEncrypted(ctx context.Context, t *testing.T, cli *client.Client, services ...string) {
	t.Helper()
	for _, name := range services {
		svc, _, err := cli.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, att := range svc.Spec.TaskTemplate.Networks {
			n, err := cli.NetworkInspect(ctx, att.Target, network.InspectOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := n.Options["encrypted"]; !ok || n.Labels[v1.LabelManaged] != "true" || n.Attachable {
				t.Errorf("isolated %s is on %s: options %v labels %v attachable %t", name, n.Name, n.Options, n.Labels, n.Attachable)
			}
		}
	}
}

func TestIsolateAndRestoreOnRealSwarm(t *testing.T) {
	ctx := context.Background()
	cli := engine(ctx, t)
	a := deployApp(ctx, t, cli, 28080, "web", "api", "db", "cache")
	web, api, db, cache := a.svc("web"), a.svc("api"), a.svc("db"), a.svc("cache")

	// Before: the stack network lets everyone reach everyone.
	checkMatrix(ctx, t, cli, a, func(string, string) bool { return true })

	stackSel := func(app string) v1.LabelSelector {
		return v1.LabelSelector{MatchLabels: map[string]string{v1.LabelStackNamespace: a.stack, "app": app}}
	}
	r := newReconciler(cli, t, a,
		policy(a.stack+"-db", v1.NetworkPolicySpec{
			ServiceSelector: stackSel("db"),
			PolicyTypes:     []v1.PolicyType{v1.PolicyTypeIngress, v1.PolicyTypeEgress},
			Ingress:         []v1.IngressRule{{From: []v1.Peer{{ServiceSelector: labels(v1.LabelService, api)}}}},
		}),
		policy(a.stack+"-web", v1.NetworkPolicySpec{
			ServiceSelector: stackSel("web"),
			Egress:          []v1.EgressRule{{To: []v1.Peer{{ServiceSelector: labels(v1.LabelService, api)}, {IPBlock: &v1.IPBlock{CIDR: v1.AnyIPv4}}}}},
			Publish:         []v1.PublishedPort{{Port: int(a.webPort)}},
		}),
	)
	converge(ctx, t, cli, r, a)

	// After: db only with api; web only with api; api and cache, which no
	// policy selects, keep their stack network and each other.
	edges := map[[2]string]bool{{api, db}: true, {web, api}: true, {api, cache}: true}
	checkMatrix(ctx, t, cli, a, func(from, to string) bool { return edges[[2]string{from, to}] || edges[[2]string{to, from}] })
	checkEncrypted(ctx, t, cli, web, db)

	svc, _, err := cli.ServiceInspectWithRaw(ctx, web, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ports := svc.Spec.EndpointSpec.Ports; len(ports) != 1 || ports[0].PublishedPort != a.webPort || ports[0].PublishMode != swarm.PortConfigPublishModeHost {
		t.Errorf("web ports: %+v, want only %d in host mode", ports, a.webPort)
	}
	// The host-mode port answers on this host (the task has a gateway).
	swarmtest.Poll(ctx, t, 30*time.Second, func() (bool, string) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", a.webPort), time.Second)
		if err != nil {
			return false, err.Error()
		}
		c.Close()
		return true, ""
	})

	// Idempotent: a second pass plans and writes nothing.
	plan, err := r.Plan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p := plan.Pending(); len(p) != 0 {
		t.Errorf("second plan: %+v", p)
	}

	// Policies deleted: everything is restored as the stack declared it.
	if err := r.SetPolicies(nil); err != nil {
		t.Fatal(err)
	}
	converge(ctx, t, cli, r, a)
	checkMatrix(ctx, t, cli, a, func(string, string) bool { return true })
	svc, _, _ = cli.ServiceInspectWithRaw(ctx, web, swarm.ServiceInspectOptions{})
	if ports := svc.Spec.EndpointSpec.Ports; len(ports) != 2 || ports[0].PublishMode != swarm.PortConfigPublishModeIngress {
		t.Errorf("web ports not restored: %+v", ports)
	}
	nets, _ := cli.NetworkList(ctx, network.ListOptions{})
	for _, n := range nets {
		if n.Labels[v1.LabelManaged] == "true" && slices.Contains([]string{a.stack + "-db", a.stack + "-web"}, n.Labels[v1.LabelOwner]) {
			t.Errorf("managed network %s left after its policy went", n.Name)
		}
	}
	// The records go once the restores' rolling updates are done, before
	// Converge ends.
	cfgs, err := cli.ConfigList(ctx, swarm.ConfigListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{web, db} {
		s, _, err := cli.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(cfgs, func(c swarm.Config) bool { return c.Spec.Name == compile.RecordName(s.ID) }) {
			t.Errorf("%s's record left after its restore (update %+v)", name, s.UpdateStatus)
		}
	}
}

func TestControllerRevertsManualDrift(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cli := engine(ctx, t)
	a := deployApp(ctx, t, cli, 28090, "api", "db")
	api, db := a.svc("api"), a.svc("db")

	r := newReconciler(cli, t, a, policy(a.stack+"-db", v1.NetworkPolicySpec{
		ServiceSelector: v1.LabelSelector{MatchLabels: map[string]string{v1.LabelStackNamespace: a.stack, "app": "db"}},
		PolicyTypes:     []v1.PolicyType{v1.PolicyTypeIngress, v1.PolicyTypeEgress},
		Ingress:         []v1.IngressRule{{From: []v1.Peer{{ServiceSelector: labels(v1.LabelService, api)}}}},
	}))
	ctrl := &controller.Controller{Reconciler: r, Resync: time.Hour, Retry: time.Second, Log: r.Log}
	done := make(chan error, 1)
	go func() { done <- ctrl.Run(ctx) }()

	onlyManaged := func() (bool, string) {
		svc, _, err := cli.ServiceInspectWithRaw(ctx, db, swarm.ServiceInspectOptions{})
		if err != nil {
			return false, err.Error()
		}
		var names []string
		for _, att := range svc.Spec.TaskTemplate.Networks {
			n, err := cli.NetworkInspect(ctx, att.Target, network.InspectOptions{})
			if err != nil {
				return false, err.Error()
			}
			names = append(names, n.Name)
		}
		return slices.Equal(names, []string{"swarmsec-" + a.stack + "-db"}), fmt.Sprintf("db networks %v", names)
	}
	swarmtest.Poll(ctx, t, time.Minute, onlyManaged)
	swarmtest.WaitServiceConverged(ctx, t, cli, db)

	// `docker service update --network-add <stack net> db`, by hand.
	svc, _, err := cli.ServiceInspectWithRaw(ctx, db, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := svc.Spec
	stackNet, err := cli.NetworkInspect(ctx, a.net, network.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	netID := stackNet.ID
	spec.TaskTemplate.Networks = append(spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: netID})
	if _, err := cli.ServiceUpdate(ctx, svc.ID, svc.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// Events say "look again": the drift is gone within seconds, not at
	// the next resync (an hour away).
	swarmtest.Poll(ctx, t, 20*time.Second, onlyManaged)
	t.Logf("manual drift reverted in %s", time.Since(start).Round(10*time.Millisecond))

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("controller: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("the controller did not stop within 10s of cancel")
	}
	// Leave the stack as declared so cleanup can remove everything.
	_ = r.SetPolicies(nil)
	restore, cancelRestore := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancelRestore()
	if _, _, err := r.Converge(restore, nil); err != nil {
		t.Errorf("restore: %v", err)
	}
}
