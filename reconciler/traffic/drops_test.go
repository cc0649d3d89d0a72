package traffic

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// dropLine is a flow record line as the agent logs it and a manager's
// service logs give it (timestamp, details, then the JSON).
func dropLine(t *testing.T, at time.Time, nodeID string, r agentv1.FlowRecord) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"time": r.Time, "level": "WARN", "msg": agentv1.FlowRecordMessage, agentv1.FlowRecordKey: r, "suppressed": 0})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s com.docker.swarm.node.id=%s,com.docker.swarm.service.id=agent %s", at.UTC().Format(time.RFC3339Nano), nodeID, b)
}

func record(at time.Time, node string, src, dst agentv1.FlowEndpoint, policy string) agentv1.FlowRecord {
	return agentv1.FlowRecord{Time: at, Node: node, Source: src, Destination: dst, Protocol: "tcp", Verdict: agentv1.VerdictBlocked, Direction: "egress", Policy: policy}
}

// The records of the window are summed per source, destination (service
// or outside block), port and protocol, with the nodes that dropped them
// and the policies that decided; the flows lines of the same logs are read
// as before.
func TestParseWithDropsSumsTheRecords(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	api := agentv1.FlowEndpoint{Service: "shop_api", Task: "shop_api.1.x", IP: "10.0.1.3", Port: 40000}
	db := agentv1.FlowEndpoint{Service: "shop_db", Task: "shop_db.1.y", IP: "10.0.1.4", Port: 5432}
	out := agentv1.FlowEndpoint{IP: "203.0.113.9", Port: 443}
	client := agentv1.FlowEndpoint{IP: "2001:db8:1:2::7", Port: 50000}
	web := agentv1.FlowEndpoint{Service: "shop_web", Task: "shop_web.1.z", IP: "10.0.1.5", Port: 80}
	in, eg := "default deny: ingress of shop_db (policy shop-db)", "default deny: egress of shop_api (policy shop-api)"
	t0, t1, t2 := now.Add(-30*time.Minute), now.Add(-20*time.Minute), now.Add(-10*time.Minute)
	lines := []string{
		dropLine(t, now.Add(-2*time.Hour), "id1", record(now.Add(-2*time.Hour), "w1", api, db, in)), // before the window
		dropLine(t, t0, "id1", record(t0, "w1", api, db, in)),
		dropLine(t, t1, "id2", record(t1, "w2", api, db, in)),
		dropLine(t, t2, "id2", record(t2, "w2", api, db, eg)),
		dropLine(t, t2, "id1", record(t2, "w1", api, out, eg)),
		dropLine(t, t2, "id1", record(t2, "", client, web, "default deny: ingress of shop_web (policy web)")),
		dropLine(t, t2, "id1", record(t2, "w1", out, client, "x")),                                                             // neither end a service
		dropLine(t, t2, "", record(t2, "w1", api, db, in)),                                                                     // no node: speaks for none
		strings.Replace(dropLine(t, t2, "id1", record(t2, "w1", api, db, in)), `"verdict":"blocked"`, `"verdict":"traced"`, 1), // a verdict it does not know
		fmt.Sprintf("%s com.docker.swarm.node.id=id3 %s", t1.Format(time.RFC3339Nano),
			flowsLine(t, agentv1.Flows{Node: "w3", Part: 1, Parts: 1, Flows: []agentv1.Flow{flow(agentv1.FlowService, "shop_web", "shop_api", 80, 4, t0, t1)}})),
	}
	obs, drops, err := ParseWithDrops(strings.NewReader(strings.Join(lines, "\n")+"\n"), now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(obs.Flows) != 1 || obs.Flows[0].Connections != 4 || strings.Join(obs.Nodes, ",") != "w3" {
		t.Errorf("observed %+v", obs)
	}
	if len(drops) != 3 {
		t.Fatalf("drops %+v", drops)
	}
	pub, toOut, toDB := drops[0], drops[1], drops[2] // by source, then destination
	if toDB.Kind != agentv1.FlowService || toDB.Target() != "shop_db:5432/tcp" || toDB.Connections != 3 || strings.Join(toDB.Nodes, ",") != "w1,w2" ||
		!toDB.FirstSeen.Equal(t0) || !toDB.LastSeen.Equal(t2) || toDB.Verdict != Blocked || toDB.Why != eg+"; "+in {
		t.Errorf("api -> db %+v", toDB)
	}
	if toOut.Kind != agentv1.FlowExternal || toOut.Target() != "203.0.113.0/24:443/tcp" || toOut.Connections != 1 {
		t.Errorf("api -> outside %+v", toOut)
	}
	if pub.Kind != agentv1.FlowPublished || pub.From() != "outside 2001:db8:1:2::/64" || pub.Target() != "shop_web:80/tcp" || strings.Join(pub.Nodes, ",") != "id1" {
		t.Errorf("outside -> web %+v", pub)
	}

	// Merged, they are blocked flows beside the observed ones, and their
	// nodes count as nodes that reported.
	AddDrops(obs, drops)
	if len(obs.Flows) != 4 || strings.Join(obs.Nodes, ",") != "id1,w1,w2,w3" {
		t.Errorf("merged %+v", obs)
	}
	for _, f := range obs.Flows {
		if (f.Verdict == Blocked) == (f.Destination == "shop_api") {
			t.Errorf("merged %s -> %s: %s", f.From(), f.Target(), f.Verdict)
		}
	}

	// Parse alone keeps to the observed flows.
	only, err := Parse(strings.NewReader(strings.Join(lines, "\n")), now.Add(-time.Hour))
	if err != nil || len(only.Flows) != 1 {
		t.Errorf("Parse: %+v, %v", only, err)
	}
}

// A would-block record (an audit-mode policy's log-only rules) makes the
// observed flow of its key would-block, or is a flow of its own when none
// was observed; an allowed record (log: all) is counted by the observed
// flow of its key, or is a flow of its own.
func TestAddDropsMergesWouldBlockAndAllowed(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	api := agentv1.FlowEndpoint{Service: "shop_api", Task: "shop_api.1.x", IP: "10.0.1.3", Port: 40000}
	db := agentv1.FlowEndpoint{Service: "shop_db", Task: "shop_db.1.y", IP: "10.0.1.4", Port: 5432}
	web := agentv1.FlowEndpoint{Service: "shop_web", Task: "shop_web.1.z", IP: "10.0.1.5", Port: 80}
	rec := func(src, dst agentv1.FlowEndpoint, verdict, policy string) agentv1.FlowRecord {
		r := record(now, "w1", src, dst, policy)
		r.Verdict = verdict
		return r
	}
	audit := "audit: default deny: ingress of shop_db (policy db-audit)"
	lines := []string{
		dropLine(t, now, "id1", rec(api, db, agentv1.VerdictWouldBlock, audit)),
		dropLine(t, now, "id1", rec(api, web, agentv1.VerdictWouldBlock, audit)),
		dropLine(t, now, "id1", rec(web, agentv1.FlowEndpoint{Service: "shop_api", IP: "10.0.1.3", Port: 80}, agentv1.VerdictAllowed, "api/ingress[0]")),
		dropLine(t, now, "id1", rec(web, db, agentv1.VerdictAllowed, "db/ingress[0]")),
		fmt.Sprintf("%s com.docker.swarm.node.id=id1 %s", now.Format(time.RFC3339Nano),
			flowsLine(t, agentv1.Flows{Node: "w1", Part: 1, Parts: 1, Flows: []agentv1.Flow{
				flow(agentv1.FlowService, "shop_api", "shop_db", 5432, 2, now, now), flow(agentv1.FlowService, "shop_web", "shop_api", 80, 5, now, now),
			}})),
	}
	obs, drops, err := ParseWithDrops(strings.NewReader(strings.Join(lines, "\n")+"\n"), now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	for i := range obs.Flows {
		obs.Flows[i].Verdict = Allowed // as Judge finds them: the networks let them talk
	}
	AddDrops(obs, drops)
	got := map[string]string{}
	for _, f := range obs.Flows {
		got[f.From()+" -> "+f.Target()] = fmt.Sprintf("%s %d %s", f.Verdict, f.Connections, f.Why)
	}
	want := map[string]string{
		"shop_api -> shop_db:5432/tcp": "would-block 2 " + audit, // observed, judged by the data path
		"shop_api -> shop_web:80/tcp":  "would-block 1 " + audit, // not observed
		"shop_web -> shop_api:80/tcp":  "allowed 5 ",             // the observed flow counts it
		"shop_web -> shop_db:5432/tcp": "allowed 1 db/ingress[0]",
	}
	if len(got) != len(want) || len(obs.Flows) != len(want) {
		t.Fatalf("merged %v", got)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %q, want %q", k, got[k], w)
		}
	}
}
