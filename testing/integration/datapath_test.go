//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/agent/datapath"
	"github.com/swarmsec/swarmsec/agent/netns"
	"github.com/swarmsec/swarmsec/agent/tasks"
	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

// logTap keeps the enforcer's log records for the test to read.
type logTap struct {
	mu      sync.Mutex
	t       *testing.T
	records []map[string]any
}

func (l *logTap) Write(p []byte) (int, error) {
	var m map[string]any
	if err := json.Unmarshal(p, &m); err == nil {
		l.mu.Lock()
		l.records = append(l.records, m)
		l.mu.Unlock()
	}
	l.t.Logf("agent: %s", bytes.TrimSpace(p))
	return len(p), nil
}

func (l *logTap) find(match func(map[string]any) bool) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, r := range l.records {
		if match(r) {
			out = append(out, r)
		}
	}
	return out
}

// TestDatapathOnTheSwarm runs the agent's per-task enforcement against real
// tasks of this machine's Swarm (DNS round robin: no IPVS here), with
// rules as the leader compiles them for:
//
//	db accepts api on 8080 only; api accepts nobody (so db cannot open
//	connections to it); egr may reach only an outside block less one
//	address, and that address on 7001.
//
// Every service listens on 8080 and 9090.
func TestDatapathOnTheSwarm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cli := engine(ctx, t)
	id := swarmtest.RunID()[:6]
	stack := "dp" + id
	netName := stack + "_net"
	swarmtest.CreateNetwork(ctx, t, cli, netName)
	svc := func(short string) string { return stack + "_" + short }
	for _, short := range []string{"api", "db", "egr"} {
		swarmtest.CreateService(ctx, t, cli, swarmtest.WithName(svc(short)),
			swarmtest.WithCommand("serve", "--listen", ":8080,:9090"),
			swarmtest.WithServiceLabels(map[string]string{v1.LabelStackNamespace: stack, "app": short}),
			swarmtest.WithNetwork(netName, short), swarmtest.WithEndpointMode(swarm.ResolutionModeDNSRR))
	}
	for _, short := range []string{"api", "db", "egr"} {
		swarmtest.WaitTasksRunning(ctx, t, cli, svc(short), 1)
	}

	// An outside host of the test's own, listening on 7001 and 7002.
	out := newOutsideClient(ctx, t, "sdp"+id, 77)
	h, err := netns.Open("/run/netns/" + out.ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, port := range []int{7001, 7002} {
		var l net.Listener
		if err := h.Do(func() (err error) { l, err = net.Listen("tcp", fmt.Sprintf(":%d", port)); return err }); err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "outside") }), ReadHeaderTimeout: time.Second}
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(func() { srv.Close() })
	}
	block := v1.SourceBlock{CIDR: "198.18.77.0/24", Except: []string{out.addr + "/32"}}

	probe := func(from, addr string) bool {
		ok, _ := swarmtest.Probe(ctx, t, cli, svc(from), addr, swarmtest.WithProbeTimeout(time.Second))
		return ok
	}
	type cell struct {
		from, addr string
		want       bool
	}
	check := func(when string, cells []cell) {
		t.Helper()
		var wrong []string
		for _, c := range cells {
			if got := probe(c.from, c.addr); got != c.want {
				wrong = append(wrong, fmt.Sprintf("%s -> %s: connected %v, want %v", c.from, c.addr, got, c.want))
			}
		}
		if len(wrong) > 0 {
			t.Fatalf("%s:\n%s", when, strings.Join(wrong, "\n"))
		}
	}
	dbTasks, apiTasks := "tasks."+svc("db"), "tasks."+svc("api")
	outside := func(port int) string { return net.JoinHostPort(out.addr, fmt.Sprint(port)) }
	check("before any rule", []cell{
		{"api", dbTasks + ":9090", true}, {"db", apiTasks + ":8080", true}, {"egr", outside(7002), true},
	})

	rules := &agentv1.Rules{APIVersion: agentv1.APIVersion, Kind: agentv1.KindRules, Revision: agentv1.RulesRevision, Ports: []agentv1.Port{},
		Services: []agentv1.ServiceRules{
			{Service: svc("api"), IngressIsolated: true},
			{Service: svc("db"), IngressIsolated: true, Ingress: []agentv1.Rule{{Policy: "db-accepts-api/ingress[0]", Services: []string{svc("api")},
				Ports: []agentv1.PortRange{{Protocol: v1.ProtocolTCP, Port: 8080}}}}},
			{Service: svc("egr"), EgressIsolated: true, Egress: []agentv1.Rule{
				{Policy: "egr/egress[0]", Blocks: []v1.SourceBlock{block}},
				{Policy: "egr/egress[1]", Blocks: []v1.SourceBlock{{CIDR: out.addr + "/32"}}, Ports: []agentv1.PortRange{{Protocol: v1.ProtocolTCP, Port: 7001}}},
			}},
		}}
	tap := &logTap{t: t}
	node, _ := os.Hostname()
	// Through /proc, as the stack opens them.
	enf := &datapath.Enforcer{Engine: cli, Group: 7332, Node: node, Log: slog.New(slog.NewJSONHandler(tap, nil)), ProcDir: "/proc"}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go enf.Run(runCtx)
	start := time.Now()
	if err := enf.SetRules(ctx, rules); err != nil {
		t.Fatal(err)
	}
	t.Logf("rules in place in %s", time.Since(start))

	check("with the rules", []cell{
		{"api", dbTasks + ":8080", true},  // db accepts api on 8080
		{"api", dbTasks + ":9090", false}, // and on nothing else
		{"db", apiTasks + ":8080", false}, // api accepts nobody: db cannot open to it
		{"db", apiTasks + ":9090", false},
		{"api", "tasks." + svc("egr") + ":8080", true}, // egr is not ingress-isolated
		{"egr", outside(7001), true},                   // the excepted address, on the port a rule allows
		{"egr", outside(7002), false},                  // excepted everywhere else
		{"egr", apiTasks + ":8080", false},             // egress isolated: no service named
	})

	// The embedded DNS stays reachable from an egress-isolated task: the
	// name resolves, the connection is what is refused.
	if ok, out := swarmtest.Probe(ctx, t, cli, svc("egr"), apiTasks+":8080", swarmtest.WithProbeTimeout(time.Second)); ok || !strings.Contains(out, "fail 10.") {
		t.Fatalf("egr -> %s: connected %v; want the name resolved and the connection refused:\n%s", apiTasks, ok, out)
	}

	// Each blocked attempt is a flow record naming the policy.
	swarmtest.Poll(ctx, t, 10*time.Second, func() (bool, string) {
		flows := tap.find(func(r map[string]any) bool { return r["msg"] == agentv1.FlowRecordMessage })
		for _, r := range flows {
			f, _ := r["flow"].(map[string]any)
			src, _ := f["source"].(map[string]any)
			dst, _ := f["destination"].(map[string]any)
			if src["service"] == svc("api") && dst["service"] == svc("db") && dst["port"] == float64(9090) &&
				f["verdict"] == agentv1.VerdictBlocked && strings.Contains(fmt.Sprint(f["policy"]), "db-accepts-api") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("no blocked flow api -> db:9090 naming db-accepts-api among %d", len(flows))
	})

	// Task churn: new tasks get their rules from the engine's events, no
	// new delivery. Time from each task's start to its table.
	const replicas = 9
	before, err := tasks.Discover(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	old := map[string]bool{}
	for _, tk := range before.Tasks {
		old[tk.Name] = true
	}
	if err := scale(ctx, cli, svc("db"), replicas); err != nil {
		t.Fatal(err)
	}
	swarmtest.WaitTasksRunning(ctx, t, cli, svc("db"), replicas)
	var lat []time.Duration
	swarmtest.Poll(ctx, t, 20*time.Second, func() (bool, string) {
		lat = lat[:0]
		v, err := tasks.Discover(ctx, cli)
		if err != nil {
			return false, err.Error()
		}
		applied := tap.find(func(r map[string]any) bool { return r["msg"] == "task rules applied" })
		for _, tk := range v.Tasks {
			if tk.Service != svc("db") || old[tk.Name] {
				continue
			}
			ci, err := cli.ContainerInspect(ctx, tk.Container)
			if err != nil {
				return false, err.Error()
			}
			started, _ := time.Parse(time.RFC3339Nano, ci.State.StartedAt)
			idx := slices.IndexFunc(applied, func(r map[string]any) bool { return r["task"] == tk.Name })
			if idx < 0 {
				return false, "no rules yet for " + tk.Name
			}
			at, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(applied[idx]["time"]))
			lat = append(lat, at.Sub(started))
		}
		return len(lat) == replicas-1, fmt.Sprintf("%d of %d new db tasks with rules", len(lat), replicas-1)
	})
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("task start to rules in place, %d new db tasks: min %s, median %s, max (p99) %s: %v",
		len(lat), lat[0], lat[len(lat)/2], lat[len(lat)-1], lat)
	check("after the churn", []cell{
		{"api", dbTasks + ":9090", false}, // no db task, old or new, answers 9090 to api
	})
	if ok, out := swarmtest.Probe(ctx, t, cli, svc("api"), dbTasks+":8080", swarmtest.WithAllAddresses(), swarmtest.WithProbeTimeout(time.Second)); !ok {
		t.Fatalf("api does not reach every db task on 8080:\n%s", out)
	}

	// Audit on the data path and log: all: db's rule logs what it admits,
	// and an audit-mode policy limiting api's egress to db:7070 cuts
	// nothing, reporting api's connections to db:8080 as would-block.
	audited := *rules
	audited.Services = slices.Clone(rules.Services)
	audited.Services[1].Ingress = []agentv1.Rule{{Policy: "db-accepts-api/ingress[0]", Services: []string{svc("api")},
		Ports: []agentv1.PortRange{{Protocol: v1.ProtocolTCP, Port: 8080}}, LogAllowed: true}}
	audited.Audit = []agentv1.ServiceRules{{Service: svc("api"), EgressIsolated: true, Egress: []agentv1.Rule{
		{Policy: "api-audit/egress[0]", Services: []string{svc("db")}, Ports: []agentv1.PortRange{{Protocol: v1.ProtocolTCP, Port: 7070}}}}}}
	audited.Revision = agentv1.RevisionOf(&audited)
	if err := enf.SetRules(ctx, &audited); err != nil {
		t.Fatal(err)
	}
	check("with an audit-mode policy", []cell{
		{"api", dbTasks + ":8080", true}, // audit cuts nothing
		{"api", dbTasks + ":9090", false},
	})
	for _, want := range []struct{ verdict, policy string }{{agentv1.VerdictAllowed, "db-accepts-api/ingress[0]"}, {agentv1.VerdictWouldBlock, "api-audit"}} {
		swarmtest.Poll(ctx, t, 10*time.Second, func() (bool, string) {
			_ = probe("api", dbTasks+":8080")
			for _, r := range tap.find(func(r map[string]any) bool { return r["msg"] == agentv1.FlowRecordMessage }) {
				f, _ := r["flow"].(map[string]any)
				src, _ := f["source"].(map[string]any)
				dst, _ := f["destination"].(map[string]any)
				if src["service"] == svc("api") && dst["service"] == svc("db") && dst["port"] == float64(8080) &&
					f["verdict"] == want.verdict && strings.Contains(fmt.Sprint(f["policy"]), want.policy) {
					t.Logf("%s: %v", want.verdict, f)
					return true, ""
				}
			}
			return false, fmt.Sprintf("no %s flow api -> db:8080 naming %s", want.verdict, want.policy)
		})
	}
}

func scale(ctx context.Context, cli interface {
	ServiceInspectWithRaw(context.Context, string, swarm.ServiceInspectOptions) (swarm.Service, []byte, error)
	ServiceUpdate(context.Context, string, swarm.Version, swarm.ServiceSpec, swarm.ServiceUpdateOptions) (swarm.ServiceUpdateResponse, error)
}, name string, n uint64) error {
	s, _, err := cli.ServiceInspectWithRaw(ctx, name, swarm.ServiceInspectOptions{})
	if err != nil {
		return err
	}
	s.Spec.Mode.Replicated.Replicas = &n
	_, err = cli.ServiceUpdate(ctx, s.ID, s.Version, s.Spec, swarm.ServiceUpdateOptions{})
	return err
}
