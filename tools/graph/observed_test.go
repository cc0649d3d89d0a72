package graph

import (
	"bytes"
	"strings"
	"testing"
	"time"

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/reconciler/traffic"
)

// Observed, each allowed edge is drawn used or never used, and what the
// policies block is drawn as attempted, in every format.
func TestObservedEdges(t *testing.T) {
	services := shopServices(true)
	g := Build(compileShop(t, services), services)
	fl := func(kind, src, dst string, port uint16, verdict string) traffic.Flow {
		return traffic.Flow{Flow: agentv1.Flow{Kind: kind, Source: src, Destination: dst, Port: port, Protocol: "tcp", Connections: 4}, Verdict: verdict}
	}
	g.Observe([]traffic.Flow{
		fl(agentv1.FlowService, "shop_api", "shop_db", 5432, traffic.Allowed),
		fl(agentv1.FlowService, "shop_web", "shop_db", 5432, traffic.WouldBlock),
		fl(agentv1.FlowExternal, "shop_web", agentv1.Outside, 443, traffic.Allowed),
		fl(agentv1.FlowService, "other_x", "shop_api", 80, traffic.Allowed), // api is not isolated
	})
	var dot bytes.Buffer
	if err := g.DOT(&dot); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`"shop_api" -- "shop_db" [color="#1565c0", penwidth=2, label="5432/tcp (4)"];`,
		`"shop_api" -- "shop_web" [color=gray, style=dashed, label="never used"];`,
		`"shop_db" -- "shop_web" [color=red, style=bold, label="blocked 5432/tcp (4)"];`,
		`"outside" -- "shop_web" [color="#1565c0", penwidth=2, label="443/tcp (4)"];`,
		`"other_x" -- "shop_api" [color="#1565c0"`,
	} {
		if !strings.Contains(dot.String(), want) {
			t.Errorf("DOT lacks %s\n%s", want, dot.String())
		}
	}
	var mm, svg bytes.Buffer
	if err := g.Mermaid(&mm); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(mm.String(), `--"blocked 5432/tcp (4)"--x`) || !strings.Contains(mm.String(), `-."never used".-`) {
		t.Errorf("Mermaid:\n%s", mm.String())
	}
	if err := g.SVG(&svg); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`class="edge attempted" data-from="shop_db" data-to="shop_web"`, `class="edge unused"`, `class="edge used" data-from="shop_web" data-to="outside"`} {
		if !strings.Contains(svg.String(), want) {
			t.Errorf("SVG lacks %s", want)
		}
	}
}

// The agents' drops, summed by traffic, are drawn as attempted and blocked
// edges (graph --observed).
func TestObservedDrops(t *testing.T) {
	services := shopServices(true)
	g := Build(compileShop(t, services), services)
	rec := func(at string) string {
		return at + ` com.docker.swarm.node.id=n1 {"msg":"flow","flow":{"node":"w1","source":{"service":"shop_db","ip":"10.0.1.4","port":40000},"destination":{"ip":"203.0.113.9","port":443},"protocol":"tcp","verdict":"blocked","policy":"default deny: egress of shop_db (policy shop-db)"}}`
	}
	now := time.Now().UTC()
	logs := rec(now.Add(-2*time.Minute).Format(time.RFC3339Nano)) + "\n" + rec(now.Add(-time.Minute).Format(time.RFC3339Nano)) + "\n"
	obs, drops, err := traffic.ParseWithDrops(strings.NewReader(logs), now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	traffic.AddDrops(obs, drops)
	g.Observe(obs.Flows)
	var dot bytes.Buffer
	if err := g.DOT(&dot); err != nil {
		t.Fatal(err)
	}
	if want := `"outside" -- "shop_db" [color=red, style=bold, label="blocked 443/tcp (2)"];`; !strings.Contains(dot.String(), want) {
		t.Errorf("DOT lacks %s\n%s", want, dot.String())
	}
}
