//go:build integration

package integration

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
	"github.com/swarmsec/swarmsec/tools/audit"
)

// auditCalls counts Docker calls by operation.
type auditCalls struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *auditCalls) ObserveDockerCall(op string, _ time.Duration, _ error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[op]++
}

func (c *auditCalls) writes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[dockerapi.OpServiceUpdate] + c.n[dockerapi.OpNetworkCreate] + c.n[dockerapi.OpNetworkRemove]
}

// auditRun audits the machine's Swarm and returns the findings about the
// objects named, by check; it fails the test if the audit wrote anything.
func auditRun(ctx context.Context, t *testing.T, cli *client.Client, policies []*v1.Policy, names ...string) map[string]map[string]audit.Finding {
	t.Helper()
	calls := &auditCalls{n: map[string]int{}}
	r, err := audit.Run(ctx, dockerapi.NewInstrumented(cli, calls), policies)
	if err != nil {
		t.Fatal(err)
	}
	if n := calls.writes(); n != 0 {
		t.Fatalf("audit made %d write calls: %v", n, calls.n)
	}
	out := map[string]map[string]audit.Finding{}
	for _, f := range r.Findings {
		for _, n := range names {
			if f.Name == n {
				if out[f.Check] == nil {
					out[f.Check] = map[string]audit.Finding{}
				}
				out[f.Check][n] = f
			}
		}
	}
	return out
}

func auditHas(t *testing.T, got map[string]map[string]audit.Finding, check, name string, sev audit.Severity) {
	t.Helper()
	f, ok := got[check][name]
	if !ok {
		t.Errorf("no %s finding for %s (got %v)", check, name, got)
		return
	}
	if f.Severity != sev || f.Message == "" || f.Fix == "" {
		t.Errorf("%s finding for %s: %+v", check, name, f)
	}
}

func auditLacks(t *testing.T, got map[string]map[string]audit.Finding, check, name string) {
	t.Helper()
	if f, ok := got[check][name]; ok {
		t.Errorf("%s still reported for %s after the fix: %s", check, name, f.Message)
	}
}

// auditUpdate changes a service's spec.
func auditUpdate(ctx context.Context, t *testing.T, cli *client.Client, name string, change func(*swarm.ServiceSpec)) {
	t.Helper()
	s, _, err := cli.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := s.Spec
	change(&spec)
	if _, err := cli.ServiceUpdate(ctx, s.ID, s.Version, spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatalf("update %s: %v", name, err)
	}
}

// auditRecreate replaces a network by one of the same name: networks
// cannot be changed in place.
func auditRecreate(ctx context.Context, t *testing.T, cli *client.Client, name, id string, opts ...swarmtest.NetworkOpt) {
	t.Helper()
	if err := swarmtest.RemoveNetworkE(ctx, cli, id); err != nil {
		t.Fatal(err)
	}
	swarmtest.CreateNetwork(ctx, t, cli, name, opts...)
}

// Each check against a real Swarm that has the problem, then with the
// problem fixed.
func TestAuditChecksOnRealSwarm(t *testing.T) {
	ctx := context.Background()
	cli := engine(ctx, t)
	p := "au" + swarmtest.RunID()[:6]
	removeManagedNetworks(ctx, t, cli, p)

	plain, attach, sealed := p+"-plain", p+"-attach", p+"-sealed"
	plainID := swarmtest.CreateNetwork(ctx, t, cli, plain)
	attachID := swarmtest.CreateNetwork(ctx, t, cli, attach, swarmtest.Attachable(), swarmtest.Encrypted())
	swarmtest.CreateNetwork(ctx, t, cli, sealed, swarmtest.Encrypted())
	peers := p + "-peers"
	swarmtest.CreateNetwork(ctx, t, cli, peers, swarmtest.Encrypted())
	managed := p + "-managed"
	swarmtest.CreateNetwork(ctx, t, cli, managed, swarmtest.Encrypted(),
		swarmtest.WithNetworkLabels(map[string]string{v1.LabelManaged: "true", v1.LabelOwner: p}))

	pub, host, iso, a, b := p+"_pub", p+"_host", p+"_iso", p+"_a", p+"_b"
	swarmtest.CreateService(ctx, t, cli, swarmtest.WithName(pub), swarmtest.WithNetwork(sealed),
		swarmtest.WithPublishedPort(987, swarmtest.AppPort, swarm.PortConfigPublishModeIngress))
	swarmtest.CreateService(ctx, t, cli, swarmtest.WithName(host), swarmtest.WithNetwork("host"))
	swarmtest.CreateService(ctx, t, cli, swarmtest.WithName(iso), swarmtest.WithNetwork(sealed), swarmtest.WithNetwork(managed),
		swarmtest.WithServiceLabels(map[string]string{v1.LabelOriginal: `{"networks":[{"name":"` + sealed + `"}]}`}))
	swarmtest.CreateService(ctx, t, cli, swarmtest.WithName(a), swarmtest.WithNetwork(peers), swarmtest.WithServiceLabels(map[string]string{"app": p + "-a"}))
	swarmtest.CreateService(ctx, t, cli, swarmtest.WithName(b), swarmtest.WithNetwork(peers), swarmtest.WithServiceLabels(map[string]string{"app": p + "-b"}))

	names := []string{plain, attach, sealed, peers, managed, "ingress", pub, host, iso, a, b}
	got := auditRun(ctx, t, cli, nil, names...)
	auditHas(t, got, audit.CheckOverlayUnencrypted, plain, audit.SeverityHigh)
	auditHas(t, got, audit.CheckOverlayAttachable, attach, audit.SeverityMedium)
	auditHas(t, got, audit.CheckIngressPublishedPort, pub, audit.SeverityMedium)
	auditHas(t, got, audit.CheckPrivilegedPort, pub, audit.SeverityLow)
	auditHas(t, got, audit.CheckHostNetwork, host, audit.SeverityHigh)
	auditHas(t, got, audit.CheckIsolatedOnSharedNetwork, iso, audit.SeverityHigh)
	// The engine's own ingress network: detected only, since recreating
	// it would disturb every other user of this engine.
	auditHas(t, got, audit.CheckIngressUnencrypted, "ingress", audit.SeverityMedium)
	for _, clean := range []string{sealed, peers, managed} {
		for check, fs := range got {
			if f, ok := fs[clean]; ok {
				t.Errorf("%s reported for %s, which has no problem: %s", check, clean, f.Message)
			}
		}
	}
	if f := got[audit.CheckOverlayUnencrypted][plain]; f.DockerBench != "7.3" {
		t.Errorf("overlay-unencrypted maps to docker-bench %q, want 7.3", f.DockerBench)
	}

	// With a policy isolating a (no ingress), a and b share peers although
	// nothing allows it.
	deny := &v1.Policy{Name: p + "-a", Kind: v1.KindNetworkPolicy, Generation: "1", Network: &v1.NetworkPolicy{
		Metadata: v1.ObjectMeta{Name: p + "-a"},
		Spec:     v1.NetworkPolicySpec{ServiceSelector: v1.LabelSelector{MatchLabels: map[string]string{"app": p + "-a"}}},
	}}
	got = auditRun(ctx, t, cli, []*v1.Policy{deny}, names...)
	auditHas(t, got, audit.CheckUnallowedPeers, peers, audit.SeverityHigh)

	// The fixes.
	auditRecreate(ctx, t, cli, plain, plainID, swarmtest.Encrypted())
	auditRecreate(ctx, t, cli, attach, attachID, swarmtest.Encrypted())
	auditUpdate(ctx, t, cli, pub, func(s *swarm.ServiceSpec) {
		s.EndpointSpec.Ports = []swarm.PortConfig{{Protocol: swarm.PortConfigProtocolTCP, PublishedPort: 18987, TargetPort: swarmtest.AppPort, PublishMode: swarm.PortConfigPublishModeHost}}
	})
	auditUpdate(ctx, t, cli, host, func(s *swarm.ServiceSpec) {
		s.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: sealed}}
	})
	auditUpdate(ctx, t, cli, iso, func(s *swarm.ServiceSpec) {
		s.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: managed}}
	})
	allow := *deny
	allow.Network = &v1.NetworkPolicy{Metadata: deny.Network.Metadata, Spec: v1.NetworkPolicySpec{
		ServiceSelector: deny.Network.Spec.ServiceSelector,
		Ingress:         []v1.IngressRule{{From: []v1.Peer{{ServiceSelector: &v1.LabelSelector{MatchLabels: map[string]string{"app": p + "-b"}}}}}},
	}}

	got = auditRun(ctx, t, cli, []*v1.Policy{&allow}, names...)
	auditLacks(t, got, audit.CheckOverlayUnencrypted, plain)
	auditLacks(t, got, audit.CheckOverlayAttachable, attach)
	auditLacks(t, got, audit.CheckIngressPublishedPort, pub)
	auditLacks(t, got, audit.CheckPrivilegedPort, pub)
	auditLacks(t, got, audit.CheckHostNetwork, host)
	auditLacks(t, got, audit.CheckIsolatedOnSharedNetwork, iso)
	auditLacks(t, got, audit.CheckUnallowedPeers, peers)

	// The drift check without manifests too: iso is back on managed only.
	got = auditRun(ctx, t, cli, nil, names...)
	auditLacks(t, got, audit.CheckIsolatedOnSharedNetwork, iso)
}
