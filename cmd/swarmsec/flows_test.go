package main

import (
	"strings"
	"testing"
)

// flows is the traffic loop's first step, taken before any manifest
// exists: with no --manifests and no ./manifests it judges against no
// policies and gets as far as the engine. A --manifests that names nothing,
// or plan, which is about manifests, still fail on them.
func TestFlowsWithoutManifests(t *testing.T) {
	t.Chdir(t.TempDir())
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	if err := run(t, "flows"); err == nil || strings.Contains(err.Error(), "manifests") {
		t.Errorf("flows: err = %v, want the engine's (no manifests is no policies)", err)
	}
	for _, args := range [][]string{{"flows", "--manifests", "manifests"}, {"plan"}} {
		if err := run(t, args...); err == nil || !strings.Contains(err.Error(), "manifests manifests") {
			t.Errorf("%v: err = %v, want one about the missing manifests", args, err)
		}
	}
}
