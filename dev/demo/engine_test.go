package main

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs/pkg/errhttp"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/testing/fake"
)

// engine serves a fake Swarm as the Engine API over a unix socket, for the
// read calls `swarmsec plan` and the demo helper's waits make. Each
// request is counted, so a test can tell which engine a command asked.
type engine struct {
	f      *fake.Swarm
	socket string

	mu    sync.Mutex
	calls []string
}

// serveEngine serves f on a socket in a fresh folder until the test ends.
func serveEngine(t *testing.T, f *fake.Swarm) *engine {
	t.Helper()
	e := &engine{f: f, socket: filepath.Join(t.TempDir(), "docker.sock")}
	l, err := net.Listen("unix", e.socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: e}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return e
}

// Host is the engine's DOCKER_HOST.
func (e *engine) Host() string { return "unix://" + e.socket }

// Calls lists the requests served so far, "GET /info" style.
func (e *engine) Calls() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.calls...)
}

var apiVersion = regexp.MustCompile(`^/v[0-9.]+`)

func (e *engine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := apiVersion.ReplaceAllString(r.URL.Path, "")
	e.mu.Lock()
	e.calls = append(e.calls, r.Method+" "+path)
	e.mu.Unlock()
	ctx, q := r.Context(), r.URL.Query()
	args, err := filters.FromJSON(q.Get("filters"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	var out any
	switch {
	case path == "/_ping":
		w.Header().Set("Api-Version", "1.41")
		_, _ = io.WriteString(w, "OK")
		return
	case r.Method != http.MethodGet:
		writeError(w, http.StatusNotImplemented, errors.New("fake engine: read-only"))
		return
	case path == "/info":
		out, err = e.f.Info(ctx)
	case path == "/services":
		out, err = e.f.ServiceList(ctx, swarm.ServiceListOptions{Filters: args, Status: q.Get("status") == "true"})
	case strings.HasPrefix(path, "/services/") && strings.HasSuffix(path, "/logs"):
		id := strings.TrimSuffix(strings.TrimPrefix(path, "/services/"), "/logs")
		var rc io.ReadCloser
		if rc, err = e.f.ServiceLogs(ctx, id, container.LogsOptions{}); err == nil {
			defer rc.Close()
			_, _ = io.Copy(w, rc)
			return
		}
	case strings.HasPrefix(path, "/services/"):
		out, _, err = e.f.ServiceInspectWithRaw(ctx, strings.TrimPrefix(path, "/services/"), swarm.ServiceInspectOptions{})
	case path == "/networks":
		out, err = e.f.NetworkList(ctx, network.ListOptions{Filters: args})
	case strings.HasPrefix(path, "/networks/"):
		out, err = e.f.NetworkInspect(ctx, strings.TrimPrefix(path, "/networks/"), network.InspectOptions{})
	case path == "/nodes":
		out, err = e.f.NodeList(ctx, swarm.NodeListOptions{Filters: args})
	case path == "/tasks":
		out, err = e.f.TaskList(ctx, swarm.TaskListOptions{Filters: args})
	case path == "/configs":
		out, err = e.f.ConfigList(ctx, swarm.ConfigListOptions{Filters: args})
	case path == "/containers/json":
		out, err = e.f.ContainerList(ctx, container.ListOptions{All: q.Get("all") == "1", Filters: args})
	default:
		writeError(w, http.StatusNotFound, errors.New("fake engine: no route "+path))
		return
	}
	if err != nil {
		writeError(w, errhttp.ToHTTP(err), err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// writeError answers as the engine does; the client adds "Error response
// from daemon: " again.
func writeError(w http.ResponseWriter, status int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	msg := strings.TrimPrefix(err.Error(), "Error response from daemon: ")
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}
