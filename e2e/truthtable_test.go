//go:build e2e

package e2e

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"go.yaml.in/yaml/v3"

	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// The truth table, in the manner of the Kubernetes network policy
// conformance tests: three stacks x, y and z of three services a, b and c,
// every ordered pair probed from inside the tasks (and every service's
// access to the outside target), compared with what swarmsec's semantics
// say. The expected matrix is computed here, from the policies the case
// writes, by a model of those semantics (expect), never by swarmsec's own
// compiler.
//
// The services are made once and reused: each case writes its manifests,
// runs `swarmsec apply --wait` as a user would, checks, and resets
// by applying an empty manifest directory, which must give every service
// back the networks and ports it had.

const (
	// Published ports of x_a: 18081 through the routing mesh (ingress
	// mode, which does not answer without IPVS) and 18082 in host mode.
	portIngress = 18081
	portHost    = 18082
	// outside is the matrix column of the harness's Outside target.
	outside = "outside"
	// labelManaged marks the networks swarmsec manages.
	labelManaged = "swarmsec.io/managed"
	// labelStack is the label docker stack deploy puts on a stack's
	// services and networks.
	labelStack = "com.docker.stack.namespace"
)

// ttService is one service of the truth table as the test declares it.
type ttService struct {
	name, stack, app string
	labels           map[string]string  // service labels selectors see (without the implicit one)
	ports            []swarm.PortConfig // published ports as created
	node             string             // hostname it is placed on
}

// selectorLabels are the labels a selector matches against: the service's
// plus the implicit swarmsec.io/service=<name>.
func (s ttService) selectorLabels() map[string]string {
	l := maps.Clone(s.labels)
	l["swarmsec.io/service"] = s.name
	return l
}

// The manifest shapes the cases write, marshaled to YAML. They are the
// test's own, so that the expected matrix does not depend on swarmsec's
// types.
type (
	selector struct {
		MatchLabels      map[string]string `yaml:"matchLabels,omitempty"`
		MatchExpressions []requirement     `yaml:"matchExpressions,omitempty"`
	}
	requirement struct {
		Key      string   `yaml:"key"`
		Operator string   `yaml:"operator"`
		Values   []string `yaml:"values,omitempty"`
	}
	peer struct {
		ServiceSelector *selector `yaml:"serviceSelector,omitempty"`
		IPBlock         *ipBlock  `yaml:"ipBlock,omitempty"`
	}
	ipBlock struct {
		CIDR string `yaml:"cidr"`
	}
	ingressRule struct {
		From []peer `yaml:"from"`
	}
	egressRule struct {
		To []peer `yaml:"to"`
	}
	publishedPort struct {
		Port int    `yaml:"port"`
		Mode string `yaml:"mode,omitempty"`
	}
	policySpec struct {
		ServiceSelector selector        `yaml:"serviceSelector"`
		PolicyTypes     []string        `yaml:"policyTypes,omitempty"`
		Ingress         []ingressRule   `yaml:"ingress,omitempty"`
		Egress          []egressRule    `yaml:"egress,omitempty"`
		Publish         []publishedPort `yaml:"publish,omitempty"`
	}
	policy struct {
		APIVersion string     `yaml:"apiVersion"`
		Kind       string     `yaml:"kind"`
		Metadata   metadata   `yaml:"metadata"`
		Spec       policySpec `yaml:"spec"`
	}
	metadata struct {
		Name string `yaml:"name"`
	}
)

func newPolicy(name string, spec policySpec) policy {
	return policy{APIVersion: "swarmsec.io/v1", Kind: "NetworkPolicy", Metadata: metadata{name}, Spec: spec}
}

// labelSel is a selector of matchLabels from key, value pairs.
func labelSel(kv ...string) selector {
	s := selector{MatchLabels: map[string]string{}}
	for i := 0; i+1 < len(kv); i += 2 {
		s.MatchLabels[kv[i]] = kv[i+1]
	}
	return s
}

// exprSel is a selector of matchExpressions.
func exprSel(reqs ...requirement) selector { return selector{MatchExpressions: reqs} }

func req(key, op string, values ...string) requirement {
	return requirement{Key: key, Operator: op, Values: values}
}

func from(sels ...selector) ingressRule {
	var r ingressRule
	for _, s := range sels {
		r.From = append(r.From, peer{ServiceSelector: &s})
	}
	return r
}

func to(sels ...selector) egressRule {
	var r egressRule
	for _, s := range sels {
		r.To = append(r.To, peer{ServiceSelector: &s})
	}
	return r
}

// toAnywhere is the egress rule that keeps access outside the cluster.
func toAnywhere() egressRule { return egressRule{To: []peer{{IPBlock: &ipBlock{CIDR: "0.0.0.0/0"}}}} }

// matches implements label selectors: every matchLabels pair and every
// expression must hold; NotIn and DoesNotExist hold for a missing key.
func (s selector) matches(labels map[string]string) bool {
	for k, v := range s.MatchLabels {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	for _, r := range s.MatchExpressions {
		v, ok := labels[r.Key]
		switch r.Operator {
		case "In":
			if !ok || !slices.Contains(r.Values, v) {
				return false
			}
		case "NotIn":
			if ok && slices.Contains(r.Values, v) {
				return false
			}
		case "Exists":
			if !ok {
				return false
			}
		case "DoesNotExist":
			if ok {
				return false
			}
		default:
			panic("unknown operator " + r.Operator)
		}
	}
	return true
}

// restrictsEgress: policyTypes as given, else Ingress plus Egress when
// there are egress rules.
func (p policySpec) restrictsEgress() bool {
	if len(p.PolicyTypes) > 0 {
		return slices.Contains(p.PolicyTypes, "Egress")
	}
	return len(p.Egress) > 0
}

// allowsOutside: a policy restricting egress keeps outside access only with
// an ipBlock 0.0.0.0/0 peer.
func (p policySpec) allowsOutside() bool {
	if !p.restrictsEgress() {
		return true
	}
	for _, r := range p.Egress {
		for _, pe := range r.To {
			if pe.IPBlock != nil && pe.IPBlock.CIDR == "0.0.0.0/0" {
				return true
			}
		}
	}
	return false
}

// peers returns the services named as peers by the policy's rules.
func (p policySpec) peers(services []ttService) []string {
	var sels []selector
	for _, r := range p.Ingress {
		for _, pe := range r.From {
			if pe.ServiceSelector != nil {
				sels = append(sels, *pe.ServiceSelector)
			}
		}
	}
	for _, r := range p.Egress {
		for _, pe := range r.To {
			if pe.ServiceSelector != nil {
				sels = append(sels, *pe.ServiceSelector)
			}
		}
	}
	var out []string
	for _, s := range services {
		if slices.ContainsFunc(sels, func(sel selector) bool { return sel.matches(s.selectorLabels()) }) {
			out = append(out, s.name)
		}
	}
	return out
}

// expectation is what the semantics say the cluster looks like under a set
// of policies.
type expectation struct {
	isolated map[string]bool
	edges    map[[2]string]bool // sorted pairs of services that may talk
	outside  map[string]bool    // service keeps access outside the cluster
	ports    map[string][]swarm.PortConfig
}

func edgeKey(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

// expect computes the expectation from the semantics:
//   - a service selected by a policy is isolated;
//   - two services may talk when at least one is isolated and a policy
//     selecting one of them names the other as a peer (either direction:
//     overlay networks are symmetric); two non-isolated services keep
//     their shared network;
//   - an isolated service loses outside access when a policy selecting it
//     restricts egress without a 0.0.0.0/0 peer, unless it keeps a
//     published port (which needs a gateway);
//   - an isolated service keeps only the published ports a selecting
//     policy lists, in the mode listed (host by default).
func expect(services []ttService, policies []policy) *expectation {
	e := &expectation{isolated: map[string]bool{}, edges: map[[2]string]bool{}, outside: map[string]bool{}, ports: map[string][]swarm.PortConfig{}}
	selecting := map[string][]policySpec{}
	for _, p := range policies {
		peers := p.Spec.peers(services)
		for _, s := range services {
			if !p.Spec.ServiceSelector.matches(s.selectorLabels()) {
				continue
			}
			e.isolated[s.name] = true
			selecting[s.name] = append(selecting[s.name], p.Spec)
			for _, q := range peers {
				if q != s.name {
					e.edges[edgeKey(s.name, q)] = true
				}
			}
		}
	}
	for _, s := range services {
		if !e.isolated[s.name] {
			e.outside[s.name] = true
			e.ports[s.name] = s.ports
			continue
		}
		allowed := map[int]string{}
		out := true
		for _, p := range selecting[s.name] {
			out = out && p.allowsOutside()
			for _, pp := range p.Publish {
				allowed[pp.Port] = cmp.Or(pp.Mode, "host")
			}
		}
		var kept []swarm.PortConfig
		for _, pc := range s.ports {
			if mode, ok := allowed[int(pc.PublishedPort)]; ok {
				pc.PublishMode = swarm.PortConfigPublishMode(mode)
				kept = append(kept, pc)
			}
		}
		e.ports[s.name] = kept
		e.outside[s.name] = out || len(kept) > 0
	}
	return e
}

// reach says whether from may reach to (a service name or outside).
func (e *expectation) reach(from, to string) bool {
	switch {
	case to == outside:
		return e.outside[from]
	case from == to:
		return true // a service reaches its own tasks on any network it is on
	case e.isolated[from] || e.isolated[to]:
		return e.edges[edgeKey(from, to)]
	}
	return true // both on the shared network
}

// truthTable holds the services of the test and what they had at the start.
type truthTable struct {
	services []ttService
	// original networks of every service: network name -> aliases.
	original map[string]map[string][]string
}

func (tt *truthTable) names() []string {
	var out []string
	for _, s := range tt.services {
		out = append(out, s.name)
	}
	return out
}

// fastUpdates shortens the monitor period of rolling updates (Docker's
// default is 5 s per task): every case updates services twice.
func fastUpdates() swarmtest.ServiceOpt {
	return func(s *swarm.ServiceSpec) {
		s.UpdateConfig = &swarm.UpdateConfig{Parallelism: 1, Monitor: time.Second, Order: swarm.UpdateOrderStopFirst}
	}
}

// TestTruthTable checks swarmsec's reachability matrix case by case.
func TestTruthTable(t *testing.T) {
	ctx := context.Background()
	m := manager()
	if testCluster.EncryptedCrossNode {
		t.Logf("probed services are spread over the workers (%s)", testCluster.EncryptionReport)
	} else {
		t.Logf("probed services all run on %s: encrypted overlay traffic between nodes is dropped on this machine (%s)",
			testCluster.ProbedNode(0).Hostname, testCluster.EncryptionReport)
	}

	tt := &truthTable{original: map[string]map[string][]string{}}
	swarmtest.CreateNetwork(ctx, t, m, "shared")
	for _, stack := range []string{"x", "y", "z"} {
		swarmtest.CreateNetwork(ctx, t, m, stack+"_default", swarmtest.WithNetworkLabels(map[string]string{labelStack: stack}))
	}
	tiers := map[string]string{"a": "front", "b": "back"} // c has no tier label
	for _, stack := range []string{"x", "y", "z"} {
		for _, app := range []string{"a", "b", "c"} {
			s := ttService{name: stack + "_" + app, stack: stack, app: app, labels: map[string]string{labelStack: stack, "app": app}}
			if tier, ok := tiers[app]; ok {
				s.labels["tier"] = tier
			}
			if s.name == "x_a" {
				s.ports = []swarm.PortConfig{
					{Protocol: swarm.PortConfigProtocolTCP, PublishedPort: portIngress, TargetPort: swarmtest.AppPort, PublishMode: swarm.PortConfigPublishModeIngress},
					{Protocol: swarm.PortConfigProtocolTCP, PublishedPort: portHost, TargetPort: swarmtest.AppPort, PublishMode: swarm.PortConfigPublishModeHost},
				}
			}
			tt.services = append(tt.services, s)
		}
	}
	// Cleanups run last first: managed networks a failed case left go
	// after the services, before the networks above.
	t.Cleanup(func() { removeManagedNetworks(context.WithoutCancel(ctx), t) })
	for i := range tt.services {
		s := &tt.services[i]
		s.node = testCluster.ProbedNode(i).Hostname
		tt.createService(ctx, t, *s, testCluster.PlaceProbed(i))
	}
	for _, s := range tt.services {
		swarmtest.WaitServiceConverged(ctx, t, m, s.name)
	}
	for _, s := range tt.services {
		tt.original[s.name] = tt.readNetworks(ctx, t, s.name)
	}

	t.Run("before any policy", func(t *testing.T) {
		tt.check(ctx, t, nil, "")
		// The host-mode port answers before any policy.
		tt.probeFromOutside(ctx, t, tt.services[0].node, portHost, true)
	})

	cases := []struct {
		name     string
		policies []policy
	}{
		{"default deny", []policy{
			// Stack x isolated both ways: its services reach nothing but
			// themselves, lose outside access and x_a's published ports.
			newPolicy("deny-x", policySpec{ServiceSelector: labelSel(labelStack, "x"), PolicyTypes: []string{"Ingress", "Egress"}}),
		}},
		{"allow from one service", []policy{
			newPolicy("x-b-from-y-a", policySpec{
				ServiceSelector: labelSel(labelStack, "x", "app", "b"),
				Ingress:         []ingressRule{from(labelSel(labelStack, "y", "app", "a"))},
			}),
		}},
		{"allow from a whole stack", []policy{
			// x_c by its implicit label, open to stack y.
			newPolicy("x-c-from-stack-y", policySpec{
				ServiceSelector: labelSel("swarmsec.io/service", "x_c"),
				Ingress:         []ingressRule{from(labelSel(labelStack, "y"))},
			}),
			// Stack z talks within itself only.
			newPolicy("z-internal", policySpec{
				ServiceSelector: labelSel(labelStack, "z"),
				Ingress:         []ingressRule{from(labelSel(labelStack, "z"))},
			}),
		}},
		{"matchExpressions", []policy{
			// Selects x_b, x_c, y_b, y_c (c has no tier: NotIn holds).
			newPolicy("expressions", policySpec{
				ServiceSelector: exprSel(req(labelStack, "In", "x", "y"), req("tier", "NotIn", "front")),
				// From z_c: no tier, stack z.
				Ingress: []ingressRule{from(exprSel(req("tier", "DoesNotExist"), req(labelStack, "In", "z")))},
				// To x_a, y_a, z_a: a tier, and not app b.
				Egress: []egressRule{to(exprSel(req("tier", "Exists"), req("app", "NotIn", "b")))},
			}),
		}},
		{"two policies select one service", []policy{
			newPolicy("y-a-from-x-a", policySpec{
				ServiceSelector: labelSel(labelStack, "y", "app", "a"),
				Ingress:         []ingressRule{from(labelSel(labelStack, "x", "app", "a"))},
			}),
			newPolicy("y-a-from-z-c", policySpec{
				ServiceSelector: labelSel("swarmsec.io/service", "y_a"),
				Ingress:         []ingressRule{from(labelSel("swarmsec.io/service", "z_c"))},
			}),
		}},
		{"egress rules", []policy{
			// Egress only: x_a may reach y_b and the world; its published
			// ports go (none listed).
			newPolicy("x-a-egress", policySpec{
				ServiceSelector: labelSel("swarmsec.io/service", "x_a"),
				PolicyTypes:     []string{"Egress"},
				Egress:          []egressRule{to(labelSel(labelStack, "y", "app", "b")), toAnywhere()},
			}),
		}},
		{"egress without an ipBlock cuts outside access", []policy{
			// Policy types default to Ingress and Egress: y_c reaches stack
			// z and nothing outside.
			newPolicy("y-c-to-stack-z", policySpec{
				ServiceSelector: labelSel("swarmsec.io/service", "y_c"),
				Egress:          []egressRule{to(labelSel(labelStack, "z"))},
			}),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Cleanup(func() { tt.reset(ctx, t) })
			dir := writeManifests(t, tc.policies...)
			tt.apply(ctx, t, dir)
			tt.check(ctx, t, tc.policies, dir)
		})
	}

	t.Run("published port in host mode", func(t *testing.T) {
		t.Cleanup(func() { tt.reset(ctx, t) })
		policies := []policy{newPolicy("x-a-publish", policySpec{
			ServiceSelector: labelSel("swarmsec.io/service", "x_a"),
			Ingress:         []ingressRule{from(labelSel(labelStack, "x"))},
			// 18081 was published through the routing mesh: it stays, in
			// host mode (the default); 18082 is not listed and goes.
			Publish: []publishedPort{{Port: portIngress}},
		})}
		dir := writeManifests(t, policies...)
		tt.apply(ctx, t, dir)
		tt.check(ctx, t, policies, dir)
		node := testCluster.Node(tt.services[0].node)
		tt.probeFromOutside(ctx, t, node.Hostname, portIngress, true)
		tt.probeFromOutside(ctx, t, node.Hostname, portHost, false)
		// And from this process, through the bridge: a task of x_a answers.
		addr := net.JoinHostPort(node.IP, strconv.Itoa(portIngress))
		var body string
		swarmtest.Poll(ctx, t, 30*time.Second, func() (bool, string) {
			var err error
			body, err = httpGet(ctx, "http://"+addr+"/")
			return err == nil, fmt.Sprint(err)
		})
		if want := taskHostnames(ctx, t, "x_a"); !slices.Contains(want, body) {
			t.Errorf("GET http://%s/ answered %q, want one of x_a's task hostnames %v", addr, body, want)
		} else {
			t.Logf("GET http://%s/ answered by x_a's task %s", addr, body)
		}
	})

	t.Run("policy deleted", func(t *testing.T) {
		t.Cleanup(func() { tt.reset(ctx, t) })
		denyX := newPolicy("deny-x", policySpec{ServiceSelector: labelSel(labelStack, "x"), PolicyTypes: []string{"Ingress", "Egress"}})
		yb := newPolicy("y-b-from-z-a", policySpec{
			ServiceSelector: labelSel(labelStack, "y", "app", "b"),
			Ingress:         []ingressRule{from(labelSel(labelStack, "z", "app", "a"))},
		})
		dir := writeManifests(t, denyX, yb)
		tt.apply(ctx, t, dir)
		tt.check(ctx, t, []policy{denyX, yb}, dir)

		t.Log("deleting deny-x: stack x gets back its networks and ports")
		if err := os.Remove(filepath.Join(dir, "deny-x.yaml")); err != nil {
			t.Fatal(err)
		}
		tt.apply(ctx, t, dir)
		tt.check(ctx, t, []policy{yb}, dir)
		for _, name := range []string{"x_a", "x_b", "x_c"} {
			tt.checkRestored(ctx, t, name)
		}

		t.Log("deleting y-b-from-z-a: the stacks are as they were declared")
		tt.reset(ctx, t)
		tt.check(ctx, t, nil, dir)
	})

	t.Run("controller", func(t *testing.T) {
		// Cleanups run last first: the controller stops, then the reset.
		t.Cleanup(func() { tt.reset(ctx, t) })
		xns := newPolicy("x-namespace", policySpec{
			ServiceSelector: labelSel(labelStack, "x"),
			Ingress:         []ingressRule{from(labelSel(labelStack, "x"))},
		})
		dir := writeManifests(t, xns)
		ctl := startController(ctx, t, dir)
		ctl.waitConverged(ctx, t, dir, tt.names())
		tt.check(ctx, t, []policy{xns}, dir)

		t.Run("new service is isolated as it appears", func(t *testing.T) {
			xd := ttService{name: "x_d", stack: "x", app: "d", labels: map[string]string{labelStack: "x", "app": "d"}}
			i := len(tt.services)
			xd.node = testCluster.ProbedNode(i).Hostname
			start := time.Now()
			tt.createService(ctx, t, xd, testCluster.PlaceProbed(i))
			// The controller has no resync within the test (--resync 10m):
			// only the service's create event can set it off.
			swarmtest.Poll(ctx, t, time.Minute, func() (bool, string) {
				nets, err := serviceNetworks(ctx, xd.name)
				if err != nil {
					return false, err.Error()
				}
				for _, n := range nets {
					if n.Labels[labelManaged] != "true" {
						return false, "x_d is on " + n.Name
					}
				}
				return len(nets) > 0, "x_d is on no network"
			})
			t.Logf("x_d isolated %s after it was created", time.Since(start).Round(100*time.Millisecond))
			ctl.waitConverged(ctx, t, dir, append(tt.names(), xd.name))
			tt.checkWith(ctx, t, append(slices.Clone(tt.services), xd), []policy{xns}, dir)
		})

		t.Run("scaled-up service keeps its isolation", func(t *testing.T) {
			yb := newPolicy("y-b-from-x-a", policySpec{
				ServiceSelector: labelSel(labelStack, "y", "app", "b"),
				Ingress:         []ingressRule{from(labelSel("swarmsec.io/service", "x_a"))},
			})
			// A manifest added to the watched directory.
			writeManifest(t, dir, yb)
			ctl.waitConverged(ctx, t, dir, tt.names())
			scale(ctx, t, "y_b", 3)
			t.Cleanup(func() { scale(context.WithoutCancel(ctx), t, "y_b", 1) })
			ctl.waitConverged(ctx, t, dir, tt.names())
			// Every task of y_b, the new ones too, is on managed networks only.
			tasks, err := swarmtest.ServiceTasks(ctx, manager(), "y_b")
			if err != nil {
				t.Fatal(err)
			}
			running := 0
			for _, task := range tasks {
				if task.DesiredState != swarm.TaskStateRunning {
					continue
				}
				running++
				for _, a := range task.NetworksAttachments {
					if a.Network.Spec.Name == "ingress" {
						continue
					}
					if a.Network.Spec.Labels[labelManaged] != "true" {
						t.Errorf("task %d of y_b is attached to %s, not a managed network", task.Slot, a.Network.Spec.Name)
					}
				}
			}
			if running != 3 {
				t.Errorf("%d tasks of y_b running, want 3", running)
			}
			// --all: every task of y_b must answer, or none.
			tt.checkWith(ctx, t, tt.services, []policy{xns, yb}, dir, swarmtest.WithAllAddresses())
		})
	})
}

// createService creates s on its stack's network (alias: its short name)
// and the shared network, with its labels and ports.
func (tt *truthTable) createService(ctx context.Context, t *testing.T, s ttService, opts ...swarmtest.ServiceOpt) {
	t.Helper()
	opts = append(opts,
		swarmtest.WithName(s.name),
		swarmtest.WithServiceLabels(s.labels),
		swarmtest.WithNetwork(s.stack+"_default", s.app),
		swarmtest.WithNetwork("shared"),
		fastUpdates(),
	)
	for _, p := range s.ports {
		opts = append(opts, swarmtest.WithPublishedPort(p.PublishedPort, p.TargetPort, p.PublishMode))
	}
	createService(ctx, t, opts...)
}

// writeManifests writes each policy to <name>.yaml in a new directory.
func writeManifests(t *testing.T, policies ...policy) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range policies {
		writeManifest(t, dir, p)
	}
	return dir
}

func writeManifest(t *testing.T, dir string, p policy) {
	t.Helper()
	b, err := yaml.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	// Write then rename, as editors do: a watcher never reads half a file.
	path := filepath.Join(dir, p.Metadata.Name+".yaml")
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s:\n%s", filepath.Base(path), b)
}

// apply runs `swarmsec apply --wait` on dir and checks that
// `swarmsec plan` finds nothing left to do.
func (tt *truthTable) apply(ctx context.Context, t *testing.T, dir string) {
	t.Helper()
	start := time.Now()
	args := []string{"apply", "--manifests", dir, "--wait"}
	if entries, _ := os.ReadDir(dir); len(entries) == 0 {
		// Deleting every policy is what the user means here.
		args = append(args, "--allow-empty")
	}
	stdout, stderr, code := RunSwarmsec(ctx, t, args...)
	if code != 0 {
		t.Fatalf("swarmsec apply: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	t.Logf("swarmsec apply took %s: %s", time.Since(start).Round(100*time.Millisecond), strings.TrimSpace(stdout))
	if stdout, stderr, code := RunSwarmsec(ctx, t, "plan", "--manifests", dir); code != 0 {
		t.Errorf("swarmsec plan after apply: exit %d, want 0 (in sync)\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

// reset applies an empty manifest directory: every service must get back
// the networks and ports it had, and no managed network may remain.
func (tt *truthTable) reset(ctx context.Context, t *testing.T) {
	t.Helper()
	ctx = context.WithoutCancel(ctx)
	tt.apply(ctx, t, t.TempDir())
	for _, s := range tt.services {
		tt.checkRestored(ctx, t, s.name)
	}
	if left := managedNetworks(ctx, t); len(left) > 0 {
		t.Errorf("managed networks left after applying no policy: %v", left)
	}
}

// checkRestored checks that a service has exactly the networks (with
// aliases) and published ports it was created with.
func (tt *truthTable) checkRestored(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	got := tt.readNetworks(ctx, t, name)
	if want := tt.original[name]; !mapsEqualFunc(got, want) {
		t.Errorf("%s is on %v, want its original networks %v", name, got, want)
	}
	i := slices.IndexFunc(tt.services, func(s ttService) bool { return s.name == name })
	if got, want := servicePorts(ctx, t, name), portStrings(tt.services[i].ports); !slices.Equal(got, want) {
		t.Errorf("%s publishes %v, want its original ports %v", name, got, want)
	}
}

func mapsEqualFunc(a, b map[string][]string) bool {
	return maps.EqualFunc(a, b, slices.Equal[[]string])
}

// readNetworks returns the networks of a service's spec by name, with the
// aliases on each.
func (tt *truthTable) readNetworks(ctx context.Context, t *testing.T, name string) map[string][]string {
	t.Helper()
	svc, _, err := manager().ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, a := range svc.Spec.TaskTemplate.Networks {
		n, err := manager().NetworkInspect(ctx, a.Target, network.InspectOptions{})
		if err != nil {
			t.Fatalf("%s: network %s: %v", name, a.Target, err)
		}
		aliases := slices.Clone(a.Aliases)
		slices.Sort(aliases)
		out[n.Name] = aliases
	}
	return out
}

// serviceNetworks inspects the networks of a service's spec.
func serviceNetworks(ctx context.Context, name string) ([]network.Inspect, error) {
	svc, _, err := manager().ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
	if err != nil {
		return nil, err
	}
	var out []network.Inspect
	for _, a := range svc.Spec.TaskTemplate.Networks {
		n, err := manager().NetworkInspect(ctx, a.Target, network.InspectOptions{})
		if err != nil {
			return nil, fmt.Errorf("%s: network %s: %w", name, a.Target, err)
		}
		out = append(out, n)
	}
	return out, nil
}

// servicePorts lists a service's published ports as "published:target/proto
// mode", sorted.
func servicePorts(ctx context.Context, t *testing.T, name string) []string {
	t.Helper()
	svc, _, err := manager().ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ports []swarm.PortConfig
	if svc.Spec.EndpointSpec != nil {
		ports = svc.Spec.EndpointSpec.Ports
	}
	return portStrings(ports)
}

func portStrings(ports []swarm.PortConfig) []string {
	out := []string{}
	for _, p := range ports {
		out = append(out, fmt.Sprintf("%d:%d/%s %s", p.PublishedPort, p.TargetPort, cmp.Or(p.Protocol, "tcp"), cmp.Or(p.PublishMode, "ingress")))
	}
	slices.Sort(out)
	return out
}

// managedNetworks lists the names of the networks swarmsec manages.
func managedNetworks(ctx context.Context, t *testing.T) []string {
	t.Helper()
	nets, err := manager().NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", labelManaged+"=true"))})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range nets {
		out = append(out, n.Name)
	}
	slices.Sort(out)
	return out
}

// removeManagedNetworks removes what swarmsec left after a failed case, once
// the services are gone.
func removeManagedNetworks(ctx context.Context, t *testing.T) {
	nets, err := manager().NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("label", labelManaged+"=true"))})
	if err != nil {
		t.Errorf("list managed networks: %v", err)
		return
	}
	for _, n := range nets {
		if err := swarmtest.RemoveNetworkE(ctx, manager(), n.ID); err != nil {
			t.Errorf("remove managed network %s: %v", n.Name, err)
		}
	}
}

// check compares the cluster with what the policies should give: each
// service's networks and ports, then the reachability matrix.
func (tt *truthTable) check(ctx context.Context, t *testing.T, policies []policy, dir string) {
	t.Helper()
	tt.checkWith(ctx, t, tt.services, policies, dir)
}

func (tt *truthTable) checkWith(ctx context.Context, t *testing.T, services []ttService, policies []policy, dir string, opts ...swarmtest.ProbeOpt) {
	t.Helper()
	e := expect(services, policies)
	var isolated []string
	for _, s := range services {
		if e.isolated[s.name] {
			isolated = append(isolated, s.name)
		}
	}
	t.Logf("isolated: %v", isolated)
	specOK := tt.checkSpecs(ctx, t, services, e)
	m := tt.checkMatrix(ctx, t, services, e, opts...)
	if (!specOK || len(m.Mismatches()) > 0) && dir != "" {
		stdout, stderr, code := RunSwarmsec(ctx, t, "plan", "--manifests", dir)
		t.Logf("swarmsec plan --manifests %s: exit %d\n%s%s", dir, code, stdout, stderr)
	}
}

// checkSpecs checks every service's networks and published ports: an
// isolated service is on managed, encrypted, non-attachable overlay
// networks only and publishes the ports its policies list; another keeps
// its own networks (and may be on managed ones as a peer) and ports.
func (tt *truthTable) checkSpecs(ctx context.Context, t *testing.T, services []ttService, e *expectation) bool {
	t.Helper()
	ok := true
	errorf := func(format string, args ...any) {
		t.Helper()
		ok = false
		t.Errorf(format, args...)
	}
	for _, s := range services {
		nets, err := serviceNetworks(ctx, s.name)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, n := range nets {
			names = append(names, n.Name)
			managed := n.Labels[labelManaged] == "true"
			_, encrypted := n.Options["encrypted"]
			if !e.isolated[s.name] && !managed {
				continue
			}
			if !managed || !encrypted || n.Attachable || n.Driver != "overlay" {
				errorf("%s (isolated %t) is on network %s: managed %t, encrypted %t, attachable %t, driver %s; want a managed, encrypted, non-attachable overlay",
					s.name, e.isolated[s.name], n.Name, managed, encrypted, n.Attachable, n.Driver)
			}
		}
		if !e.isolated[s.name] {
			for name := range tt.original[s.name] {
				if !slices.Contains(names, name) {
					errorf("%s is not isolated but lost its network %s (on %v)", s.name, name, names)
				}
			}
		} else if len(nets) == 0 {
			errorf("%s is isolated and on no network at all", s.name)
		}
		if got, want := servicePorts(ctx, t, s.name), portStrings(e.ports[s.name]); !slices.Equal(got, want) {
			errorf("%s publishes %v, want %v", s.name, got, want)
		}
	}
	return ok
}

// checkMatrix probes every pair of services (and each service's access to
// the outside target) and compares with e. Cells that differ are probed
// again for a while (DNS and overlay state settle a moment after the tasks
// start); those that still differ fail the test. Both matrices are logged:
// each cell shows what was seen, and "!=" what was expected where it
// differs.
func (tt *truthTable) checkMatrix(ctx context.Context, t *testing.T, services []ttService, e *expectation, opts ...swarmtest.ProbeOpt) *swarmtest.Matrix {
	t.Helper()
	var from []string
	for _, s := range services {
		from = append(from, s.name)
	}
	targets := append(slices.Clone(from), outside)
	probeOpts := testCluster.ProbeOpts(opts...)
	addrOf := func(to string) string {
		if to == outside {
			// One address: --all changes nothing.
			return testCluster.Outside.Addr()
		}
		return swarmtest.TasksAddr(to)
	}
	probe := func(ctx context.Context, from, to string) (bool, string, error) {
		return swarmtest.ProbeE(ctx, manager(), from, addrOf(to), probeOpts...)
	}
	// The first look: one exec per row, every target probed at once from
	// one task; cells that differ are probed again one by one below.
	probeRow := func(ctx context.Context, from string, to []string) (map[string]swarmtest.ProbeResult, error) {
		addrs := make([]string, len(to))
		for i, t := range to {
			addrs[i] = addrOf(t)
		}
		res, err := swarmtest.ProbeEachE(ctx, manager(), from, addrs, probeOpts...)
		if err != nil {
			return nil, err
		}
		out := map[string]swarmtest.ProbeResult{}
		for i, t := range to {
			out[t] = res[addrs[i]]
		}
		return out, nil
	}
	start := time.Now()
	m := swarmtest.RunMatrixByRows(ctx, from, targets, e.reach, probeRow, 6)
	first := len(m.Mismatches())
	_ = swarmtest.PollE(ctx, 30*time.Second, func() (bool, string) {
		mm := m.Mismatches()
		if len(mm) == 0 {
			return true, ""
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		sem := make(chan struct{}, 6)
		for _, p := range mm {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				ok, out, err := probe(ctx, p.From, p.To)
				mu.Lock()
				m.Cells[p] = swarmtest.Cell{Expected: e.reach(p.From, p.To), Actual: ok, Output: out, Err: err}
				mu.Unlock()
			}()
		}
		wg.Wait()
		return len(m.Mismatches()) == 0, fmt.Sprintf("%d cells differ", len(m.Mismatches()))
	})
	mm := m.Mismatches()
	if len(mm) > 0 {
		t.Errorf("reachability differs from expected in %d of %d cells (%d on the first probe):", len(mm), len(m.Cells), first)
	} else {
		t.Logf("reachability as expected (%d cells, %s; %d settled on a second look):", len(m.Cells), time.Since(start).Round(100*time.Millisecond), first)
	}
	for _, line := range strings.Split(strings.TrimSuffix(m.String(), "\n"), "\n") {
		t.Log(line)
	}
	if len(mm) > 0 {
		// The expected matrix on its own, for reading side by side.
		t.Log("expected:")
		for _, line := range strings.Split(strings.TrimSuffix(expectedMatrix(from, targets, e), "\n"), "\n") {
			t.Log(line)
		}
	}
	return m
}

// expectedMatrix renders what e expects, in Matrix.String's layout.
func expectedMatrix(from, to []string, e *expectation) string {
	m := &swarmtest.Matrix{From: from, To: to, Cells: map[swarmtest.Pair]swarmtest.Cell{}}
	for _, f := range from {
		for _, t := range to {
			r := e.reach(f, t)
			m.Cells[swarmtest.Pair{From: f, To: t}] = swarmtest.Cell{Expected: r, Actual: r}
		}
	}
	return m.String()
}

// probeFromOutside probes a published port of a node from the outside
// target (a container on the nodes' bridge network), polling until the
// result is the one wanted.
func (tt *truthTable) probeFromOutside(ctx context.Context, t *testing.T, hostname string, port int, want bool) {
	t.Helper()
	node := testCluster.Node(hostname)
	addr := net.JoinHostPort(node.IP, strconv.Itoa(port))
	var out string
	err := swarmtest.PollE(ctx, 30*time.Second, func() (bool, string) {
		code, o, err := swarmtest.Exec(ctx, testCluster.Host, testCluster.Outside.Container, "/testapp", "probe", addr)
		out = o
		if err != nil {
			return false, err.Error()
		}
		return (code == 0) == want, fmt.Sprintf("exit %d: %s", code, strings.TrimSpace(o))
	})
	if err != nil {
		t.Errorf("port %d on %s from outside: want answering %t: %v", port, hostname, want, err)
		return
	}
	t.Logf("port %d on %s (%s) from outside: answering %t: %s", port, hostname, addr, want, strings.TrimSpace(out))
}

// taskHostnames returns the hostnames of a service's tasks (their container
// ID prefix).
func taskHostnames(ctx context.Context, t *testing.T, service string) []string {
	t.Helper()
	tasks, err := swarmtest.ServiceTasks(ctx, manager(), service)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, task := range tasks {
		if cs := task.Status.ContainerStatus; cs != nil && len(cs.ContainerID) >= 12 {
			out = append(out, cs.ContainerID[:12])
		}
	}
	return out
}

// scale sets a replicated service's replica count and waits for it.
func scale(ctx context.Context, t *testing.T, service string, replicas uint64) {
	t.Helper()
	err := swarmtest.PollE(ctx, time.Minute, func() (bool, string) {
		svc, _, err := manager().ServiceInspectWithRaw(ctx, service, swarm.ServiceInspectOptions{})
		if err != nil {
			return false, err.Error()
		}
		svc.Spec.Mode.Replicated.Replicas = &replicas
		// A stale version (swarmsec updating the service meanwhile) fails:
		// read again and retry.
		if _, err := manager().ServiceUpdate(ctx, svc.ID, svc.Version, svc.Spec, swarm.ServiceUpdateOptions{}); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	if err != nil {
		t.Fatalf("scale %s to %d: %v", service, replicas, err)
	}
	swarmtest.WaitServiceConverged(ctx, t, manager(), service)
}

// controller is a `swarmsec run` in the background.
type controller struct {
	cmd  *exec.Cmd
	url  string
	log  string
	done chan struct{}
	err  error
}

// startController runs `swarmsec run --manifests dir` against the
// manager, with no periodic resync during the test (only manifest changes
// and Docker events set a pass off), waits until /readyz answers, and
// stops it with SIGTERM when the test ends.
func startController(ctx context.Context, t *testing.T, dir string) *controller {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "swarmsec")
	if err := swarmtest.GoBuild(ctx, bin, "./cmd/swarmsec"); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	ctl := &controller{url: "http://" + listen, log: filepath.Join(t.TempDir(), "controller.log"), done: make(chan struct{})}
	logFile, err := os.Create(ctl.log)
	if err != nil {
		t.Fatal(err)
	}
	ctl.cmd = exec.Command(bin, "run", "--manifests", dir, "--resync", "10m", "--listen", listen, "--log-format", "text")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_") {
			ctl.cmd.Env = append(ctl.cmd.Env, kv)
		}
	}
	ctl.cmd.Env = append(ctl.cmd.Env, "DOCKER_HOST=unix://"+testCluster.Manager().Socket)
	ctl.cmd.Stdout, ctl.cmd.Stderr = logFile, logFile
	if err := ctl.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	go func() {
		ctl.err = ctl.cmd.Wait()
		logFile.Close()
		close(ctl.done)
	}()
	t.Cleanup(func() {
		_ = ctl.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-ctl.done:
			if ctl.err != nil {
				t.Errorf("swarmsec run exited after SIGTERM: %v", ctl.err)
			}
		case <-time.After(30 * time.Second):
			_ = ctl.cmd.Process.Kill()
			<-ctl.done
			t.Errorf("swarmsec run did not stop within 30s of SIGTERM")
		}
		if t.Failed() {
			ctl.logTail(t, 60)
		}
	})
	start := time.Now()
	swarmtest.Poll(ctx, t, 2*time.Minute, func() (bool, string) {
		select {
		case <-ctl.done:
			ctl.logTail(t, 30)
			t.Fatalf("swarmsec run exited: %v", ctl.err)
		default:
		}
		code, err := httpStatus(ctx, ctl.url+"/readyz")
		if err != nil {
			return false, err.Error()
		}
		return code == http.StatusOK, fmt.Sprintf("/readyz: %d", code)
	})
	t.Logf("swarmsec run ready after %s (log: %s)", time.Since(start).Round(100*time.Millisecond), ctl.log)
	return ctl
}

// waitConverged waits until `swarmsec plan` finds nothing to do and every
// service has finished its rolling update.
func (ctl *controller) waitConverged(ctx context.Context, t *testing.T, dir string, services []string) {
	t.Helper()
	start := time.Now()
	swarmtest.Poll(ctx, t, 3*time.Minute, func() (bool, string) {
		res, err := testCluster.Swarmsec(ctx, "plan", "--manifests", dir)
		if err != nil {
			return false, err.Error()
		}
		return res.ExitCode == 0, fmt.Sprintf("swarmsec plan: exit %d\n%s%s", res.ExitCode, res.Stdout, res.Stderr)
	})
	for _, s := range services {
		swarmtest.WaitServiceConverged(ctx, t, manager(), s)
	}
	t.Logf("controller converged in %s", time.Since(start).Round(100*time.Millisecond))
}

func (ctl *controller) logTail(t *testing.T, lines int) {
	t.Helper()
	b, err := os.ReadFile(ctl.log)
	if err != nil {
		t.Logf("controller log: %v", err)
		return
	}
	all := strings.Split(strings.TrimSpace(string(b)), "\n")
	t.Logf("controller log (last %d lines):\n%s", lines, strings.Join(all[max(0, len(all)-lines):], "\n"))
}

func httpStatus(ctx context.Context, url string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
