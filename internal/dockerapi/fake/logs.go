package fake

import (
	"bytes"
	"context"
	"io"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/pkg/stdcopy"

	"github.com/swarmsec/swarmsec/internal/dockerapi"
)

// AddServiceLog appends a line to what a service's tasks logged (stdout),
// as if one of them had written it. Since, Until, Tail and Follow are not
// modelled: ServiceLogs returns every line logged so far.
func (f *Swarm) AddServiceLog(service, line string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	svc, err := f.findServiceLocked(service)
	if err != nil {
		panic("fake: AddServiceLog: " + err.Error())
	}
	if f.logs == nil {
		f.logs = map[string][]string{}
	}
	f.logs[svc.ID] = append(f.logs[svc.ID], strings.TrimSuffix(line, "\n")+"\n")
}

// ServiceLogs implements dockerapi.API: the lines AddServiceLog added, in
// the engine's multiplexed stream.
func (f *Swarm) ServiceLogs(ctx context.Context, serviceID string, options container.LogsOptions) (io.ReadCloser, error) {
	if err := f.begin(ctx, dockerapi.OpServiceLogs); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.requireManagerLocked(); err != nil {
		return nil, err
	}
	svc, err := f.findServiceLocked(serviceID)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if options.ShowStdout {
		w := stdcopy.NewStdWriter(&buf, stdcopy.Stdout)
		for _, l := range f.logs[svc.ID] {
			_, _ = w.Write([]byte(l))
		}
	}
	return io.NopCloser(&buf), nil
}
