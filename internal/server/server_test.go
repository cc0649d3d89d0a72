package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	var ready atomic.Bool
	s, err := Listen(Config{
		Addr:    "127.0.0.1:0",
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "swarmsec_up 1\n") }),
		Status:  func() any { return map[string]any{"policies": []string{"web"}} },
		Ready: func() (bool, string) {
			if ready.Load() {
				return true, "manifests: ok\n"
			}
			return false, "first-pass: not done yet\n"
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()

	base := "http://" + s.Addr()
	c := &http.Client{Timeout: 5 * time.Second}

	if code, body := get(t, c, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, c, base+"/readyz"); code != 503 || !strings.Contains(body, "first-pass") {
		t.Errorf("/readyz before ready: %d %q", code, body)
	}
	ready.Store(true)
	if code, _ := get(t, c, base+"/readyz"); code != 200 {
		t.Errorf("/readyz when ready: %d", code)
	}
	if code, body := get(t, c, base+"/metrics"); code != 200 || !strings.Contains(body, "swarmsec_up 1") {
		t.Errorf("/metrics: %d %q", code, body)
	}
	code, body := get(t, c, base+"/status")
	var doc struct{ Policies []string }
	if code != 200 || json.Unmarshal([]byte(body), &doc) != nil || len(doc.Policies) != 1 {
		t.Errorf("/status: %d %q", code, body)
	}
	resp, err := c.Post(base+"/status", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /status: %d", resp.StatusCode)
	}
	if code, _ := get(t, c, base+"/nothing"); code != 404 {
		t.Errorf("/nothing: %d", code)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after stop: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := c.Get(base + "/healthz"); err == nil {
		t.Error("still serving after stop")
	}
}

func TestListenFailsOnBusyPort(t *testing.T) {
	s, err := Listen(Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	if _, err := Listen(Config{Addr: s.Addr()}); err == nil {
		t.Fatal("a second listener on the same port did not fail")
	}
}

func TestGracefulStopFinishesRequests(t *testing.T) {
	entered := make(chan struct{})
	s, err := Listen(Config{Addr: "127.0.0.1:0", Status: func() any {
		close(entered)
		time.Sleep(300 * time.Millisecond)
		return "late"
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()

	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + s.Addr() + "/status")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	<-entered
	cancel()
	if body := <-got; !strings.Contains(body, "late") {
		t.Fatalf("in-flight request during stop: %q", body)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
