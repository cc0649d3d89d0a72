package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/docker/docker/client"
	"github.com/spf13/cobra"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/dockerapi"
	"github.com/swarmsec/swarmsec/reconciler/agentrules"
	"github.com/swarmsec/swarmsec/reconciler/manifest"
	"github.com/swarmsec/swarmsec/reconciler/nodecheck"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/state"
)

// loadManifests reads the manifest directory for a one-shot command: any
// error fails it, since acting on part of a directory would undo the rest.
func loadManifests(w io.Writer, dir string) ([]*v1.Policy, error) {
	set, err := manifest.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("manifests %s: %w", dir, err)
	}
	if len(set.Errors) > 0 {
		for _, e := range set.Errors {
			fmt.Fprintln(w, e.Error())
		}
		noun := "errors"
		if len(set.Errors) == 1 {
			noun = "error"
		}
		return nil, fmt.Errorf("manifests %s: %d %s; nothing was planned", dir, len(set.Errors), noun)
	}
	return state.Policies(set.Objects), nil
}

// manifestFlags are the flags of the commands that read manifests and talk
// to Docker.
type manifestFlags struct {
	dir string
	// optional: the command answers without manifests too (flows, the
	// first step of the traffic loop, before any manifest exists): the
	// default directory, when absent, is no policies.
	optional bool
}

func (m *manifestFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&m.dir, "manifests", "manifests", "directory (or file) of swarmsec.io/v1 manifests")
}

// load reads the manifests (see loadManifests); for an optional set, the
// default directory when absent is no policies, which it says on w.
func (m *manifestFlags) load(cmd *cobra.Command, w io.Writer) ([]*v1.Policy, error) {
	if m.optional && !cmd.Flags().Changed("manifests") {
		if _, err := os.Stat(m.dir); errors.Is(err, fs.ErrNotExist) {
			fmt.Fprintf(w, "no manifests directory %s: judging against no policies (the Swarm as it is); --manifests names yours\n", m.dir)
			return nil, nil
		}
	}
	return loadManifests(w, m.dir)
}

// limitFlags bound what one pass may change.
type limitFlags struct {
	limits       plan.Limits
	agentService string
}

func (l *limitFlags) add(cmd *cobra.Command, force bool) {
	l.limits = plan.DefaultLimits
	cmd.Flags().IntVar(&l.limits.MaxServiceUpdates, "max-service-updates", l.limits.MaxServiceUpdates,
		"most service updates (each a rolling update) in the first wave of a change; each wave whose rolling updates finish healthy doubles the next, and the rest wait (0: no cap)")
	cmd.Flags().Float64Var(&l.limits.MaxIsolateShare, "max-isolate-share", l.limits.MaxIsolateShare,
		"largest share of all services one policy may newly isolate at once before it is held (0: no limit)")
	cmd.Flags().IntVar(&l.limits.BroadMin, "broad-selector-min", l.limits.BroadMin,
		"how many services one policy may always newly isolate at once, whatever the share")
	cmd.Flags().StringVar(&l.agentService, "agent-service", agentrules.DefaultService,
		"the node agent's service (labelled "+agentrules.LabelAgent+"=true), which the leader gives the published-port rules (empty: deliver none)")
	if force {
		cmd.Flags().BoolVar(&l.limits.Force, "force", false,
			"this once, go ahead with what the safety limits hold (a policy isolating many services at once, a stack detached from every network); to approve one policy for good, annotate it "+v1.AnnotationApproveBroadSelector+`: "true"`)
	}
}

// setupPlan is setup, then a plan of the Swarm as it is: what plan,
// explain and graph start from. Call done when finished.
func setupPlan(cmd *cobra.Command, g *globalOptions, mf manifestFlags, lf limitFlags) (*reconcile.Reconciler, *plan.Plan, func(), error) {
	r, done, err := setup(cmd, g, mf, lf)
	if err != nil {
		return nil, nil, nil, err
	}
	p, err := r.Plan(cmd.Context())
	if err != nil {
		done()
		return nil, nil, nil, err
	}
	return r, p, done, nil
}

// delivery is how the node agent gets its rules, nil when not asked.
func (l *limitFlags) delivery(api dockerapi.API) *agentrules.Delivery {
	if l.agentService == "" {
		return nil
	}
	return &agentrules.Delivery{Docker: api, Service: l.agentService}
}

// nodeChecks reads the node agents' checks, nil when no agent service is
// named.
func (l *limitFlags) nodeChecks(api dockerapi.API) *nodecheck.Reader {
	if l.agentService == "" {
		return nil
	}
	return &nodecheck.Reader{Docker: api, Service: l.agentService}
}

// connect opens the Docker API named by DOCKER_HOST and checks it is a
// Swarm manager.
func connect(ctx context.Context) (dockerapi.API, func(), error) {
	cli, err := newClient()
	if err != nil {
		return nil, nil, fmt.Errorf("docker client: %w", err)
	}
	if err := observe.CheckManager(ctx, cli); err != nil {
		cli.Close()
		return nil, nil, err
	}
	return cli, func() { cli.Close() }, nil
}

// setup is what the one-shot commands share: load the manifests, connect
// to a Swarm manager and build a reconciler over a fresh store. Call done
// when finished.
func setup(cmd *cobra.Command, g *globalOptions, mf manifestFlags, lf limitFlags) (r *reconcile.Reconciler, done func(), err error) {
	log, err := g.logger(cmd.ErrOrStderr())
	if err != nil {
		return nil, nil, err
	}
	policies, err := mf.load(cmd, cmd.ErrOrStderr())
	if err != nil {
		return nil, nil, err
	}
	api, done, err := connect(cmd.Context())
	if err != nil {
		return nil, nil, err
	}
	r = &reconcile.Reconciler{Docker: api, Store: state.New(), Log: log, Mode: reconcile.ModeEnforce, Limits: lf.limits, Agent: lf.delivery(api)}
	if checks := lf.nodeChecks(api); checks != nil {
		r.Nodes = checks.NodeEncryption
	}
	if err := r.SetPolicies(policies); err != nil {
		done()
		return nil, nil, err
	}
	return r, done, nil
}

// The real client is the production implementation of the narrow API.
var _ dockerapi.API = (*client.Client)(nil)

// newClient connects to the engine named by DOCKER_HOST and the other
// standard variables, negotiating the API version so Engine API 1.41 and
// newer work.
func newClient() (*client.Client, error) {
	return client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
}
