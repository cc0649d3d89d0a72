package agent

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// oldRules is a rules config as the leader wrote it before these types
// moved here (agentrules.Document of firewall.Ports): agents and leaders
// of both versions run side by side during an upgrade, so the bytes, and
// so the config's name, must not change.
const oldRules = `{
  "apiVersion": "swarmsec.io/v1",
  "kind": "AgentRules",
  "ports": [
    {
      "service": "shop_web",
      "port": 443,
      "protocol": "tcp",
      "from": [
        {
          "cidr": "203.0.113.0/24",
          "except": [
            "203.0.113.9/32"
          ]
        }
      ],
      "log": "blocked"
    },
    {
      "service": "dns",
      "port": 53,
      "protocol": "udp",
      "any": true,
      "log": "all"
    }
  ]
}
`

// oldReport is a node checks report as an agent logged it before.
const oldReport = `{"node":"w1","nodeID":"id1","time":"2026-12-01T17:31:02Z","checks":[{"id":"esp","result":"failed","message":"no ESP","fix":"modprobe esp4"},{"id":"xt_u32","result":"ok","message":"u32"}]}`

func TestRulesKeepTheirBytes(t *testing.T) {
	want := Rules{APIVersion: APIVersion, Kind: KindRules, Ports: []Port{
		{Service: "shop_web", Port: 443, Protocol: v1.ProtocolTCP, From: []v1.SourceBlock{{CIDR: "203.0.113.0/24", Except: []string{"203.0.113.9/32"}}}, Log: v1.PortLogBlocked},
		{Service: "dns", Port: 53, Protocol: v1.ProtocolUDP, Any: true, Log: v1.PortLogAll},
	}}
	b, err := json.MarshalIndent(want, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b) + "\n"; got != oldRules {
		t.Errorf("rules encode as\n%s\nwant\n%s", got, oldRules)
	}
	if got := ConfigName([]byte(oldRules)); got != "swarmsec-agent-rules-03c26218e18e" {
		t.Errorf("config name %s", got)
	}
	var back Rules
	if err := json.Unmarshal([]byte(oldRules), &back); err != nil || !reflect.DeepEqual(back, want) {
		t.Errorf("old rules read as %+v, %v", back, err)
	}
	if k := want.Ports[0].Key(); k != "443/tcp" {
		t.Errorf("key %s", k)
	}
}

func TestReportKeepsItsBytes(t *testing.T) {
	want := Report{Node: "w1", NodeID: "id1", Time: time.Date(2026, 12, 1, 17, 31, 2, 0, time.UTC), Checks: []Check{
		{ID: CheckESP, Result: Failed, Message: "no ESP", Fix: "modprobe esp4"}, {ID: CheckU32, Result: OK, Message: "u32"},
	}}
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != oldReport {
		t.Errorf("report encodes as\n%s\nwant\n%s", b, oldReport)
	}
	var back Report
	if err := json.Unmarshal([]byte(oldReport), &back); err != nil || !back.Equal(&want) || !back.Time.Equal(want.Time) {
		t.Errorf("old report read as %+v, %v", back, err)
	}
	if ok, known := back.CanEncrypt(); ok || !known {
		t.Errorf("a node without ESP: can encrypt %v, known %v", ok, known)
	}
}

// A flows line as the first agents that logged them wrote it: a leader
// reads it back whatever version wrote it.
const oldFlows = `{"node":"w1","time":"2026-12-06T12:01:00Z","interval":"1m0s","part":1,"parts":1,"dropped":2,"flows":[{"kind":"service","source":"shop_api","destination":"shop_db","port":5432,"protocol":"tcp","connections":12,"open":1,"firstSeen":"2026-12-06T11:00:00Z","lastSeen":"2026-12-06T12:00:50Z"},{"kind":"external","source":"shop_web","destination":"outside","destinationBlock":"203.0.113.0/24","port":443,"protocol":"tcp","connections":1,"bytes":900,"firstSeen":"2026-12-06T12:00:10Z","lastSeen":"2026-12-06T12:00:10Z"}]}`

func TestFlowsKeepTheirBytes(t *testing.T) {
	at := func(s string) time.Time { v, _ := time.Parse(time.RFC3339, s); return v }
	want := Flows{Node: "w1", Time: at("2026-12-06T12:01:00Z"), Interval: Duration(time.Minute), Part: 1, Parts: 1, Dropped: 2, Flows: []Flow{
		{Kind: FlowService, Source: "shop_api", Destination: "shop_db", Port: 5432, Protocol: "tcp", Connections: 12, Open: 1, FirstSeen: at("2026-12-06T11:00:00Z"), LastSeen: at("2026-12-06T12:00:50Z")},
		{Kind: FlowExternal, Source: "shop_web", Destination: Outside, DestinationBlock: "203.0.113.0/24", Port: 443, Protocol: "tcp", Connections: 1, Bytes: 900, FirstSeen: at("2026-12-06T12:00:10Z"), LastSeen: at("2026-12-06T12:00:10Z")},
	}}
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != oldFlows {
		t.Errorf("flows encode as\n%s\nwant\n%s", b, oldFlows)
	}
	var back Flows
	if err := json.Unmarshal([]byte(oldFlows), &back); err != nil || !reflect.DeepEqual(back, want) {
		t.Errorf("old flows read as %+v, %v", back, err)
	}
	if got := want.Flows[0].Target(); got != "shop_db:5432/tcp" {
		t.Errorf("target %s", got)
	}
	if got := want.Flows[1].Target(); got != "203.0.113.0/24:443/tcp" {
		t.Errorf("target %s", got)
	}
}

// A DNS line as the first agents that log them write it.
const firstDNS = `{"node":"w1","time":"2026-12-06T12:01:00Z","interval":"1m0s","part":1,"parts":1,"dropped":3,"lookups":[{"source":"shop_web","name":"shop_db","type":"A","class":"vip","service":"shop_db","count":4,"firstSeen":"2026-12-06T11:00:00Z","lastSeen":"2026-12-06T12:00:50Z"},{"source":"shop_web","name":"payments","type":"A","class":"nxdomain","count":1,"firstSeen":"2026-12-06T12:00:10Z","lastSeen":"2026-12-06T12:00:10Z"}]}`

func TestDNSKeepsItsBytes(t *testing.T) {
	at := func(s string) time.Time { v, _ := time.Parse(time.RFC3339, s); return v }
	want := DNS{Node: "w1", Time: at("2026-12-06T12:01:00Z"), Interval: Duration(time.Minute), Part: 1, Parts: 1, Dropped: 3, Lookups: []DNSLookup{
		{Source: "shop_web", Name: "shop_db", Type: "A", Class: DNSVIP, Service: "shop_db", Count: 4, FirstSeen: at("2026-12-06T11:00:00Z"), LastSeen: at("2026-12-06T12:00:50Z")},
		{Source: "shop_web", Name: "payments", Type: "A", Class: DNSNXDomain, Count: 1, FirstSeen: at("2026-12-06T12:00:10Z"), LastSeen: at("2026-12-06T12:00:10Z")},
	}}
	b, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != firstDNS {
		t.Errorf("dns encodes as\n%s\nwant\n%s", b, firstDNS)
	}
	var back DNS
	if err := json.Unmarshal([]byte(firstDNS), &back); err != nil || !reflect.DeepEqual(back, want) {
		t.Errorf("dns read as %+v, %v", back, err)
	}
}
