package fake

import (
	"bytes"
	"context"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
)

// logLine is one line a task logged.
type logLine struct {
	at     time.Time
	nodeID string
	text   string
}

// AddServiceLog appends a line to what a service's tasks logged (stdout),
// as if one of its tasks on this node had written it now.
func (f *Swarm) AddServiceLog(service, line string) {
	f.AddServiceLogFrom(service, "", time.Time{}, line)
}

// AddServiceLogFrom is AddServiceLog from a task on the node of that ID
// (this node when empty), at that time (now when zero). Since, Until,
// Tail and Follow are not modelled: ServiceLogs returns every line.
func (f *Swarm) AddServiceLogFrom(service, nodeID string, at time.Time, line string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	svc, err := f.findServiceLocked(service)
	if err != nil {
		panic("fake: AddServiceLog: " + err.Error())
	}
	if nodeID == "" {
		nodeID = f.localNode
	}
	if at.IsZero() {
		at = time.Now()
	}
	if f.logs == nil {
		f.logs = map[string][]logLine{}
	}
	f.logs[svc.ID] = append(f.logs[svc.ID], logLine{at: at.UTC(), nodeID: nodeID, text: strings.TrimSuffix(line, "\n") + "\n"})
}

// ServiceLogs implements dockerapi.API: the lines added, in the engine's
// multiplexed stream, with the engine's timestamp ("2006-01-02T15:04:05.000000000Z07:00 ")
// and details ("com.docker.swarm.node.id=…,com.docker.swarm.service.id=… ")
// prefixes when asked.
func (f *Swarm) ServiceLogs(ctx context.Context, serviceID string, options container.LogsOptions) (io.ReadCloser, error) {
	unlock, err := f.swarmCall(ctx, dockerapi.OpServiceLogs)
	if err != nil {
		return nil, err
	}
	defer unlock()
	svc, err := f.findServiceLocked(serviceID)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if options.ShowStdout {
		w := stdcopy.NewStdWriter(&buf, stdcopy.Stdout)
		for _, l := range f.logs[svc.ID] {
			line := l.text
			if options.Details {
				line = "com.docker.swarm.node.id=" + url.QueryEscape(l.nodeID) + ",com.docker.swarm.service.id=" + url.QueryEscape(svc.ID) + " " + line
			}
			if options.Timestamps {
				line = l.at.Format("2006-01-02T15:04:05.000000000Z07:00") + " " + line
			}
			_, _ = w.Write([]byte(line))
		}
	}
	return io.NopCloser(&buf), nil
}
