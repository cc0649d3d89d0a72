//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/e2e/cluster"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// TestDNSLookupsAndAudit: dns_web is on dns_front only and keeps asking
// for tasks.dns_db (no such name for it: they share no network); dns_cache, on
// dns_back with dns_db, asks for dns_db (its VIP) and tasks.dns_db (its
// task); dns_db and dns_cache both carry the alias "db" on dns_back. The
// agents see the lookups in the tasks' namespaces: `flows --dns` shows
// them with their classes, and `audit` reports web's reconnaissance and
// the ambiguous "db".
func TestDNSLookupsAndAudit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	managers := slices.DeleteFunc(slices.Clone(testCluster.Nodes), func(n *cluster.Node) bool { return !n.Manager })
	swarmtest.CreateNetwork(ctx, t, manager(), "dns_front")
	swarmtest.CreateNetwork(ctx, t, manager(), "dns_back")
	createService(ctx, t, swarmtest.WithName("dns_web"), swarmtest.WithNetwork("dns_front", "web"))
	createService(ctx, t, swarmtest.WithName("dns_db"), swarmtest.WithNetwork("dns_back", "db"))
	createService(ctx, t, swarmtest.WithName("dns_cache"), swarmtest.WithNetwork("dns_back", "db", "cache"),
		swarmtest.WithEndpointMode(swarm.ResolutionModeDNSRR))
	for _, s := range []string{"dns_web", "dns_db", "dns_cache"} {
		swarmtest.WaitTasksRunning(ctx, t, manager(), s, 1)
	}
	writeFiles(ctx, t, managers, map[string][]byte{"etc/swarmsec/dns-manifests/.keep": nil})
	override := filepath.Join(t.TempDir(), "agent.yml")
	if err := os.WriteFile(override, []byte(`version: "3.8"
services:
  agent:
    command: ["agent", "--log-format", "json", "--proc", "/host/proc", "--flows=false", "--dns-report", "2s"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(deploySwarmsec(ctx, t, "/etc/swarmsec/dns-manifests", override))
	deployed := time.Now()

	type lookup struct {
		Source, Name, Type, Class, Service string
		Count                              uint64
		Nodes                              []string
	}
	var web, vip, tasks lookup
	swarmtest.Poll(ctx, t, 2*time.Minute, func() (bool, string) {
		// Each probe resolves the name (A and AAAA) before it dials.
		opts := testCluster.ProbeOpts(swarmtest.WithProbeTimeout(500 * time.Millisecond))
		_, _, _ = swarmtest.ProbeE(ctx, manager(), "dns_web", "tasks.dns_db:8080", opts...)
		_, _, _ = swarmtest.ProbeE(ctx, manager(), "dns_cache", "dns_db:8080", opts...)
		_, _, _ = swarmtest.ProbeE(ctx, manager(), "dns_cache", "tasks.dns_db:8080", opts...)
		stdout, stderr, code := RunSwarmsec(ctx, t, "flows", "--dns", "--since", "10m", "-o", "json")
		if code != 0 {
			return false, stderr
		}
		var got struct{ Lookups []lookup }
		if err := json.Unmarshal([]byte(stdout), &got); err != nil {
			return false, err.Error()
		}
		web = lookup{}
		for _, l := range got.Lookups {
			switch {
			case l.Source == "dns_web" && l.Name == "tasks.dns_db" && l.Type == "A":
				// NXDOMAIN, or an error where the node's own resolver,
				// which the engine asks next, does not answer.
				web.Count += l.Count
				web.Class = strings.Trim(web.Class+","+l.Class, ",")
			case l.Source == "dns_cache" && l.Name == "dns_db" && l.Type == "A" && l.Class == "vip" && l.Service == "dns_db":
				vip = l
			case l.Source == "dns_cache" && l.Name == "tasks.dns_db" && l.Type == "A" && l.Class == "tasks" && l.Service == "dns_db":
				tasks = l
			}
		}
		return web.Count >= 3 && vip.Count > 0 && tasks.Count > 0, fmt.Sprintf("web %+v, vip %+v, tasks %+v in\n%s", web, vip, tasks, stdout)
	})
	t.Logf("lookups seen %s after the stack deploy: web %+v; cache %+v and %+v", time.Since(deployed).Round(100*time.Millisecond), web, vip, tasks)
	stdout, _, _ := RunSwarmsec(ctx, t, "flows", "--dns", "--since", "10m")
	t.Logf("swarmsec flows --dns:\n%s", stdout)

	stdout, stderr, code := RunSwarmsec(ctx, t, "audit", "-o", "json", "--dns-since", "10m")
	if code != 2 {
		t.Fatalf("audit exit %d: %s", code, stderr)
	}
	var r struct {
		Findings []struct{ Check, Kind, Name, Message string }
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err)
	}
	var recon, ambiguous string
	for _, f := range r.Findings {
		switch {
		case f.Check == "dns-reconnaissance" && f.Name == "dns_web":
			recon = f.Message
		case f.Check == "dns-ambiguous-name" && f.Name == "dns_back":
			ambiguous = f.Message
		}
	}
	if !strings.Contains(recon, `"tasks.dns_db" (dns_db on dns_back`) {
		t.Errorf("reconnaissance finding: %q", recon)
	}
	if !strings.Contains(ambiguous, `"db" resolves to dns_cache (its alias db) and dns_db (its alias db)`) {
		t.Errorf("ambiguous-name finding: %q", ambiguous)
	}
	t.Logf("audit: %s\n%s", recon, ambiguous)
	t.Logf("the test took %s (the stack deploy included)", time.Since(start).Round(time.Second))
}
