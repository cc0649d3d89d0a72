package agent

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/swarmsec/swarmsec/agent/datapath"
	"github.com/swarmsec/swarmsec/agent/firewall"
	"github.com/swarmsec/swarmsec/agent/nodeprobe"
	"github.com/swarmsec/swarmsec/agent/tasks"
)

// Config is what the agent process needs: swarmsec agent's flags, a
// logger, the node's engine and a way to serve its endpoints. The command
// makes the Docker client and the server, so that this side links neither.
type Config struct {
	// RulesFile is the delivered rules (agentv1.RulesPath).
	RulesFile string
	// Interval is how often the rules are checked and repaired.
	Interval time.Duration
	// EventsWindow is how long connection attempts are counted before
	// each count is logged as an event.
	EventsWindow time.Duration
	Log          *slog.Logger
	// Docker is the node's engine, for the node checks; nil leaves its
	// checks unknown.
	Docker nodeprobe.Docker
	// Listen, when set, starts the agent's endpoints with its metrics and
	// status. The rules never wait for them: a failure is logged and the
	// agent enforces all the same.
	Listen func(metrics http.Handler, status func() any) (Server, error)
	// Tasks is the node's engine for the per-task rules (the local tasks,
	// their namespaces and their peers' addresses); nil leaves them
	// unenforced, and says so.
	Tasks tasks.Engine
	// ProcDir is where the node's /proc is seen, to open a task's
	// namespace as <ProcDir>/<pid>/ns/net; empty opens it by its sandbox
	// key.
	ProcDir string
	// NFLOGGroup is the group the per-task tables log their drops to.
	NFLOGGroup uint16
	// Beside are loops of the agent's that need more of the node's engine
	// than the checks (the flow watcher): each runs until ctx ends, and the
	// agent waits for them before it returns.
	Beside []func(ctx context.Context)
}

// Server serves the agent's endpoints until ctx ends.
type Server interface {
	Serve(ctx context.Context) error
}

// Run is the process swarmsec agent is: it finds the node's iptables
// backends, serves its endpoints, runs the node checks and the NFLOG
// listener beside it, and keeps the rules until ctx ends. The rules stay
// in place when it returns.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	tables := map[firewall.Family]Table{}
	var v4err error
	for _, f := range []firewall.Family{firewall.IPv4, firewall.IPv6} {
		t, path, err := Detect(f)
		if err != nil {
			// The node checks say so; the agent stays up to say it, and
			// to enforce once Docker's chains appear.
			log.Warn("published ports are not filtered", "family", f.String(), "reason", err)
			if f == firewall.IPv4 {
				v4err = err
			}
			continue
		}
		log.Info("iptables backend", "family", f.String(), "command", path)
		tables[f] = t
	}
	reg := prometheus.NewRegistry()
	packets := NewPackets()
	reg.MustRegister(packets)
	a := &Agent{RulesFile: cfg.RulesFile, Tables: tables, Interval: cfg.Interval, Log: log, Packets: packets, Detect: Detect}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	node, _ := os.Hostname() // the node's: the agent shares its namespaces
	if cfg.Tasks != nil {
		flows := datapath.NewFlows()
		reg.MustRegister(flows)
		enf := &datapath.Enforcer{Engine: cfg.Tasks, Group: cfg.NFLOGGroup, Node: node, Log: log, Flows: flows, ProcDir: cfg.ProcDir}
		a.Datapath = enf
		wg.Go(func() { enf.Run(ctx) })
	} else {
		log.Warn("no engine: per-task rules are not enforced")
	}
	if cfg.Listen != nil {
		// The endpoints are for people; the rules must not wait for them
		// (a local process holding the port).
		if srv, err := cfg.Listen(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), func() any { return a.Status() }); err != nil {
			log.Error("agent endpoints not served; enforcing all the same", "err", err)
		} else {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := srv.Serve(ctx); err != nil {
					log.Error("agent server stopped", "error", err)
				}
			}()
		}
	}
	a.Checks = &nodeprobe.Prober{Hostname: node, ProcNet: "/proc/net", Docker: cfg.Docker,
		Exec: func(ctx context.Context, name string, args ...string) ([]byte, error) {
			return exec.CommandContext(ctx, name, args...).CombinedOutput()
		},
		Tables: func() (firewall.Table, error) {
			if t := a.Table(firewall.IPv4); t != nil {
				return t, nil
			}
			return nil, v4err
		}}
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.RunChecks(ctx, time.Minute)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		// Without NFLOG the rules and counters still work; only the
		// per-source events are missing.
		if err := ListenEvents(ctx, log, node, cfg.EventsWindow, 0); err != nil {
			log.Warn("connection attempts are counted but not reported per source", "reason", err)
		}
	}()
	for _, run := range cfg.Beside {
		wg.Go(func() { run(ctx) })
	}
	log.Info("agent started", "rules", cfg.RulesFile, "interval", cfg.Interval.String(), "node", node)
	err := a.Run(ctx)
	log.Info("agent stopped; its rules stay in place")
	return err
}
