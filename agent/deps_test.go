package agent

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// agentSide are the packages the agent's command path is built from.
var agentSide = []string{
	"github.com/swarmsec/swarmsec/api/v1/agent",
	"github.com/swarmsec/swarmsec/agent/...",
	"github.com/swarmsec/swarmsec/agent/firewall",
}

// mayImport are the only packages of this module the agent side may
// build on: the wire formats, the rendering and itself. Anything else is
// the controller's (the store, the compiler, the planner, the leader's
// delivery and reading), which a process that reads a JSON file and
// writes iptables rules must not carry.
var mayImport = []string{
	"github.com/swarmsec/swarmsec/api/v1",
	"github.com/swarmsec/swarmsec/api/v1/agent",
	"github.com/swarmsec/swarmsec/agent/firewall",
	"github.com/swarmsec/swarmsec/agent",
}

// mustNotImport are outside packages only the controller needs: the
// store's database and a Docker client (the node checks take the node's
// engine as a narrow interface of Docker's types; the command makes the
// client).
var mustNotImport = []string{
	"github.com/hashicorp/go-memdb",
	"github.com/docker/docker/client",
	"k8s.io/client-go",
}

// The agent never imports the manager (STYLE.md, "Layout by side of the
// system"). go list sees what the compiler links, build tags and all,
// where a walk of the import statements would have to redo its rules; go
// test puts its own go first on PATH.
func TestAgentImportsNoControllerCore(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list the imports with:", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, agentSide...)
	out, err := exec.CommandContext(ctx, goTool, args...).Output()
	if err != nil {
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("go list: %v: %s", err, stderr)
	}
	deps := strings.Fields(string(out))
	if len(deps) < len(mayImport) {
		t.Fatalf("go list found only %v", deps)
	}
	for _, dep := range deps {
		if strings.HasPrefix(dep, "github.com/swarmsec/swarmsec/") && !allowed(dep) {
			t.Errorf("the agent side imports %s: move what it needs into api/v1/agent (wire formats) or the agent's own packages", dep)
		}
		for _, bad := range mustNotImport {
			if dep == bad || strings.HasPrefix(dep, bad+"/") {
				t.Errorf("the agent side imports %s, which only the controller needs", dep)
			}
		}
	}
}

func allowed(dep string) bool {
	for _, ok := range mayImport {
		if dep == ok || (ok == "github.com/swarmsec/swarmsec/agent" && strings.HasPrefix(dep, ok+"/")) {
			return true
		}
	}
	return false
}
