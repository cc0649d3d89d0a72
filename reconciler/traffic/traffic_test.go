package traffic

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/fake"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

func flowsLine(t *testing.T, f agentv1.Flows) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"time": f.Time, "level": "INFO", "msg": agentv1.FlowsMessage, agentv1.FlowsKey: f})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func flow(kind, src, dst string, port uint16, conns uint64, first, last time.Time) agentv1.Flow {
	f := agentv1.Flow{Kind: kind, Source: src, Destination: dst, Port: port, Protocol: "tcp", Connections: conns, FirstSeen: first, LastSeen: last}
	if kind == agentv1.FlowExternal {
		f.DestinationBlock = "203.0.113.0/24"
	}
	if kind == agentv1.FlowPublished {
		f.SourceBlock = "198.51.100.0/24"
	}
	return f
}

func TestReadSumsTheWindowOverNodes(t *testing.T) {
	f := fake.New()
	spec := swarm.ServiceSpec{}
	spec.Name = "swarmsec_agent"
	spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "swarmsec"}
	f.AddService(spec)
	now := time.Now().UTC().Truncate(time.Second)
	add := func(nodeID, host string, at time.Time, flows ...agentv1.Flow) {
		f.AddServiceLogFrom("swarmsec_agent", nodeID, at, flowsLine(t, agentv1.Flows{Node: host, Time: at, Part: 1, Parts: 1, Flows: flows}))
	}
	t0 := now.Add(-50 * time.Minute)
	add("id1", "w1", now.Add(-2*time.Hour), flow(agentv1.FlowService, "shop_api", "shop_db", 5432, 1000, t0, t0)) // before the window
	add("id1", "w1", now.Add(-40*time.Minute), flow(agentv1.FlowService, "shop_api", "shop_db", 5432, 10, t0, t0.Add(10*time.Minute)))
	add("id1", "w1", now.Add(-10*time.Minute), flow(agentv1.FlowService, "shop_api", "shop_db", 5432, 5, t0, now.Add(-11*time.Minute)))
	add("id2", "w2", now.Add(-5*time.Minute), flow(agentv1.FlowService, "shop_api", "shop_db", 5432, 2, t0.Add(-time.Hour), now.Add(-6*time.Minute)),
		flow(agentv1.FlowPublished, "outside", "shop_web", 8080, 7, t0, t0))
	f.AddServiceLogFrom("swarmsec_agent", "id2", now, `{"msg":"connection attempts","flows":"x"}`)
	f.AddServiceLogFrom("swarmsec_agent", "id2", now, `{"msg":"flows","flows":{"node":"w2","flows":[{"kind":"service"}]}}`)

	obs, err := Read(context.Background(), f, "swarmsec_agent", now.Add(-time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(obs.Flows) != 2 || len(obs.Nodes) != 2 {
		t.Fatalf("observed %+v", obs)
	}
	// Sorted by source: outside first.
	pub, db := obs.Flows[0], obs.Flows[1]
	if db.Connections != 17 || !db.FirstSeen.Equal(t0.Add(-time.Hour)) || !db.LastSeen.Equal(now.Add(-6*time.Minute)) || len(db.Nodes) != 2 {
		t.Errorf("api -> db %+v", db)
	}
	if pub.Connections != 7 || pub.Target() != "shop_web:8080/tcp" || pub.From() != "outside 198.51.100.0/24" {
		t.Errorf("published %+v", pub)
	}
}

// The unanswered (one-way UDP to a service) sum over the window and nodes
// with the connections they are part of.
func TestReadSumsTheUnanswered(t *testing.T) {
	f := fake.New()
	spec := swarm.ServiceSpec{}
	spec.Name = "swarmsec_agent"
	spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "swarmsec"}
	f.AddService(spec)
	now := time.Now().UTC().Truncate(time.Second)
	statsd := func(conns, unanswered uint64) agentv1.Flow {
		fl := flow(agentv1.FlowService, "shop_api", "shop_stats", 8125, conns, now.Add(-time.Minute), now)
		fl.Protocol, fl.Unanswered = "udp", unanswered
		return fl
	}
	for i, fl := range []agentv1.Flow{statsd(4, 4), statsd(3, 2)} {
		at := now.Add(-time.Duration(i+1) * time.Minute)
		f.AddServiceLogFrom("swarmsec_agent", "id1", at, flowsLine(t, agentv1.Flows{Node: "w1", Time: at, Part: 1, Parts: 1, Flows: []agentv1.Flow{fl}}))
	}
	obs, err := Read(context.Background(), f, "swarmsec_agent", now.Add(-time.Hour), 0)
	if err != nil || len(obs.Flows) != 1 || obs.Flows[0].Connections != 7 || obs.Flows[0].Unanswered != 6 {
		t.Errorf("observed %+v, %v", obs, err)
	}
}

func shop(t *testing.T) (*state.Store, *compile.Desired) {
	t.Helper()
	var services []*state.Service
	for _, app := range []string{"web", "api", "db"} {
		s := policytest.StackService("shop", app)
		if app == "web" {
			s.Ports = []swarm.PortConfig{{Protocol: "tcp", TargetPort: 80, PublishedPort: 8080, PublishMode: swarm.PortConfigPublishModeHost},
				{Protocol: "tcp", TargetPort: 9090, PublishedPort: 9090}}
		}
		services = append(services, s)
	}
	st := state.New()
	if err := st.Update(func(tx state.Tx) error {
		if err := state.ReplaceServices(tx, services); err != nil {
			return err
		}
		return state.ReplacePolicies(tx, policytest.ShopPolicies())
	}); err != nil {
		t.Fatal(err)
	}
	var d *compile.Desired
	var err error
	st.View(func(tx state.ReadTx) { d, err = compile.Compile(tx, nil) })
	if err != nil {
		t.Fatal(err)
	}
	return st, d
}

// Each kind of flow is judged against the compiled policies: db takes
// only api and has no way out; web reaches api and outside, publishes
// 8080 only.
func TestJudge(t *testing.T) {
	st, d := shop(t)
	now := time.Now()
	cases := map[string]struct {
		f    agentv1.Flow
		want string
	}{
		"api to db":         {flow(agentv1.FlowService, "shop_api", "shop_db", 5432, 1, now, now), Allowed},
		"web to db":         {flow(agentv1.FlowService, "shop_web", "shop_db", 5432, 1, now, now), WouldBlock},
		"web to api":        {flow(agentv1.FlowService, "shop_web", "shop_api", 80, 1, now, now), Allowed},
		"db outside":        {flow(agentv1.FlowExternal, "shop_db", "outside", 443, 1, now, now), WouldBlock},
		"web outside":       {flow(agentv1.FlowExternal, "shop_web", "outside", 443, 1, now, now), Allowed},
		"api outside":       {flow(agentv1.FlowExternal, "shop_api", "outside", 443, 1, now, now), Allowed},
		"into web 8080":     {flow(agentv1.FlowPublished, "outside", "shop_web", 80, 1, now, now), Allowed},
		"into web 9090":     {flow(agentv1.FlowPublished, "outside", "shop_web", 9090, 1, now, now), WouldBlock},
		"a service gone":    {flow(agentv1.FlowService, "shop_api", "shop_old", 80, 1, now, now), Unknown},
		"a kind of no name": {agentv1.Flow{Kind: "x", Source: "a", Destination: "b"}, Unknown},
	}
	var flows []Flow
	var names []string
	for name, c := range cases {
		flows = append(flows, Flow{Flow: c.f})
		names = append(names, name)
	}
	var err error
	st.View(func(tx state.ReadTx) { err = Judge(tx, d, flows) })
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range flows {
		if want := cases[names[i]].want; f.Verdict != want || f.Why == "" {
			t.Errorf("%s: %s (%s), want %s", names[i], f.Verdict, f.Why, want)
		}
	}
	// A drop of web to db beside an observed flow of another key (api to
	// db): cases is a map, so flows[0] could be web to db itself.
	obs := &Observed{Flows: []Flow{flows[slices.Index(names, "api to db")]}}
	AddDrops(obs, []Flow{{Flow: flow(agentv1.FlowService, "shop_web", "shop_db", 5432, 3, now, now)}})
	// The observed flow is any of the cases (map order), maybe of the
	// drop's own key: the drop is a flow of its own either way.
	if len(obs.Flows) != 2 || !slices.ContainsFunc(obs.Flows, func(f Flow) bool { return f.Verdict == Blocked && f.Connections == 3 }) {
		t.Errorf("drops %+v", obs.Flows)
	}
}

func TestAdmits(t *testing.T) {
	for block, want := range map[string]bool{"198.51.100.0/24": true, "198.51.101.0/24": false, "192.0.2.0/24": false, "bad": false} {
		if got := admits(sourceBlocks("198.51.100.0/22", "198.51.101.0/24"), block); got != want {
			t.Errorf("admits %s: %v", block, got)
		}
	}
}

func sourceBlocks(cidr string, except ...string) []v1.SourceBlock {
	return []v1.SourceBlock{{CIDR: cidr, Except: except}}
}
