package main

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/testing/fake"
)

// Only the engine's 404 for the agent service means "no agents, no
// lookups" silently; another error whose text says "not found" is
// reported.
func TestAuditLookupsTellNoServiceByItsStatus(t *testing.T) {
	f := fake.New()
	var w bytes.Buffer
	if got := auditLookups(context.Background(), &w, f, "no_agent", time.Now().Add(-time.Hour)); got != nil || w.Len() != 0 {
		t.Errorf("no agent service: %v, %q", got, w.String())
	}
	spec := swarm.ServiceSpec{}
	spec.Name = "swarmsec_agent"
	spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "swarmsec"}
	f.AddService(spec)
	f.FailNext(dockerapi.OpServiceLogs, dockerapi.NewDaemonError(http.StatusInternalServerError, "node xyz not found in the raft store"))
	if got := auditLookups(context.Background(), &w, f, "swarmsec_agent", time.Now().Add(-time.Hour)); got != nil || !strings.Contains(w.String(), "DNS lookups not read") {
		t.Errorf("a 500 mentioning not found: %v, %q", got, w.String())
	}
}
