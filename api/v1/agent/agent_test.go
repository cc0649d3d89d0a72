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
