package traffic

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/testing/fake"
)

func dnsLine(t *testing.T, d agentv1.DNS) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"time": d.Time, "level": "INFO", "msg": agentv1.DNSMessage, agentv1.DNSKey: d})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReadDNSSumsTheWindowOverNodes(t *testing.T) {
	f := fake.New()
	spec := swarm.ServiceSpec{}
	spec.Name = "swarmsec_agent"
	spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "swarmsec"}
	f.AddService(spec)
	now := time.Now().UTC().Truncate(time.Second)
	t0 := now.Add(-50 * time.Minute)
	lookup := func(name, class string, n uint64, first, last time.Time) agentv1.DNSLookup {
		l := agentv1.DNSLookup{Source: "shop_web", Name: name, Type: "A", Class: class, Count: n, FirstSeen: first, LastSeen: last}
		if class == agentv1.DNSVIP {
			l.Service = "shop_api"
		}
		return l
	}
	add := func(nodeID, host string, at time.Time, dropped uint64, l ...agentv1.DNSLookup) {
		f.AddServiceLogFrom("swarmsec_agent", nodeID, at, dnsLine(t, agentv1.DNS{Node: host, Time: at, Part: 1, Parts: 1, Dropped: dropped, Lookups: l}))
	}
	add("id1", "w1", now.Add(-2*time.Hour), 0, lookup("shop_api", agentv1.DNSVIP, 1000, t0, t0)) // before the window
	add("id1", "w1", now.Add(-40*time.Minute), 3, lookup("shop_api", agentv1.DNSVIP, 10, t0, t0.Add(time.Minute)))
	add("id2", "w2", now.Add(-5*time.Minute), 0, lookup("shop_api", agentv1.DNSVIP, 2, t0.Add(-time.Hour), now.Add(-6*time.Minute)),
		lookup("shop_db", agentv1.DNSNXDomain, 4, t0, t0))
	// Another message, and a lookup without its fields: skipped.
	f.AddServiceLogFrom("swarmsec_agent", "id2", now, `{"msg":"flows","dns":"x"}`)
	f.AddServiceLogFrom("swarmsec_agent", "id2", now, `{"msg":"dns","dns":{"node":"w2","lookups":[{"source":"a"}]}}`)

	got, err := ReadDNS(context.Background(), f, "swarmsec_agent", now.Add(-time.Hour), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Lookups) != 2 || len(got.Nodes) != 2 || got.Dropped["w1"] != 3 {
		t.Fatalf("lookups %+v nodes %v dropped %v", got.Lookups, got.Nodes, got.Dropped)
	}
	api, db := got.Lookups[0], got.Lookups[1]
	if api.Name != "shop_api" || api.Count != 12 || api.Service != "shop_api" || len(api.Nodes) != 2 ||
		!api.FirstSeen.Equal(t0.Add(-time.Hour)) || !api.LastSeen.Equal(now.Add(-6*time.Minute)) {
		t.Errorf("shop_api: %+v", api)
	}
	if db.Name != "shop_db" || db.Class != agentv1.DNSNXDomain || db.Count != 4 || len(db.Nodes) != 1 || db.Nodes[0] != "w2" {
		t.Errorf("shop_db: %+v", db)
	}
}

// The answers the agents' tables counted and never got (the kernel's
// limit) are summed per node, apart from the lookups.
func TestParseDNSSumsTheUnseen(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	var in strings.Builder
	for i, host := range []string{"w1", "w1", "w2"} {
		d := agentv1.DNS{Node: host, Time: now, Part: 1, Parts: 1, Unseen: uint64(100 * (i + 1)), Lookups: []agentv1.DNSLookup{}}
		fmt.Fprintf(&in, "%s com.docker.swarm.node.id=id%d,com.docker.swarm.service.id=s,com.docker.swarm.task.id=t %s\n",
			now.Format(time.RFC3339Nano), i, dnsLine(t, d))
	}
	got, err := ParseDNS(strings.NewReader(in.String()), now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if got.Unseen["w1"] != 300 || got.Unseen["w2"] != 300 || len(got.Nodes) != 2 {
		t.Errorf("unseen %v, nodes %v", got.Unseen, got.Nodes)
	}
}

// A line over the reader's 1 MiB (the engine's parts of one long line of
// any agent come back joined) is skipped, not the end of the reading:
// every line after it counted nothing.
func TestParseSkipsALineTooLong(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	prefix := now.Format(time.RFC3339Nano) + " com.docker.swarm.node.id=id1,com.docker.swarm.service.id=s,com.docker.swarm.task.id=t "
	d := agentv1.DNS{Node: "w1", Time: now, Part: 1, Parts: 1, Lookups: []agentv1.DNSLookup{
		{Source: "shop_web", Name: "shop_db", Type: "A", Class: agentv1.DNSNXDomain, Count: 3, FirstSeen: now, LastSeen: now}}}
	in := prefix + `{"msg":"x","dns":"` + strings.Repeat("x", 2<<20) + "\"}\n" + prefix + dnsLine(t, d) + "\n"
	got, err := ParseDNS(strings.NewReader(in), now.Add(-time.Hour))
	if err != nil || len(got.Lookups) != 1 || got.Lookups[0].Count != 3 {
		t.Errorf("after a long line: %+v, %v", got, err)
	}
	f := agentv1.Flows{Node: "w1", Time: now, Part: 1, Parts: 1, Flows: []agentv1.Flow{
		{Kind: agentv1.FlowService, Source: "shop_web", Destination: "shop_db", Port: 5432, Protocol: "tcp", Connections: 2, FirstSeen: now, LastSeen: now}}}
	b, _ := json.Marshal(map[string]any{"msg": agentv1.FlowsMessage, agentv1.FlowsKey: f})
	in = prefix + `{"msg":"x","flows":"` + strings.Repeat("x", 2<<20) + "\"}\n" + prefix + string(b) + "\n"
	obs, err := Parse(strings.NewReader(in), now.Add(-time.Hour))
	if err != nil || len(obs.Flows) != 1 || obs.Flows[0].Connections != 2 {
		t.Errorf("flows after a long line: %+v, %v", obs, err)
	}
}
