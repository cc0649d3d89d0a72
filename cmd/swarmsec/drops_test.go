package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/swarmsec/reconciler/traffic"
)

func TestPrintFlows(t *testing.T) {
	logs := `com.docker.swarm.node.id=n1abcdefgh,com.docker.swarm.service.id=s,com.docker.swarm.task.id=t {"time":"2026-12-06T23:00:00Z","level":"WARN","msg":"flow","flow":{"time":"2026-12-06T23:00:00Z","node":"w1","source":{"service":"shop_api","task":"shop_api.1.x","ip":"10.0.1.3","port":40000},"destination":{"service":"shop_db","task":"shop_db.1.y","ip":"10.0.1.4","port":9090},"protocol":"tcp","verdict":"blocked","direction":"egress","policy":"default deny: ingress of shop_db (policy shop-db)"},"suppressed":0}
com.docker.swarm.node.id=n1 {"msg":"connection attempts"}
com.docker.swarm.node.id=n2 {"msg":"flow","flow":{"node":"w2","source":{"service":"other","ip":"10.0.2.3"},"destination":{"ip":"203.0.113.1","port":443},"protocol":"tcp","verdict":"blocked","policy":"default deny: egress of other (policy o)"}}
`
	var out bytes.Buffer
	if err := printDrops(&out, strings.NewReader(logs), "blocked", "table", "shop_db", false); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"w1(n1abcdef)", "shop_api.1.x/10.0.1.3:40000", "shop_db.1.y/10.0.1.4:9090", "blocked", "default deny: ingress of shop_db (policy shop-db)"} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "203.0.113.1") {
		t.Errorf("--service shop_db shows another service's flow:\n%s", got)
	}
	out.Reset()
	if err := printDrops(&out, strings.NewReader(logs), "blocked", "json", "", false); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 2 || !strings.Contains(out.String(), `"nodeID":"n2"`) {
		t.Errorf("json:\n%s", out.String())
	}

	// Records of the other verdicts are listed by theirs only.
	more := logs + strings.ReplaceAll(strings.SplitN(logs, "\n", 2)[0], `"verdict":"blocked"`, `"verdict":"would-block"`) + "\n"
	for _, v := range []string{"would-block", "allowed"} {
		out.Reset()
		if err := printDrops(&out, strings.NewReader(more), v, "json", "", false); err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(out.String(), `"verdict":"`+v+`"`); n != map[string]int{"would-block": 1, "allowed": 0}[v] || strings.Contains(out.String(), `"blocked"`) {
			t.Errorf("--verdict %s --records:\n%s", v, out.String())
		}
	}
}

// The default view shows the drops of the window as blocked aggregates
// beside the observed flows, with their counts and the policy that
// decided, in the table and in JSON.
func TestFlowsShowTheDropsBlocked(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	at := now.Add(-5 * time.Minute).Format(time.RFC3339Nano)
	drop := at + ` com.docker.swarm.node.id=n1abcdefgh,com.docker.swarm.service.id=s {"time":"` + at + `","level":"WARN","msg":"flow","flow":{"time":"` + at + `","node":"w1","source":{"service":"shop_web","task":"shop_web.1.x","ip":"10.0.1.3","port":40000},"destination":{"service":"shop_db","task":"shop_db.1.y","ip":"10.0.1.4","port":5432},"protocol":"tcp","verdict":"blocked","direction":"egress","policy":"default deny: ingress of shop_db (policy shop-db)"},"suppressed":0}`
	flows := at + ` com.docker.swarm.node.id=n2 {"msg":"flows","flows":{"node":"w2","flows":[{"kind":"service","source":"shop_web","destination":"shop_api","port":80,"protocol":"tcp","connections":4,"unanswered":1,"firstSeen":"` + at + `","lastSeen":"` + at + `"}]}}`
	logs := strings.Join([]string{drop, drop, flows, drop}, "\n") + "\n"
	obs, drops, err := traffic.ParseWithDrops(strings.NewReader(logs), now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	obs.Flows[0].Verdict = traffic.Allowed // as Judge would
	traffic.AddDrops(obs, drops)

	var out bytes.Buffer
	printFlows(&out, obs, now)
	got := out.String()
	for _, want := range []string{
		"shop_web  shop_db:5432/tcp  3 ", "w1 ", "blocked\n",
		"blocked: shop_web -> shop_db:5432/tcp: default deny: ingress of shop_db (policy shop-db)\n",
		"shop_web  shop_api:80/tcp   4 (1 unanswered) ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
	b, err := json.Marshal(obs)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"destination":"shop_db","port":5432,"protocol":"tcp","connections":3,`) ||
		!strings.Contains(string(b), `"verdict":"blocked","why":"default deny: ingress of shop_db (policy shop-db)"`) ||
		!strings.Contains(string(b), `"nodes":["w1","w2"]`) {
		t.Errorf("json: %s", b)
	}
}

// A line over 1 MiB is skipped, not the end of the reading: every later
// flow record was left out, with no error.
func TestPrintDropsSkipsALineTooLong(t *testing.T) {
	logs := `com.docker.swarm.node.id=n1 {"msg":"flow","x":"` + strings.Repeat("x", 2<<20) + `"}
com.docker.swarm.node.id=n2 {"msg":"flow","flow":{"node":"w2","source":{"service":"other","ip":"10.0.2.3"},"destination":{"ip":"203.0.113.1","port":443},"protocol":"tcp","verdict":"blocked","policy":"p"}}
`
	var out bytes.Buffer
	if err := printDrops(&out, strings.NewReader(logs), "blocked", "json", "", false); err != nil || !strings.Contains(out.String(), "203.0.113.1") {
		t.Errorf("after a long line: %q, %v", out.String(), err)
	}
}
