//go:build integration

package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/status"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// statusBinary builds cmd/swarmsec into the test's temporary directory:
// these tests run the command operators run.
func statusBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "swarmsec")
	cmd := exec.Command("go", "build", "-o", bin, "../../cmd/swarmsec")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// statusProc is a running `swarmsec run`.
type statusProc struct {
	cmd  *exec.Cmd
	base string // http://127.0.0.1:PORT

	mu   sync.Mutex
	logs []map[string]any
	raw  bytes.Buffer
}

// statusRun starts `swarmsec run --listen 127.0.0.1:0 args...`, waits for
// its endpoints and stops it with SIGTERM when the test ends, checking that
// it exits cleanly.
func statusRun(ctx context.Context, t *testing.T, bin string, args ...string) *statusProc {
	t.Helper()
	args = append([]string{"run", "--listen", "127.0.0.1:0", "--log-format", "json", "--log-level", "debug"}, args...)
	p := &statusProc{cmd: exec.CommandContext(ctx, bin, args...)}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			var rec map[string]any
			p.mu.Lock()
			p.raw.Write(append(line, '\n'))
			if json.Unmarshal(line, &rec) == nil {
				p.logs = append(p.logs, rec)
				if a, ok := rec["addr"].(string); ok && strings.HasPrefix(rec["msg"].(string), "serving") {
					addr <- a
				}
			}
			p.mu.Unlock()
		}
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		signalled := time.Now()
		waited := make(chan error, 1)
		go func() { <-scanned; waited <- p.cmd.Wait() }()
		select {
		case err := <-waited:
			if err != nil {
				t.Errorf("swarmsec run did not exit cleanly on SIGTERM: %v", err)
			}
			t.Logf("swarmsec run stopped %s after SIGTERM", time.Since(signalled).Round(time.Millisecond))
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			t.Errorf("swarmsec run did not stop within 10s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("swarmsec run log:\n%s", p.rawLog())
		}
		// The lease outlives a run, as a Kubernetes Lease does; the test
		// leaves the engine as it found it.
		_ = exec.Command("docker", "config", "rm", "swarmsec-leader").Run()
	}
	t.Cleanup(stop)
	select {
	case p.base = <-addr:
	case <-time.After(time.Minute):
		t.Fatalf("swarmsec run did not serve within a minute:\n%s", p.rawLog())
	}
	return p
}

// rawLog is everything the process logged.
func (p *statusProc) rawLog() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.raw.String()
}

// logged returns the log records whose msg is msg.
func (p *statusProc) logged(msg string) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string]any
	for _, r := range p.logs {
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	return out
}

var statusHTTP = &http.Client{Timeout: 10 * time.Second}

func (p *statusProc) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := statusHTTP.Get(p.base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func (p *statusProc) status(t *testing.T) *status.Report {
	t.Helper()
	code, body := p.get(t, "/status")
	if code != http.StatusOK {
		t.Fatalf("/status: %d %s", code, body)
	}
	var r status.Report
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("/status: %v: %s", err, body)
	}
	return &r
}

// statusPolicy returns a policy, or a description of why there is none.
func statusPolicy(r *status.Report, name string) (*v1.PolicyStatus, string) {
	for i := range r.Policies {
		if r.Policies[i].Name == name {
			return &r.Policies[i], ""
		}
	}
	return nil, fmt.Sprintf("policy %s not in the status", name)
}

// waitReady polls a policy until its Ready condition has status and reason.
func (p *statusProc) waitReady(ctx context.Context, t *testing.T, policy, st, reason string) *v1.PolicyStatus {
	t.Helper()
	var got *v1.PolicyStatus
	swarmtest.Poll(ctx, t, 3*time.Minute, func() (bool, string) {
		ps, why := statusPolicy(p.status(t), policy)
		if ps == nil {
			return false, why
		}
		c := ps.Ready()
		if c == nil {
			return false, "no Ready condition"
		}
		got = ps
		return string(c.Status) == st && c.Reason == reason, fmt.Sprintf("%s Ready=%s/%s: %s", policy, c.Status, c.Reason, c.Message)
	})
	return got
}

// statusMetric sums the samples of a family whose labels include want.
func statusMetric(text, name string, want map[string]string) (float64, bool) {
	var sum float64
	found := false
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "#") || !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		labels := map[string]string{}
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			for _, kv := range strings.Split(rest[1:end], ",") {
				k, v, _ := strings.Cut(kv, "=")
				labels[k] = strings.Trim(v, `"`)
			}
			rest = rest[end+1:]
		} else if !strings.HasPrefix(rest, " ") {
			continue // a longer name with this prefix
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	return sum, found
}

// statusWriteManifest writes a manifest file into dir.
func statusWriteManifest(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
