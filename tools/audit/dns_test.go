package audit

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/testing/fake"
)

// aliased is a service on networks with aliases (network -> aliases).
func aliased(name string, labels map[string]string, nets map[string][]string) swarm.ServiceSpec {
	s := spec(name, labels, nil)
	for n, aliases := range nets {
		s.TaskTemplate.Networks = append(s.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: n, Aliases: aliases})
	}
	return s
}

func encrypted(f *fake.Swarm, names ...string) {
	for _, n := range names {
		f.AddNetwork(n, network.CreateOptions{Driver: "overlay", Options: map[string]string{"encrypted": ""}})
	}
}

// Two stacks that each call their database "db", both on a shared
// network: "db" (and tasks.db) there resolve to either.
func TestAmbiguousNamesOnASharedNetwork(t *testing.T) {
	f := fake.New()
	encrypted(f, "shared", "shop_default", "blog_default")
	f.AddService(aliased("shop_db", nil, map[string][]string{"shop_default": {"db"}, "shared": {"db"}}))
	f.AddService(aliased("blog_db", nil, map[string][]string{"blog_default": {"db"}, "shared": {"db"}}))
	f.AddService(aliased("shop_api", nil, map[string][]string{"shop_default": {"api"}, "shared": {"api"}}))
	// An alias that is another service's name, on its own network.
	f.AddService(aliased("blog_web", nil, map[string][]string{"blog_default": {"shop_api", "web"}}))
	r, err := Run(context.Background(), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := findings(r)
	shared, ok := got[[2]string{CheckDNSAmbiguousName, "shared"}]
	if !ok {
		t.Fatalf("no finding on shared: %+v", r.Findings)
	}
	for _, want := range []string{`"db" resolves to blog_db (its alias db) and shop_db (its alias db)`, `"tasks.db" resolves to blog_db`, "blog_db, shop_db"} {
		if !strings.Contains(shared.Message+shared.Fix, want) {
			t.Errorf("shared finding lacks %q: %s / %s", want, shared.Message, shared.Fix)
		}
	}
	if strings.Contains(shared.Message, `"api"`) {
		t.Errorf("api is one service's: %s", shared.Message)
	}
	// shop_api's own name is on shared and shop_default, blog_web's alias
	// on blog_default: not one network, no finding there.
	for _, n := range []string{"shop_default", "blog_default"} {
		if f, ok := got[[2]string{CheckDNSAmbiguousName, n}]; ok {
			t.Errorf("finding on %s: %s", n, f.Message)
		}
	}
	// The alias on the same network as the service it names is one.
	f.AddService(aliased("impostor", nil, map[string][]string{"shop_default": {"shop_api"}}))
	r, err = Run(context.Background(), f, nil)
	if err != nil {
		t.Fatal(err)
	}
	fd, ok := findings(r)[[2]string{CheckDNSAmbiguousName, "shop_default"}]
	if !ok || !strings.Contains(fd.Message, `"shop_api" resolves to impostor (its alias shop_api) and shop_api (its service name)`) {
		t.Errorf("impostor not found: %+v", fd)
	}
}

func lookups(source string, n uint64, names ...string) []agentv1.DNSLookup {
	var out []agentv1.DNSLookup
	for _, name := range names {
		out = append(out, agentv1.DNSLookup{Source: source, Name: name, Type: "A", Class: agentv1.DNSNXDomain, Count: n, LastSeen: time.Now()})
	}
	return out
}

func TestReconnaissanceFromTheAgentsLookups(t *testing.T) {
	ctx := context.Background()
	f := fake.New()
	encrypted(f, "front", "back")
	f.AddService(aliased("shop_web", map[string]string{"app": "web"}, map[string][]string{"front": {"web"}}))
	f.AddService(aliased("shop_api", map[string]string{"app": "api"}, map[string][]string{"front": {"api"}, "back": {"api"}}))
	f.AddService(aliased("shop_db", map[string]string{"app": "db"}, map[string][]string{"back": {"db"}}))
	var l []agentv1.DNSLookup
	l = append(l, lookups("shop_web", 2, "shop_db", "tasks.db")...) // 4: may not reach db
	l = append(l, lookups("shop_web", 9, "api", "example.org", "shop_web")...)
	l = append(l, lookups("shop_api", 9, "db", "web")...) // may reach both
	l = append(l, lookups("gone", 9, "db")...)            // a service gone
	r, err := RunWithDNS(ctx, f, nil, l)
	if err != nil {
		t.Fatal(err)
	}
	var recon []Finding
	for _, fd := range r.Findings {
		if fd.Check == CheckDNSReconnaissance {
			recon = append(recon, fd)
		}
	}
	if len(recon) != 1 || recon[0].Name != "shop_web" || recon[0].Kind != KindService {
		t.Fatalf("reconnaissance findings %+v", recon)
	}
	for _, want := range []string{`"shop_db" (shop_db on back; 2 lookups, answered nxdomain)`, `"tasks.db" (shop_db on back`, "4 times", "shares no network"} {
		if !strings.Contains(recon[0].Message, want) {
			t.Errorf("message lacks %q: %s", want, recon[0].Message)
		}
	}
	if strings.Contains(recon[0].Message, "api") || strings.Contains(recon[0].Message, "example.org") {
		t.Errorf("message names what web may reach: %s", recon[0].Message)
	}
	// Fewer lookups than the threshold: nothing.
	r, err = RunWithDNS(ctx, f, nil, lookups("shop_web", 1, "db", "shop_db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := findings(r)[[2]string{CheckDNSReconnaissance, "shop_web"}]; ok {
		t.Error("two lookups make a finding")
	}

	// With a policy that lets api reach db only from web... api is
	// isolated from db: its lookups of db become reconnaissance; web's
	// stay (a policy lets web reach db, though they share no network yet).
	db := &v1.Policy{Name: "db", Kind: v1.KindNetworkPolicy, Generation: "1", Network: &v1.NetworkPolicy{
		Metadata: v1.ObjectMeta{Name: "db"},
		Spec: v1.NetworkPolicySpec{
			ServiceSelector: v1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
			Ingress:         []v1.IngressRule{{From: []v1.Peer{{ServiceSelector: &v1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}}},
		},
	}}
	r, err = RunWithDNS(ctx, f, []*v1.Policy{db}, l)
	if err != nil {
		t.Fatal(err)
	}
	got := findings(r)
	if fd, ok := got[[2]string{CheckDNSReconnaissance, "shop_api"}]; !ok || !strings.Contains(fd.Message, `"db" (shop_db on back; 9 lookups`) || !strings.Contains(fd.Message, "no policy lets it reach") {
		t.Errorf("api's lookups of db under the policy: %+v", fd)
	}
	if fd, ok := got[[2]string{CheckDNSReconnaissance, "shop_web"}]; ok {
		t.Errorf("web may reach db under the policy: %s", fd.Message)
	}
	if f.WriteCalls() != 0 {
		t.Fatal("audit wrote to Docker")
	}
}
