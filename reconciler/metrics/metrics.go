// Package metrics holds swarmsec's Prometheus metrics: the Go and process
// collectors plus the swarmsec_ families, on a registry of their own so
// nothing else registered in the process leaks into /metrics. It is fed by
// the reconcile loop, the manifest watcher, the status tracker and, as a
// dockerapi Observer, by every Docker API call.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/apply"
	"github.com/swarmsec/swarmsec/reconciler/controller"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/status"
	"github.com/swarmsec/swarmsec/reconciler/watch"
)

const namespace = "swarmsec"

// Values of the result label of passes and Docker requests.
const (
	ResultSuccess  = "success"
	ResultError    = "error"
	ResultHeld     = "held"
	ResultNotFound = "not_found"
	ResultConflict = "conflict"
	ResultCanceled = "canceled"
)

// Values of the mode label of observations.
const (
	ObserveList   = "list"
	ObserveEvents = "events"
)

// Metrics is the set of swarmsec metrics. Its methods are safe for
// concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	passes         *prometheus.CounterVec
	passDuration   prometheus.Histogram
	observations   *prometheus.CounterVec
	lastSuccess    prometheus.Gauge
	actions        *prometheus.CounterVec
	actionDuration *prometheus.HistogramVec
	auditActions   *prometheus.GaugeVec
	drift          *prometheus.CounterVec
	docker         *prometheus.CounterVec
	dockerDuration *prometheus.HistogramVec
	manifestErrors prometheus.Gauge
	staleFiles     prometheus.Gauge
	held           prometheus.Gauge
	leader         prometheus.Gauge
	policies       *prometheus.GaugeVec
	policyReady    *policyCollector
}

// New returns the metrics, registered with the Go and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "reconcile_passes_total",
			Help: "Reconcile passes, by result: success, error, or held by the safety limits.",
		}, []string{"result"}),
		passDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "reconcile_duration_seconds",
			Help: "Duration of reconcile passes: observe, plan and apply.",
			// From a quiet pass (a few list calls) to one that waits for
			// networks held by tasks being replaced.
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}),
		observations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "observations_total",
			Help: "How passes read Swarm: list (everything: start, resync, a lost events stream) or events (only the objects events named).",
		}, []string{"mode"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "last_successful_reconcile_timestamp_seconds",
			Help: "Unix time the last reconcile pass without error ended.",
		}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "actions_total",
			Help: "Actions the applier handled, by kind and result (created, configured, deleted, unchanged, skipped, pending, failed).",
		}, []string{"kind", "result"}),
		actionDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "action_duration_seconds",
			Help:    "Duration of applied actions, by kind.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		}, []string{"kind"}),
		auditActions: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "audit_actions",
			Help: "Changes the last pass only reported, by kind: what audit mode or enforcement: audit policies would write.",
		}, []string{"kind"}),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "drift_corrections_total",
			Help: "Writes that reverted drift, by kind: made while the policies had not changed since the cluster last converged.",
		}, []string{"kind"}),
		docker: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "docker_requests_total",
			Help: "Docker Engine API requests, by operation and result.",
		}, []string{"operation", "result"}),
		dockerDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "docker_request_duration_seconds",
			Help:    "Duration of Docker Engine API requests, by operation.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"operation"}),
		manifestErrors: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "manifest_errors",
			Help: "Errors in the last read of the manifests.",
		}),
		staleFiles: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "manifest_stale_files",
			Help: "Manifest files with errors whose last good policies stay in force.",
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "manifests_held",
			Help: "1 while the manifest directory is empty or unreadable and the last good set is kept.",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "leader",
			Help: "1 while this replica holds the lease and writes, 0 while it follows.",
		}),
		policies: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: namespace, Name: "policies",
			Help: "Policies in force, by the status of their Ready condition (True, False, Unknown).",
		}, []string{"ready"}),
		policyReady: newPolicyCollector(),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.passes, m.passDuration, m.observations, m.lastSuccess, m.actions, m.actionDuration, m.auditActions, m.drift,
		m.docker, m.dockerDuration, m.manifestErrors, m.staleFiles, m.held, m.leader, m.policies, m.policyReady,
	)
	// Series that exist from the start, so rate() and alerts see zeros
	// rather than absent series.
	for _, r := range []string{ResultSuccess, ResultError, ResultHeld} {
		m.passes.WithLabelValues(r)
	}
	for _, mode := range []string{ObserveList, ObserveEvents} {
		m.observations.WithLabelValues(mode)
	}
	for _, s := range []v1.ConditionStatus{v1.ConditionTrue, v1.ConditionFalse, v1.ConditionUnknown} {
		m.policies.WithLabelValues(string(s))
	}
	for _, k := range []plan.ActionKind{plan.ActionCreateNetwork, plan.ActionUpdateService, plan.ActionRemoveNetwork} {
		m.drift.WithLabelValues(string(k))
		m.auditActions.WithLabelValues(string(k))
	}
	return m
}

// Registry is the registry the metrics live in.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg, EnableOpenMetrics: false})
}

// ObserveDockerCall counts one Docker API call: it implements the
// dockerapi Observer.
func (m *Metrics) ObserveDockerCall(op string, d time.Duration, err error) {
	m.docker.WithLabelValues(op, dockerResult(err)).Inc()
	m.dockerDuration.WithLabelValues(op).Observe(d.Seconds())
}

// dockerResult buckets an error into a few values, keeping the label's
// cardinality fixed.
func dockerResult(err error) string {
	switch {
	case err == nil:
		return ResultSuccess
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ResultCanceled
	case cerrdefs.IsNotFound(err):
		return ResultNotFound
	case cerrdefs.IsConflict(err):
		return ResultConflict
	}
	return ResultError
}

// ObserveResult counts one action result (Reconciler.OnResult).
func (m *Metrics) ObserveResult(ar apply.ActionResult) {
	kind := string(ar.Action.Kind)
	m.actions.WithLabelValues(kind, string(ar.Outcome)).Inc()
	m.actionDuration.WithLabelValues(kind).Observe(ar.Duration.Seconds())
}

// ObservePass records a finished pass and the drift corrections it made
// (see status.Tracker.ObservePass).
func (m *Metrics) ObservePass(p controller.Pass, drift []apply.ActionResult) {
	result := ResultSuccess
	switch {
	case errors.Is(p.Err, plan.ErrHeld):
		result = ResultHeld
	case p.Err != nil:
		result = ResultError
	}
	m.passes.WithLabelValues(result).Inc()
	m.passDuration.Observe(p.Duration.Seconds())
	if p.Observed != nil {
		mode := ObserveEvents
		if p.Observed.Full {
			mode = ObserveList
		}
		m.observations.WithLabelValues(mode).Inc()
	}
	if p.Err == nil && p.Plan != nil {
		m.lastSuccess.Set(float64(p.Start.Add(p.Duration).UnixNano()) / 1e9)
	}
	for _, ar := range drift {
		m.drift.WithLabelValues(string(ar.Action.Kind)).Inc()
	}
	if p.Plan != nil {
		audit := map[string]int{}
		for _, a := range p.Plan.Actions {
			if a.Audit {
				audit[string(a.Kind)]++
			}
		}
		for _, k := range []plan.ActionKind{plan.ActionCreateNetwork, plan.ActionUpdateService, plan.ActionRemoveNetwork} {
			m.auditActions.WithLabelValues(string(k)).Set(float64(audit[string(k)]))
		}
	}
}

// ObserveSnapshot records the state of the manifests.
func (m *Metrics) ObserveSnapshot(s watch.Snapshot) {
	m.manifestErrors.Set(float64(len(s.Errors)))
	m.staleFiles.Set(float64(len(s.Stale)))
	if s.Held != "" {
		m.held.Set(1)
	} else {
		m.held.Set(0)
	}
}

// ObserveStatus records the policies' Ready conditions.
func (m *Metrics) ObserveStatus(r *status.Report) {
	if r.Leader {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
	for st, n := range r.Counts() {
		m.policies.WithLabelValues(string(st)).Set(float64(n))
	}
	m.policyReady.set(r)
}

// policyCollector exports one series per policy from the last report. A
// collector, not a GaugeVec, so that a removed policy or a changed reason
// leaves no stale series and a scrape never sees a half-updated set.
type policyCollector struct {
	desc *prometheus.Desc

	mu   sync.Mutex
	rows [][4]string // policy, kind, status, reason
}

func newPolicyCollector() *policyCollector {
	return &policyCollector{desc: prometheus.NewDesc(namespace+"_policy_ready",
		"1 for each policy, labeled with its kind and the status and reason of its Ready condition.",
		[]string{"policy", "kind", "status", "reason"}, nil)}
}

func (c *policyCollector) set(r *status.Report) {
	rows := make([][4]string, 0, len(r.Policies))
	for i := range r.Policies {
		p := &r.Policies[i]
		if cond := p.Ready(); cond != nil {
			rows = append(rows, [4]string{p.Name, p.Kind, string(cond.Status), cond.Reason})
		}
	}
	c.mu.Lock()
	c.rows = rows
	c.mu.Unlock()
}

func (c *policyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *policyCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	rows := c.rows
	c.mu.Unlock()
	for _, r := range rows {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, r[0], r[1], r[2], r[3])
	}
}
