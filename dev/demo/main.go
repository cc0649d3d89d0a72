// Command demo is the helper behind `make demo` (e2e/demo.sh): it keeps the
// end-to-end tests' three-node docker-in-docker Swarm (package
// e2e/cluster) up outside `go test`, and shows what a stack looks like
// from inside its tasks.
//
//	demo cluster --state DIR        bring the cluster up, write DIR/cluster.json
//	                                and DIR/cluster.env, and keep it until
//	                                SIGTERM or SIGINT, then remove it all
//	demo wait --state DIR SERVICE…  wait until the services have converged
//	demo show --state DIR STACK     reachability matrix, networks and ports
//	                                of the stack's services
//	demo wait-controller --state DIR --url URL --swarmsec BIN --manifests DIR STACK
//	                                wait until swarmsec run is ready and has
//	                                converged (plan, run against the cluster's
//	                                manager, exits 0; rolling updates done)
//	demo load-image --state DIR IMAGE
//	                                copy an image of this machine into every node
//	demo reach --state DIR [--wait] SERVICE PORT
//	                                which outside client (office, elsewhere)
//	                                reaches the port on each node running the
//	                                service; --wait until only office does
//	demo sweep                      remove what dead clusters left
//
// The cluster process stays alive while the cluster is up: its process ID
// is on every object it made, and the harness's sweep (run by every e2e
// test run) only removes the objects of processes that are gone.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/swarmsec/swarmsec/e2e/cluster"
	"github.com/swarmsec/swarmsec/testing/swarmtest"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	if err := dispatch(); err != nil {
		fmt.Fprintf(os.Stderr, "demo %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

// dispatch runs the command os.Args names, until it ends or a signal
// comes.
func dispatch() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch os.Args[1] {
	case "cluster":
		err = runCluster(ctx, os.Args[2:])
	case "wait":
		err = runWait(ctx, os.Args[2:])
	case "show":
		err = runShow(ctx, os.Args[2:])
	case "wait-controller":
		err = runWaitController(ctx, os.Args[2:])
	case "load-image":
		err = runLoadImage(ctx, os.Args[2:])
	case "reach":
		err = runReach(ctx, os.Args[2:])
	case "sweep":
		err = runSweep(ctx)
	default:
		usage()
	}
	return err
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: demo cluster|wait|show|wait-controller|load-image|reach|sweep --state DIR ... (see e2e/demo.sh)")
	os.Exit(2)
}

// State is what the cluster process writes for the other commands.
type State struct {
	RunID   string          `json:"runID"`
	PID     int             `json:"pid"`
	Nodes   []NodeState     `json:"nodes"`
	Outside cluster.Outside `json:"outside"`
	// Office and Elsewhere are two more clients outside the Swarm, for
	// a published port's source allow-list.
	Office             cluster.Outside `json:"office"`
	Elsewhere          cluster.Outside `json:"elsewhere"`
	AppImage           string          `json:"appImage"`
	AppImageTag        string          `json:"appImageTag"`
	EncryptedCrossNode bool            `json:"encryptedCrossNode"`
	EncryptionReport   string          `json:"encryptionReport"`
}

// NodeState is one node of State.
type NodeState struct {
	Hostname string `json:"hostname"`
	ID       string `json:"id"`
	IP       string `json:"ip"`
	Socket   string `json:"socket"`
	Manager  bool   `json:"manager"`
}

// runCluster brings the cluster up, writes the state files and holds the
// cluster until a signal.
func runCluster(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("cluster", flag.ExitOnError)
	dir := fs.String("state", "e2e/.work", "state directory")
	timeout := fs.Duration("timeout", 10*time.Minute, "how long bringing the cluster up may take")
	_ = fs.Parse(args)
	logf := func(format string, args ...any) {
		fmt.Printf("%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	c := cluster.New(cluster.Config{Logf: logf})
	defer func() {
		// A fresh context: ctx is what ended.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			logf("e2e: teardown: %v", err)
		}
		os.Remove(filepath.Join(*dir, "cluster.json"))
		os.Remove(filepath.Join(*dir, "cluster.env"))
		logf("cluster %s removed", c.RunID)
	}()
	start := time.Now()
	// Bounded, so make demo reports a stuck bring-up instead of waiting on
	// it; the cluster itself is held on ctx alone.
	upCtx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := c.Start(upCtx); err != nil {
		return fmt.Errorf("bring-up failed after %s (at most %s): %w", time.Since(start).Round(time.Second), *timeout, err)
	}
	logf("e2e: cluster up in %s", time.Since(start).Round(time.Second))
	st := State{
		RunID: c.RunID, PID: os.Getpid(), Outside: c.Outside, AppImage: c.AppImage,
		EncryptedCrossNode: c.EncryptedCrossNode, EncryptionReport: c.EncryptionReport,
	}
	for _, n := range c.Nodes {
		st.Nodes = append(st.Nodes, NodeState{n.Hostname, n.ID, n.IP, n.Socket, n.Manager})
	}
	var err error
	if st.Office, err = c.StartOutside(upCtx, "office"); err != nil {
		return err
	}
	if st.Elsewhere, err = c.StartOutside(upCtx, "elsewhere"); err != nil {
		return err
	}
	img, err := c.Host.ImageInspect(upCtx, c.AppImage)
	if err != nil {
		return err
	}
	if len(img.RepoTags) == 0 {
		return errors.New("the test app image has no tag")
	}
	st.AppImageTag = img.RepoTags[0]
	if err := writeState(*dir, st); err != nil {
		return err
	}
	logf("cluster ready; holding it until SIGTERM")
	<-ctx.Done()
	logf("stopping: removing the cluster")
	return nil
}

// writeState writes cluster.json, then cluster.env (for the shell script;
// written last, its presence says the cluster is ready).
func writeState(dir string, st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "cluster.json"), b); err != nil {
		return err
	}
	var m NodeState
	var workers []string
	for _, n := range st.Nodes {
		if n.Manager {
			m = n
		} else {
			workers = append(workers, n.Hostname)
		}
	}
	if m.Socket == "" || len(workers) == 0 {
		return fmt.Errorf("the cluster needs a manager and a worker, has %d nodes", len(st.Nodes))
	}
	// The node the stack's services run on when encrypted overlay traffic
	// cannot cross nodes (see cluster.ProbedNode).
	probed := workers[0]
	env := fmt.Sprintf("RUN_ID=%s\nCLUSTER_PID=%d\nMANAGER_SOCKET=%s\nMANAGER_IP=%s\nWORKERS=%q\nPROBED_NODE=%s\nAPP_IMAGE=%s\nENCRYPTED_CROSS_NODE=%t\nOUTSIDE_CONTAINER=%s\nOUTSIDE_IP=%s\nOFFICE_IP=%s\nELSEWHERE_IP=%s\n",
		st.RunID, st.PID, m.Socket, m.IP, strings.Join(workers, " "), probed, st.AppImageTag, st.EncryptedCrossNode, st.Outside.Container, st.Outside.IP, st.Office.IP, st.Elsewhere.IP)
	return writeFile(filepath.Join(dir, "cluster.env"), []byte(env))
}

func writeFile(path string, b []byte) error {
	if err := os.WriteFile(path+".tmp", b, 0o644); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// env is a running cluster as the other commands see it.
type env struct {
	st            State
	manager       *client.Client
	managerSocket string
	host          *client.Client
	engines       map[string]*client.Client // by Swarm node ID
}

func load(dir string) (*env, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cluster.json"))
	if err != nil {
		return nil, fmt.Errorf("no cluster (make demo brings one up): %w", err)
	}
	e := &env{engines: map[string]*client.Client{}}
	if err := json.Unmarshal(b, &e.st); err != nil {
		return nil, err
	}
	for _, n := range e.st.Nodes {
		cli, err := client.NewClientWithOpts(client.WithHost("unix://"+n.Socket), client.WithAPIVersionNegotiation())
		if err != nil {
			return nil, err
		}
		e.engines[n.ID] = cli
		if n.Manager {
			e.manager, e.managerSocket = cli, n.Socket
		}
	}
	if e.manager == nil {
		return nil, errors.New("no manager in the cluster state")
	}
	if e.host, err = client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation()); err != nil {
		return nil, err
	}
	for _, n := range e.st.Nodes {
		if e.host.DaemonHost() == "unix://"+n.Socket {
			return nil, errors.New("DOCKER_HOST points at the cluster: the demo helper needs the machine's engine")
		}
	}
	return e, nil
}

func (e *env) engine(nodeID string) (*client.Client, error) {
	if c, ok := e.engines[nodeID]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("no node %s in the cluster", nodeID)
}

func (e *env) node(id string) NodeState {
	i := slices.IndexFunc(e.st.Nodes, func(n NodeState) bool { return n.ID == id })
	if i < 0 {
		return NodeState{Hostname: id}
	}
	return e.st.Nodes[i]
}

func runWait(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("wait", flag.ExitOnError)
	dir := fs.String("state", "e2e/.work", "state directory")
	_ = fs.Parse(args)
	e, err := load(*dir)
	if err != nil {
		return err
	}
	for _, s := range fs.Args() {
		if err := swarmtest.WaitServiceConvergedE(ctx, e.manager, s); err != nil {
			return fmt.Errorf("service %s: %w", s, err)
		}
	}
	return nil
}

// stackServices lists the services of a stack, sorted in the stack's own
// order when they are web, api, db, cache, else by name.
func (e *env) stackServices(ctx context.Context, stack string) ([]swarm.Service, error) {
	svcs, err := e.manager.ServiceList(ctx, swarm.ServiceListOptions{Filters: filters.NewArgs(filters.Arg("label", "com.docker.stack.namespace="+stack))})
	if err != nil {
		return nil, err
	}
	order := []string{"web", "api", "db", "cache"}
	rank := func(s swarm.Service) int {
		if i := slices.Index(order, strings.TrimPrefix(s.Spec.Name, stack+"_")); i >= 0 {
			return i
		}
		return len(order)
	}
	slices.SortFunc(svcs, func(a, b swarm.Service) int {
		if d := rank(a) - rank(b); d != 0 {
			return d
		}
		return strings.Compare(a.Spec.Name, b.Spec.Name)
	})
	if len(svcs) == 0 {
		return nil, fmt.Errorf("no service of stack %s", stack)
	}
	return svcs, nil
}

func runShow(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("show", flag.ExitOnError)
	dir := fs.String("state", "e2e/.work", "state directory")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("usage: demo show --state DIR STACK")
	}
	e, err := load(*dir)
	if err != nil {
		return err
	}
	svcs, err := e.stackServices(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	var names []string
	for _, s := range svcs {
		names = append(names, s.Spec.Name)
	}
	if err := e.showMatrix(ctx, names); err != nil {
		return err
	}
	if err := e.showNetworks(ctx, svcs); err != nil {
		return err
	}
	return e.showPorts(ctx, svcs)
}

// showMatrix probes every pair from inside the tasks, and the outside
// target from each.
func (e *env) showMatrix(ctx context.Context, names []string) error {
	const outside = "outside"
	targets := append(slices.Clone(names), outside)
	probe := func(ctx context.Context, from, to string) (bool, string, error) {
		addr := swarmtest.TasksAddr(to)
		if to == outside {
			addr = e.st.Outside.Addr()
		}
		return swarmtest.ProbeE(ctx, e.manager, from, addr, swarmtest.WithEngines(e.engine))
	}
	m := swarmtest.RunMatrix(ctx, names, targets, func(string, string) bool { return true }, probe, 6)
	fmt.Println("Who can reach whom (TCP to tasks.<service>:8080 from inside a task of each service;")
	fmt.Printf("\"outside\" is a machine outside the Swarm, %s):\n\n", e.st.Outside.Addr())
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "  from \\ to")
	for _, t := range targets {
		fmt.Fprint(tw, "\t", t)
	}
	fmt.Fprintln(tw)
	var errs []error
	for _, f := range names {
		fmt.Fprint(tw, "  ", f)
		for _, t := range targets {
			c := m.Cells[swarmtest.Pair{From: f, To: t}]
			switch {
			case c.Err != nil:
				fmt.Fprint(tw, "\t", "error")
				errs = append(errs, fmt.Errorf("%s -> %s: %w", f, t, c.Err))
			case c.Actual:
				fmt.Fprint(tw, "\t", "yes")
			default:
				fmt.Fprint(tw, "\t", "-")
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Println()
	return errors.Join(errs...)
}

// showNetworks lists the networks each service's running task is attached
// to, with their encryption.
func (e *env) showNetworks(ctx context.Context, svcs []swarm.Service) error {
	fmt.Println("Networks each service's tasks are on:")
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  service\tnetwork\tencrypted\tinternal\tattachable\tmanaged by swarmsec")
	for _, s := range svcs {
		nets, err := e.taskNetworks(ctx, s.ID)
		if err != nil {
			return err
		}
		name := s.Spec.Name
		for _, n := range nets {
			_, enc := n.Options["encrypted"]
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", name, n.Name, yesNo(enc, "YES", "NO"), yesNo(n.Internal, "yes", "no"),
				yesNo(n.Attachable, "yes", "no"), yesNo(n.Labels["swarmsec.io/managed"] == "true", "yes", "no"))
			name = ""
		}
	}
	tw.Flush()
	fmt.Println()
	return nil
}

// taskNetworks returns the networks of a running task of the service (the
// routing mesh's ingress network included), falling back on the spec.
func (e *env) taskNetworks(ctx context.Context, serviceID string) ([]network.Inspect, error) {
	tasks, err := e.manager.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
		filters.Arg("service", serviceID), filters.Arg("desired-state", "running"))})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, t := range tasks {
		if t.Status.State == swarm.TaskStateRunning {
			for _, a := range t.NetworksAttachments {
				ids = append(ids, a.Network.ID)
			}
			break
		}
	}
	var out []network.Inspect
	for _, id := range ids {
		n, err := e.manager.NetworkInspect(ctx, id, network.InspectOptions{})
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b network.Inspect) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// showPorts lists the published ports and tries each from the outside
// machine, on the nodes the service's tasks run on.
func (e *env) showPorts(ctx context.Context, svcs []swarm.Service) error {
	fmt.Println("Published ports:")
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  service\tport\tmode\tfrom outside")
	published := false
	for _, s := range svcs {
		if s.Spec.EndpointSpec == nil {
			continue
		}
		tasks, err := e.manager.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
			filters.Arg("service", s.ID), filters.Arg("desired-state", "running"))})
		if err != nil {
			return err
		}
		for _, p := range s.Spec.EndpointSpec.Ports {
			published = true
			mode := string(p.PublishMode)
			if p.PublishMode == swarm.PortConfigPublishModeIngress || mode == "" {
				mode = "ingress (routing mesh, every node)"
			} else {
				mode = "host (nodes running a task)"
			}
			var results []string
			for _, t := range tasks {
				n := e.node(t.NodeID)
				addr := net.JoinHostPort(n.IP, strconv.Itoa(int(p.PublishedPort)))
				code, _, err := swarmtest.Exec(ctx, e.host, e.st.Outside.Container, "/testapp", "probe", addr, "--timeout", "2s")
				switch {
				case err != nil:
					results = append(results, fmt.Sprintf("%s: error %v", n.Hostname, err))
				case code == 0:
					results = append(results, fmt.Sprintf("%s:%d answers", n.Hostname, p.PublishedPort))
				case p.PublishMode != swarm.PortConfigPublishModeHost:
					results = append(results, fmt.Sprintf("%s:%d does not answer (this kernel has no IPVS: the routing mesh cannot work here)", n.Hostname, p.PublishedPort))
				default:
					results = append(results, fmt.Sprintf("%s:%d does not answer", n.Hostname, p.PublishedPort))
				}
			}
			fmt.Fprintf(tw, "  %s\t%d->%d/%s\t%s\t%s\n", s.Spec.Name, p.PublishedPort, p.TargetPort, p.Protocol, mode, strings.Join(results, ", "))
		}
	}
	if !published {
		fmt.Fprintln(tw, "  (none)")
	}
	tw.Flush()
	fmt.Println()
	return nil
}

// runLoadImage copies an image of this machine's engine into every node.
func runLoadImage(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("load-image", flag.ExitOnError)
	dir := fs.String("state", "e2e/.work", "state directory")
	_ = fs.Parse(args)
	e, err := load(*dir)
	if err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: demo load-image --state DIR IMAGE")
	}
	for _, n := range e.st.Nodes {
		rc, err := e.host.ImageSave(ctx, []string{fs.Arg(0)})
		if err != nil {
			return err
		}
		resp, err := e.engines[n.ID].ImageLoad(ctx, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", n.Hostname, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return nil
}

// runReach probes a service's published port on every node running one of
// its tasks, from the office and from elsewhere.
func runReach(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("reach", flag.ExitOnError)
	dir := fs.String("state", "e2e/.work", "state directory")
	wait := fs.Bool("wait", false, "wait (2 minutes at most) until only the office connects")
	_ = fs.Parse(args)
	e, err := load(*dir)
	if err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return errors.New("usage: demo reach --state DIR [--wait] SERVICE PORT")
	}
	service, port := fs.Arg(0), fs.Arg(1)
	type row struct {
		client, node string
		ok           bool
	}
	probe := func() ([]row, error) {
		tasks, err := e.manager.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(
			filters.Arg("service", service), filters.Arg("desired-state", "running"))})
		if err != nil {
			return nil, err
		}
		var rows []row
		for _, t := range tasks {
			n := e.node(t.NodeID)
			for _, c := range []struct {
				name string
				o    cluster.Outside
			}{{"office " + e.st.Office.IP, e.st.Office}, {"elsewhere " + e.st.Elsewhere.IP, e.st.Elsewhere}} {
				code, _, err := swarmtest.Exec(ctx, e.host, c.o.Container, "/testapp", "probe", net.JoinHostPort(n.IP, port), "--timeout", "2s")
				if err != nil {
					return nil, err
				}
				rows = append(rows, row{c.name, n.Hostname + ":" + port, code == 0})
			}
		}
		return rows, nil
	}
	var rows []row
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if rows, err = probe(); err != nil {
			return err
		}
		restricted := len(rows) > 0
		for _, r := range rows {
			restricted = restricted && r.ok == strings.HasPrefix(r.client, "office")
		}
		if !*wait || restricted {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the port is not restricted to the office after 2 minutes")
		}
		time.Sleep(2 * time.Second)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  client\tconnects to\tresult")
	for _, r := range rows {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", r.client, r.node, yesNo(r.ok, "connects", "refused (no answer)"))
	}
	return tw.Flush()
}

func yesNo(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

// runWaitController waits until swarmsec run answers /readyz, then until
// `swarmsec plan` finds nothing to do and the stack's services have
// finished their rolling updates, printing progress. plan runs against the
// cluster's manager, never the engine DOCKER_HOST names here (the
// machine's own). The whole wait is bounded by --timeout.
func runWaitController(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("wait-controller", flag.ExitOnError)
	dir := fs.String("state", "e2e/.work", "state directory")
	url := fs.String("url", "http://127.0.0.1:9477", "the controller's endpoints")
	bin := fs.String("swarmsec", "bin/swarmsec", "the swarmsec binary")
	manifests := fs.String("manifests", "manifests", "manifest directory")
	pid := fs.Int("pid", 0, "the controller's process ID, to notice it exiting")
	logPath := fs.String("log", "", "the controller's log (text format), to show its progress")
	timeout := fs.Duration("timeout", 10*time.Minute, "how long to wait in all")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("usage: demo wait-controller [flags] STACK")
	}
	e, err := load(*dir)
	if err != nil {
		return err
	}
	start := time.Now()
	deadline := start.Add(*timeout)
	// Every call below, the plan runs included, ends at the deadline; the
	// polls get the time left, so they say they gave up rather than that
	// they were stopped.
	callCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	alive := func() error {
		if *pid > 0 && syscall.Kill(*pid, 0) != nil {
			return fmt.Errorf("the controller (pid %d) exited", *pid)
		}
		return nil
	}
	follow := &logFollower{path: *logPath}
	// Ready means the first pass is done: with an encryption migration in
	// it, that is several rolling updates of every service.
	err = swarmtest.PollE(ctx, time.Until(deadline).Round(time.Second), func() (bool, string) {
		follow.show(start)
		if err := alive(); err != nil {
			return true, ""
		}
		code, err := httpStatus(callCtx, *url+"/readyz")
		if err != nil {
			return false, "last try: " + err.Error()
		}
		return code == http.StatusOK, fmt.Sprintf("last answer: %d", code)
	})
	if err == nil {
		err = alive()
	}
	if err != nil {
		return fmt.Errorf("waiting for %s/readyz to answer 200: %w", *url, err)
	}
	fmt.Printf("  ready (first pass done) after %s\n", time.Since(start).Round(time.Second))

	host := "unix://" + e.managerSocket
	err = swarmtest.PollE(ctx, time.Until(deadline).Round(time.Second), func() (bool, string) {
		follow.show(start)
		if err := alive(); err != nil {
			return true, ""
		}
		code, out, err := planOnce(callCtx, *bin, *manifests, e.managerSocket)
		if err != nil {
			return false, "last run: " + err.Error()
		}
		return code == 0, fmt.Sprintf("last run: exit %d:\n%s", code, lastLines(out, 30))
	})
	if err == nil {
		err = alive()
	}
	if err != nil {
		return fmt.Errorf("waiting for `swarmsec plan --manifests %s` (DOCKER_HOST=%s) to exit 0: %w", *manifests, host, err)
	}
	svcs, err := e.stackServices(callCtx, fs.Arg(0))
	if err != nil {
		return err
	}
	for _, s := range svcs {
		if err := swarmtest.WaitServiceConvergedE(callCtx, e.manager, s.ID); err != nil {
			return fmt.Errorf("waiting for service %s to finish its rolling update: %w", s.Spec.Name, err)
		}
	}
	fmt.Printf("  converged after %s: swarmsec plan finds nothing left to do\n", time.Since(start).Round(time.Second))
	return nil
}

// planOnce runs `swarmsec plan` against the engine on socket, with this
// process's DOCKER_HOST and other DOCKER_ variables left out: they name
// the machine's engine, whose Swarm (if any) is not the demo's. A non-zero
// exit is not an error: it is the code.
func planOnce(ctx context.Context, bin, manifests, socket string) (int, string, error) {
	cmd := exec.CommandContext(ctx, bin, "plan", "--manifests", manifests)
	cmd.Env = cluster.EngineEnv(socket)
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr) && exitErr.ExitCode() >= 0:
		return exitErr.ExitCode(), string(out), nil
	case err != nil:
		return 0, string(out), fmt.Errorf("%s plan: %w", bin, err)
	}
	return 0, string(out), nil
}

// lastLines is the last n lines of s, saying how many it left out.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= n {
		return strings.Join(lines, "\n")
	}
	return fmt.Sprintf("(%d lines before)\n%s", len(lines)-n, strings.Join(lines[len(lines)-n:], "\n"))
}

// logFollower prints the lines a text-format slog log gained since the
// last call, without their timestamp: "  12s  INF migrate network ...".
type logFollower struct {
	path   string
	offset int64
}

func (f *logFollower) show(start time.Time) {
	if f.path == "" {
		return
	}
	file, err := os.Open(f.path)
	if err != nil {
		return
	}
	defer file.Close()
	if _, err := file.Seek(f.offset, io.SeekStart); err != nil {
		return
	}
	b, err := io.ReadAll(file)
	if err != nil {
		return
	}
	// Whole lines only; a partial last line waits for the next call.
	end := strings.LastIndexByte(string(b), '\n')
	if end < 0 {
		return
	}
	f.offset += int64(end + 1)
	for _, line := range strings.Split(string(b[:end]), "\n") {
		for _, level := range []string{" INF ", " WRN ", " ERR "} {
			if i := strings.Index(line, level); i >= 0 {
				line = line[i+1:]
				break
			}
		}
		// Keep a line on a screen: the reasons are long, the log has them.
		if r := []rune(line); len(r) > 110 {
			line = string(r[:107]) + "..."
		}
		fmt.Printf("  %4ds  %s\n", int(time.Since(start).Seconds()), line)
	}
}

func httpStatus(ctx context.Context, url string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := (&http.Client{Transport: &http.Transport{Proxy: nil}}).Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// runSweep removes what clusters whose process is gone left behind.
func runSweep(ctx context.Context) error {
	host, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	return cluster.SweepLeftovers(ctx, host, func(format string, args ...any) { fmt.Printf(format+"\n", args...) })
}
