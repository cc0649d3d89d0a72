package datapath

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/swarmsec/swarmsec/agent/tasks"
	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// tcpPacket is an IPv4 TCP header pair as NFLOG hands it over.
func tcpPacket(src, dst netip.Addr, sport, dport uint16) []byte {
	p := make([]byte, 40)
	p[0], p[9] = 0x45, 6
	copy(p[12:16], src.AsSlice())
	copy(p[16:20], dst.AsSlice())
	binary.BigEndian.PutUint16(p[20:22], sport)
	binary.BigEndian.PutUint16(p[22:24], dport)
	return p
}

// Each log prefix becomes a flow record of its verdict, naming what
// decided: the policies isolating the side that refused (blocked), the
// audit-mode ones too (would-block), the rules with log: all (allowed).
func TestRecordsCarryTheVerdictAndWhatDecided(t *testing.T) {
	apiAddr, dbAddr := netip.MustParseAddr("10.0.1.3"), netip.MustParseAddr("10.0.1.5")
	n := &tasks.Network{ID: "n", Services: map[string]*tasks.Endpoints{
		"api": {Tasks: map[netip.Addr]string{apiAddr: "api.1.a"}},
		"db":  {Tasks: map[netip.Addr]string{dbAddr: "db.1.b"}},
	}}
	api := tasks.Task{Name: "api.1.a", Service: "api", Addrs: map[string]netip.Addr{"n": apiAddr}}
	var logs bytes.Buffer
	e := &Enforcer{Node: "w1", Log: slog.New(slog.NewJSONHandler(&logs, nil)), Flows: NewFlows(), FlowsPerSecond: 100}
	e.view = &tasks.View{Tasks: []tasks.Task{api}, Networks: map[string]*tasks.Network{"n": n}}
	e.rules = &agentv1.Rules{
		Services: []agentv1.ServiceRules{{Service: "db", IngressIsolated: true, Ingress: []agentv1.Rule{
			{Policy: "db/ingress[0]", Services: []string{"api"}, Ports: []agentv1.PortRange{{Protocol: v1.ProtocolTCP, Port: 8080}}, LogAllowed: true}}}},
		Audit: []agentv1.ServiceRules{{Service: "api", EgressIsolated: true, Egress: []agentv1.Rule{
			{Policy: "api-audit/egress[0]", Services: []string{"db"}, Ports: []agentv1.PortRange{{Protocol: v1.ProtocolTCP, Port: 7070}}}}}},
	}
	for _, c := range []struct {
		prefix  string
		port    uint16
		verdict string
		policy  string
	}{
		{PrefixOut, 9090, agentv1.VerdictBlocked, "default deny: ingress of db (policy db)"},
		{PrefixAllowOut, 8080, agentv1.VerdictAllowed, "db/ingress[0]"},
		{PrefixAuditOut + "\x00", 8080, agentv1.VerdictWouldBlock, "audit: default deny: egress of api (policy api-audit)"},
	} {
		logs.Reset()
		e.record(&api, c.prefix, tcpPacket(apiAddr, dbAddr, 40000, c.port))
		var line struct {
			Flow agentv1.FlowRecord `json:"flow"`
		}
		if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
			t.Fatalf("%s: %v: %s", c.prefix, err, logs.String())
		}
		f := line.Flow
		if f.Verdict != c.verdict || f.Policy != c.policy || f.Direction != "egress" || f.Source.Task != "api.1.a" ||
			f.Destination.Service != "db" || f.Destination.Port != c.port || f.Node != "w1" {
			t.Errorf("%q: %+v", c.prefix, f)
		}
		if got := testutil.ToFloat64(e.Flows.WithLabelValues("egress", "api", "db", c.verdict)); got != 1 {
			t.Errorf("%s counted %v times", c.verdict, got)
		}
	}
	logs.Reset()
	e.record(&api, "someone else's", tcpPacket(apiAddr, dbAddr, 40000, 80))
	if logs.Len() != 0 {
		t.Errorf("a foreign prefix made a record: %s", logs.String())
	}
}
