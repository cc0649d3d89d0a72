package main

import (
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// run runs the CLI with args; the tests here judge its error, so its
// output goes nowhere.
func run(t *testing.T, args ...string) error {
	t.Helper()
	root := newRootCmd()
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	root.SetArgs(args)
	return root.Execute()
}

// An engine that accepts connections and never answers: apply and plan
// fail within 30s with a clear error, never hang.
func TestUnresponsiveEngine(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			// Read the request, answer nothing, until the test ends.
			go func() { _, _ = c.Read(make([]byte, 4096)); <-t.Context().Done(); c.Close() }()
		}
	}()
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	var wg sync.WaitGroup
	for _, cmd := range []string{"apply", "plan"} {
		wg.Go(func() {
			start := time.Now()
			err := run(t, cmd, "--manifests", "../../manifests")
			took := time.Since(start)
			if err == nil || !strings.Contains(err.Error(), "did not answer") {
				t.Errorf("%s: err = %v, want one saying the engine did not answer", cmd, err)
			}
			if took > 30*time.Second {
				t.Errorf("%s failed after %s, want within 30s", cmd, took.Round(time.Second))
			}
		})
	}
	wg.Wait()
}

// apply of an empty directory would end every isolation at once: it is
// refused without --allow-empty, before anything talks to Docker.
func TestApplyRefusesEmptyDirectory(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	err := run(t, "apply", "--manifests", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "--allow-empty") || !strings.Contains(err.Error(), "nothing was written") {
		t.Fatalf("err = %v, want a refusal naming --allow-empty", err)
	}
}
