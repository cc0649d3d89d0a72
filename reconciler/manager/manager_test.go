package manager

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

// Every goroutine the process starts ends with it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a log sink the process and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

const dbPolicy = `apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata:
  name: db
spec:
  serviceSelector:
    matchLabels: {app: db}
  ingress:
    - from: [{serviceSelector: {matchLabels: {app: api}}}]
`

// Run wires the whole process over the fake Swarm: it serves, elects
// itself, isolates what the manifests say, reports it in /status and
// /readyz, and stops cleanly, every goroutine with it.
func TestRunWiresTheProcess(t *testing.T) {
	f, ids := policytest.Shop(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "db.yaml"), []byte(dbPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Docker: f, Log: slog.New(slog.NewJSONHandler(logs, nil)),
			Manifests: dir, Mode: reconcile.ModeEnforce, Limits: plan.DefaultLimits, Resync: time.Hour,
			Listen: "127.0.0.1:0", LeaderElect: true, Lease: "swarmsec-leader-test", Identity: "test",
		})
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of its ctx ending")
		}
	}
	t.Cleanup(stop)

	addr := ""
	eventually(t, "the status server says where it listens", func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && strings.HasPrefix(l.Msg, "serving ") {
				addr = l.Addr
			}
		}
		return addr != ""
	})
	eventually(t, "db is isolated", func() bool {
		return slices.Equal(policytest.NetworkNames(t, f, policytest.Inspect(t, f, ids["shop_db"])), []string{"swarmsec-db"})
	})
	eventually(t, "/readyz answers 200", func() bool { code, _ := get(t, addr+"/readyz"); return code == http.StatusOK })
	code, body := get(t, addr+"/status")
	var st struct {
		Leader   bool
		Policies []struct{ Name string }
	}
	if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil || !st.Leader || len(st.Policies) != 1 || st.Policies[0].Name != "db" {
		t.Errorf("/status: %d %v %s", code, err, body)
	}
	stop()
	if !strings.Contains(logs.String(), "swarmsec stopped") {
		t.Errorf("no stop line in the log:\n%s", logs.String())
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// eventually polls cond with a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
