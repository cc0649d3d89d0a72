package nodecheck

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/testing/fake"
)

func logLine(t *testing.T, r agentv1.Report) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"time": r.Time, "level": "INFO", "msg": agentv1.ReportMessage, agentv1.ReportKey: r})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReaderTakesEachNodesLatestReport(t *testing.T) {
	f := fake.New()
	spec := swarm.ServiceSpec{}
	spec.Name = "swarmsec_agent"
	spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "swarmsec"}
	f.AddService(spec)
	now := time.Now().UTC()
	esp := func(node, result string) agentv1.Report {
		return agentv1.Report{Node: node, Time: now, Checks: []agentv1.Check{{ID: agentv1.CheckESP, Result: result, Message: "esp " + result, Fix: "modprobe esp4"}}}
	}
	add := func(nodeID string, at time.Time, r agentv1.Report) {
		f.AddServiceLogFrom("swarmsec_agent", nodeID, at, logLine(t, r))
	}
	add("id1", now.Add(-time.Minute), esp("w1", agentv1.OK))
	add("id1", now, esp("w1", agentv1.Failed))
	add("id2", now, esp("w2", agentv1.OK))
	add("id3", now.Add(-2*agentv1.ReportMaxAge), esp("gone", agentv1.Failed))
	// A line from w2's task claiming to be w1's, dated ahead, speaks for
	// w2 and at the time Swarm logged it.
	forged := esp("w1", agentv1.OK)
	forged.NodeID, forged.Time = "id1", now.Add(time.Hour)
	add("id2", now.Add(-30*time.Second), forged)
	f.AddServiceLogFrom("swarmsec_agent", "id2", now, "not json "+agentv1.ReportMessage)
	f.AddServiceLogFrom("swarmsec_agent", "id2", now, `{"msg":"connection attempts"}`)

	r := &Reader{Docker: f, Service: "swarmsec_agent"}
	reports, err := r.Reports(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 2 || reports["id1"].Checks[0].Result != agentv1.Failed || reports["id2"].Node != "w2" || reports["id2"].Checks[0].Result != agentv1.OK {
		t.Fatalf("reports %+v", reports)
	}
	enc := Encryption(reports)
	if enc["id1"].OK || enc["id1"].Fix != "modprobe esp4" || !enc["id2"].OK {
		t.Errorf("encryption %+v", enc)
	}
	// Cached until Every passes; a missing service gives nothing.
	if c, _ := r.Cached(); len(c) != 2 {
		t.Errorf("cached %d reports", len(c))
	}
	missing := &Reader{Docker: f, Service: "no_agent"}
	if reports, err := missing.Reports(context.Background()); err != nil || len(reports) != 0 {
		t.Errorf("missing agent service: %v, %v", reports, err)
	}
}

// A line over 1 MiB is skipped, not the end of the reading: every later
// node's report was ignored, with no error.
func TestLatestSkipsALineTooLong(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	prefix := func(id string) string {
		return now.Format(time.RFC3339Nano) + " com.docker.swarm.node.id=" + id + ",com.docker.swarm.service.id=s,com.docker.swarm.task.id=t "
	}
	r := agentv1.Report{Node: "w2", Time: now, Checks: []agentv1.Check{{ID: agentv1.CheckESP, Result: agentv1.OK}}}
	in := prefix("id1") + `{"msg":"` + agentv1.ReportMessage + `","x":"` + strings.Repeat("x", 2<<20) + "\"}\n" + prefix("id2") + logLine(t, r) + "\n"
	got, err := Latest(strings.NewReader(in))
	if err != nil || len(got) != 1 || got["id2"].Node != "w2" {
		t.Errorf("after a long line: %+v, %v", got, err)
	}
}

// Only the engine's 404 for the service means "no agent service": another
// error whose text says "not found" is an error, not an empty answer.
func TestReaderTellsNoServiceByItsStatus(t *testing.T) {
	f := fake.New()
	spec := swarm.ServiceSpec{}
	spec.Name = "swarmsec_agent"
	spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "swarmsec"}
	f.AddService(spec)
	f.FailNext(dockerapi.OpServiceLogs, dockerapi.NewDaemonError(http.StatusInternalServerError, "node xyz not found in the raft store"))
	r := &Reader{Docker: f, Service: "swarmsec_agent"}
	if _, err := r.Reports(context.Background()); err == nil {
		t.Errorf("a 500 mentioning not found read as no agent service")
	}
}
