package compile

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"testing"

	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

var (
	stackService = policytest.StackService
	sel          = policytest.Sel
	peer         = policytest.Peer
	netpol       = policytest.NetPol
)

func compileWith(t testing.TB, services []*state.Service, policies []*v1.Policy) *Desired {
	t.Helper()
	st := state.New()
	if err := st.Update(func(tx state.Tx) error {
		if err := state.ReplaceServices(tx, services); err != nil {
			return err
		}
		return state.ReplacePolicies(tx, policies)
	}); err != nil {
		t.Fatal(err)
	}
	var d *Desired
	var err error
	st.View(func(tx state.ReadTx) { d, err = Compile(tx, nil) })
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func members(d *Desired) map[string][]string {
	out := map[string][]string{}
	for name, n := range d.Networks {
		out[name] = n.Members
	}
	return out
}

func TestCompileShapes(t *testing.T) {
	shop := []*state.Service{
		stackService("shop", "web"), stackService("shop", "api"), stackService("shop", "db"),
		stackService("shop", "cache"), stackService("shop", "worker"),
	}
	egressDeny := func(spec v1.NetworkPolicySpec) v1.NetworkPolicySpec {
		spec.PolicyTypes = []v1.PolicyType{v1.PolicyTypeIngress, v1.PolicyTypeEgress}
		return spec
	}
	tests := []struct {
		name     string
		policies []*v1.Policy
		want     map[string][]string
	}{{
		name: "one peer: one network for the policy, gateways for isolated services that keep egress",
		policies: []*v1.Policy{netpol("db-from-api", egressDeny(v1.NetworkPolicySpec{
			ServiceSelector: sel("app", "db"),
			Ingress:         []v1.IngressRule{{From: []v1.Peer{peer("app", "api")}}},
		}))},
		want: map[string][]string{"swarmsec-db-from-api": {"shop_api", "shop_db"}},
	}, {
		name: "default deny without egress rules keeps outside access through a gateway network",
		policies: []*v1.Policy{netpol("deny", v1.NetworkPolicySpec{
			ServiceSelector: sel("app", "db"), Ingress: []v1.IngressRule{},
		})},
		want: map[string][]string{"swarmsec_shop_db_egress": {"shop_db"}},
	}, {
		name:     "default deny with egress denied gets an internal network of its own",
		policies: []*v1.Policy{netpol("deny", egressDeny(v1.NetworkPolicySpec{ServiceSelector: sel("app", "db")}))},
		want:     map[string][]string{"swarmsec_shop_db_isolated": {"shop_db"}},
	}, {
		name: "a whole stack talking among itself shares one network",
		policies: []*v1.Policy{netpol("shop-internal", egressDeny(v1.NetworkPolicySpec{
			ServiceSelector: sel(v1.LabelStackNamespace, "shop"),
			Ingress:         []v1.IngressRule{{From: []v1.Peer{peer(v1.LabelStackNamespace, "shop")}}},
		}))},
		want: map[string][]string{"swarmsec-shop-internal": {"shop_api", "shop_cache", "shop_db", "shop_web", "shop_worker"}},
	}, {
		name: "two isolated peers that may not talk to each other get a star each",
		policies: []*v1.Policy{
			netpol("db", egressDeny(v1.NetworkPolicySpec{
				ServiceSelector: sel("app", "db"),
				Ingress:         []v1.IngressRule{{From: []v1.Peer{peer("app", "api"), peer("app", "worker")}}},
			})),
			netpol("api", egressDeny(v1.NetworkPolicySpec{ServiceSelector: sel("app", "api")})),
			netpol("worker", egressDeny(v1.NetworkPolicySpec{ServiceSelector: sel("app", "worker")})),
		},
		want: map[string][]string{
			"swarmsec-db--shop_api":    {"shop_api", "shop_db"},
			"swarmsec-db--shop_worker": {"shop_db", "shop_worker"},
		},
	}, {
		name: "a non-isolated peer group shares one network with the isolated service",
		policies: []*v1.Policy{netpol("db", egressDeny(v1.NetworkPolicySpec{
			ServiceSelector: sel("app", "db"),
			Ingress:         []v1.IngressRule{{From: []v1.Peer{peer("app", "api"), peer("app", "worker")}}},
		}))},
		want: map[string][]string{"swarmsec-db": {"shop_api", "shop_db", "shop_worker"}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := compileWith(t, shop, tc.policies)
			got := members(d)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("networks:\n got  %v\n want %v", got, tc.want)
			}
			for _, n := range d.Networks {
				if n.Purpose == v1.PurposeEgress && n.Internal {
					t.Errorf("%s: an egress network must not be internal", n.Name)
				}
				if n.Purpose != v1.PurposeEgress && !n.Internal {
					t.Errorf("%s: must be internal", n.Name)
				}
			}
		})
	}
}

func TestCompileExplainsDirections(t *testing.T) {
	d := compileWith(t, []*state.Service{stackService("shop", "api"), stackService("shop", "db")},
		[]*v1.Policy{netpol("db", v1.NetworkPolicySpec{
			ServiceSelector: sel("app", "db"),
			Ingress:         []v1.IngressRule{{From: []v1.Peer{peer("app", "api")}}},
		})})
	want := "shop_api may connect to shop_db; overlay networks cannot tell directions, so shop_db can connect to shop_api too where no node agent runs"
	if !slices.Contains(d.Notes, want) {
		t.Errorf("notes %q lack %q", d.Notes, want)
	}
}

func TestCompileIgnoresOptedOutServices(t *testing.T) {
	d := compileWith(t, []*state.Service{stackService("shop", "db", v1.LabelIgnore, "true")},
		[]*v1.Policy{netpol("db", v1.NetworkPolicySpec{ServiceSelector: sel("app", "db")})})
	if len(d.Services) != 0 || len(d.Networks) != 0 {
		t.Errorf("an ignored service was compiled: %v", members(d))
	}
}

func TestNetworkNames(t *testing.T) {
	long := "a-very-long-policy-name-that-goes-on-and-on-and-on-until-63-chars"
	// What swarmkit accepts as a network name.
	valid := regexp.MustCompile(`^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$`)
	for _, name := range []string{
		policyNetworkName(long, "svc"),
		policyNetworkName("p", "stack_service--odd"),
		policyNetworkName("p", "x", "y"),
		serviceNetworkName(long+long, suffixEgress),
		serviceNetworkName("shop_web", suffixIsolated),
	} {
		if len(name) > maxNameLen || !valid.MatchString(name) {
			t.Errorf("%s (%d characters) is not a valid Swarm network name", name, len(name))
		}
	}
	if policyNetworkName("p", "a--b") == policyNetworkName("p--a", "b") {
		t.Error("names with the separator collide")
	}
	for got, want := range map[string]string{
		policyNetworkName("p", "shop_x"):              "swarmsec-p--shop_x",
		policyNetworkName("db-from-api"):              "swarmsec-db-from-api",
		serviceNetworkName("shop_web", suffixEgress):  "swarmsec_shop_web_egress",
		serviceNetworkName("shop_db", suffixIsolated): "swarmsec_shop_db_isolated",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

// TestCompileInvariants checks exactness and completeness on random
// policies: two services share a managed network only when they may talk,
// and every allowed pair shares one.
func TestCompileInvariants(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 1))
		var services []*state.Service
		for i := range 8 {
			services = append(services, stackService(fmt.Sprintf("s%d", i%3), fmt.Sprintf("x%d", i), "tier", fmt.Sprint(i%4)))
		}
		var policies []*v1.Policy
		for i := range 1 + rng.IntN(4) {
			spec := v1.NetworkPolicySpec{ServiceSelector: sel("tier", fmt.Sprint(rng.IntN(4)))}
			for range rng.IntN(3) {
				spec.Ingress = append(spec.Ingress, v1.IngressRule{From: []v1.Peer{peer("app", fmt.Sprintf("x%d", rng.IntN(8)))}})
			}
			if rng.IntN(2) == 0 {
				spec.Egress = []v1.EgressRule{{To: []v1.Peer{peer(v1.LabelStackNamespace, fmt.Sprintf("s%d", rng.IntN(3)))}}}
			}
			policies = append(policies, netpol(fmt.Sprintf("p%d", i), spec))
		}
		d := compileWith(t, services, policies)

		// The truth, computed from the semantics directly.
		isolated := map[string]bool{}
		allowed := map[[2]string]bool{}
		for _, p := range policies {
			spec := p.Network.Spec
			var selected, peers []string
			for _, s := range services {
				if spec.ServiceSelector.Matches(s.SelectorLabels) {
					selected = append(selected, s.Name)
					isolated[s.Name] = true
				}
				for _, r := range spec.Ingress {
					for _, pr := range r.From {
						if pr.ServiceSelector.Matches(s.SelectorLabels) {
							peers = append(peers, s.Name)
						}
					}
				}
				for _, r := range spec.Egress {
					for _, pr := range r.To {
						if pr.ServiceSelector.Matches(s.SelectorLabels) {
							peers = append(peers, s.Name)
						}
					}
				}
			}
			for _, a := range selected {
				for _, b := range peers {
					allowed[[2]string{a, b}], allowed[[2]string{b, a}] = true, true
				}
			}
		}
		may := func(a, b string) bool { return allowed[[2]string{a, b}] || (!isolated[a] && !isolated[b]) }
		share := func(a, b string) bool {
			for _, n := range d.Networks {
				if slices.Contains(n.Members, a) && slices.Contains(n.Members, b) {
					return true
				}
			}
			return false
		}
		for _, a := range services {
			for _, b := range services {
				if a.Name >= b.Name {
					continue
				}
				if share(a.Name, b.Name) && !may(a.Name, b.Name) {
					t.Fatalf("seed %d: %s and %s share a network but may not talk", seed, a.Name, b.Name)
				}
				if allowed[[2]string{a.Name, b.Name}] && !share(a.Name, b.Name) {
					t.Fatalf("seed %d: %s and %s may talk but share no network", seed, a.Name, b.Name)
				}
			}
			ds := d.Services[a.ID]
			if isolated[a.Name] && (ds == nil || len(ds.Networks) == 0) {
				t.Fatalf("seed %d: isolated %s has no network of its own", seed, a.Name)
			}
			// Outside access: an open (non-internal) network is a gateway.
			if isolated[a.Name] {
				open := slices.ContainsFunc(ds.Networks, func(n string) bool { return !d.Networks[n].Internal })
				if open != ds.Outside {
					t.Fatalf("seed %d: %s has outside access %v but is on an open network: %v", seed, a.Name, ds.Outside, open)
				}
			}
		}
		// No two managed networks with the same members.
		seen := map[string]string{}
		for _, n := range d.Networks {
			key := fmt.Sprint(n.Members)
			if other, dup := seen[key]; dup {
				t.Fatalf("seed %d: %s and %s have the same members %v", seed, n.Name, other, n.Members)
			}
			seen[key] = n.Name
		}
	}
}

// As in Kubernetes, Egress is implied only by egress rules: an empty list
// without policyTypes leaves outside access alone; with Egress listed it
// cuts it.
func TestEmptyEgressFollowsKubernetes(t *testing.T) {
	svc := []*state.Service{stackService("s", "db")}
	for _, tc := range []struct {
		name    string
		types   []v1.PolicyType
		outside bool
	}{
		{"no policyTypes", nil, true},
		{"policyTypes Egress", []v1.PolicyType{v1.PolicyTypeIngress, v1.PolicyTypeEgress}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := compileWith(t, svc, []*v1.Policy{netpol("db", v1.NetworkPolicySpec{
				ServiceSelector: sel("app", "db"), PolicyTypes: tc.types, Egress: []v1.EgressRule{},
			})})
			if got := d.Services["id-s_db"].Outside; got != tc.outside {
				t.Errorf("outside access %v, want %v", got, tc.outside)
			}
		})
	}
}

// swarmsec's own services (deployed as a stack) are selected only by a
// policy that names them.
func TestOwnServicesSelectedOnlyByName(t *testing.T) {
	self := stackService("swarmsec", "controller", v1.LabelSelf, "true")
	other := stackService("shop", "web")
	everything := netpol("all", v1.NetworkPolicySpec{ServiceSelector: v1.LabelSelector{}})
	d := compileWith(t, []*state.Service{self, other}, []*v1.Policy{everything})
	if ds := d.Services[self.ID]; ds != nil && ds.Isolated {
		t.Error("a broad selector isolated swarmsec's own controller")
	}
	if ds := d.Services[other.ID]; ds == nil || !ds.Isolated {
		t.Error("the broad selector did not isolate the other service")
	}
	named := netpol("ctl", v1.NetworkPolicySpec{ServiceSelector: sel(v1.LabelService, self.Name)})
	if d := compileWith(t, []*state.Service{self, other}, []*v1.Policy{named}); d.Services[self.ID] == nil || !d.Services[self.ID].Isolated {
		t.Error("a policy naming the controller did not select it")
	}
}

// Two policies selecting one service admit the union of their sources for a
// port, and the most logging either asks for; a port no policy restricts
// needs no rule, nor a port the service does not publish.
func TestAdmissionIsTheUnionOfSources(t *testing.T) {
	svc := []*state.Service{stackService("s", "web")}
	svc[0].Ports = []swarm.PortConfig{{PublishedPort: 443, Protocol: swarm.PortConfigProtocolTCP}, {PublishedPort: 80, Protocol: swarm.PortConfigProtocolTCP}}
	from := func(cidr string, except ...string) v1.PortSource {
		return v1.PortSource{IPBlock: &v1.SourceBlock{CIDR: cidr, Except: except}}
	}
	office := netpol("office", v1.NetworkPolicySpec{ServiceSelector: sel("app", "web"), Publish: []v1.PublishedPort{
		{Port: 443, From: []v1.PortSource{from("203.0.113.0/24", "203.0.113.9/32")}, Log: v1.PortLogBlocked},
		{Port: 80},
		{Port: 8443, From: []v1.PortSource{from("203.0.113.0/24")}}, // another service's
	}})
	vpn := netpol("vpn", v1.NetworkPolicySpec{ServiceSelector: sel("app", "web"), Publish: []v1.PublishedPort{
		{Port: 443, From: []v1.PortSource{from("2001:db8::/32"), from("203.0.113.0/24", "203.0.113.9/32")}},
	}})
	open := netpol("open", v1.NetworkPolicySpec{ServiceSelector: sel("app", "web"), Publish: []v1.PublishedPort{{Port: 443}}})

	d := compileWith(t, svc, []*v1.Policy{office, vpn})
	a := d.Services["id-s_web"].Admit
	if len(a) != 1 || a["443/tcp"] == nil {
		t.Fatalf("admissions %v, want 443/tcp only", a)
	}
	if got, want := a["443/tcp"].Sources(), "2001:db8::/32; 203.0.113.0/24 except 203.0.113.9/32"; got != want || a["443/tcp"].Log != v1.PortLogBlocked {
		t.Errorf("443/tcp admits %q logging %s, want %q logging blocked", got, a["443/tcp"].Log, want)
	}

	d = compileWith(t, svc, []*v1.Policy{office, open})
	if a := d.Services["id-s_web"].Admit["443/tcp"]; a == nil || !a.Any || a.Log != v1.PortLogBlocked {
		t.Errorf("a policy without from admits any source (still logging blocked): got %+v", a)
	}
	d = compileWith(t, svc, []*v1.Policy{open})
	if a := d.Services["id-s_web"].Admit; len(a) != 0 {
		t.Errorf("unrestricted ports need no rule: got %v", a)
	}
}

// Rules are the reasons behind the allowed relation: every rule that lets
// a pair talk, each once, and none for a pair no rule joins.
func TestRules(t *testing.T) {
	self := stackService("swarmsec", "controller", v1.LabelSelf, "true")
	services := []*state.Service{stackService("shop", "web"), stackService("shop", "api"), stackService("shop", "db"), self}
	d := compileWith(t, services, []*v1.Policy{
		netpol("db", v1.NetworkPolicySpec{
			ServiceSelector: sel("app", "db"),
			// Two peers of one rule naming api: one reason.
			Ingress: []v1.IngressRule{{}, {From: []v1.Peer{peer("app", "api"), peer(v1.LabelStackNamespace, "shop")}}},
		}),
		netpol("web", v1.NetworkPolicySpec{
			ServiceSelector: sel("app", "web"),
			Egress:          []v1.EgressRule{{To: []v1.Peer{peer("app", "api")}}},
		}),
		// Selects everything but swarmsec's own service, which only a
		// selector naming it picks.
		netpol("all", v1.NetworkPolicySpec{ServiceSelector: v1.LabelSelector{}, Ingress: []v1.IngressRule{{From: []v1.Peer{peer("app", "controller")}}}}),
	})
	id := func(s *state.Service) string { return s.ID }
	web, api, db := id(services[0]), id(services[1]), id(services[2])
	if got, want := d.Rules(api, db), []Rule{{Policy: "db", Index: 1, Selected: db, Peer: api}}; !slices.Equal(got, want) {
		t.Errorf("Rules(api, db) = %+v, want %+v", got, want)
	}
	if got, want := d.Rules(api, web), []Rule{{Policy: "web", Egress: true, Selected: web, Peer: api}}; !slices.Equal(got, want) {
		t.Errorf("Rules(api, web) = %+v, want %+v", got, want)
	}
	if got := d.Rules(web, self.ID); len(got) != 0 {
		t.Errorf("Rules(web, swarmsec) = %+v, want none: the broad selector does not pick swarmsec's own service", got)
	}
	for _, a := range services {
		for _, b := range services {
			if a != b && (len(d.Rules(a.ID, b.ID)) > 0) != d.edges.has(d.index[a.ID], d.index[b.ID]) {
				t.Errorf("%s, %s: rules %+v, edge %v", a.Name, b.Name, d.Rules(a.ID, b.ID), d.edges.has(d.index[a.ID], d.index[b.ID]))
			}
		}
	}
}

func TestCompileResolvesRulesForTheAgent(t *testing.T) {
	port := 8080
	d := compileWith(t, []*state.Service{stackService("shop", "api"), stackService("shop", "db"), stackService("shop", "web")},
		[]*v1.Policy{netpol("db", v1.NetworkPolicySpec{
			ServiceSelector: sel("app", "db"),
			Ingress:         []v1.IngressRule{{From: []v1.Peer{peer("app", "api"), peer("app", "web")}, Ports: []v1.NetworkPolicyPort{{Port: &port}}}},
			Egress:          []v1.EgressRule{{To: []v1.Peer{{IPBlock: &v1.IPBlock{CIDR: "203.0.113.0/24", Except: []string{"203.0.113.9/32"}}}}}},
		})})
	if len(d.Policies) != 1 {
		t.Fatalf("policies %+v", d.Policies)
	}
	p := d.Policies[0]
	if p.Name != "db" || !slices.Equal(p.Selected, []string{"shop_db"}) || !p.Ingress || !p.Egress ||
		!slices.Equal(p.IngressRules[0].Services, []string{"shop_api", "shop_web"}) || len(p.IngressRules[0].Ports) != 1 ||
		p.EgressRules[0].Blocks[0].CIDR != "203.0.113.0/24" {
		t.Errorf("compiled %+v", p)
	}
	if !slices.Contains(d.Notes, fmt.Sprintf(DatapathNote, "db")) {
		t.Errorf("notes %q lack the agent's part", d.Notes)
	}
	// The network layer does not change with ports: db and api share a network.
	if !d.Allowed("id-shop_api", "id-shop_db") {
		t.Errorf("a port-limited rule no longer connects its peers")
	}
}
