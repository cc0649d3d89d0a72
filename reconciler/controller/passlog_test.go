package controller

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"testing"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/internal/logctx"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

// Every line a pass logs names the pass (controller-runtime's
// reconcileID): the loop's own lines, the audit lines, each write's
// outcome and the failure the loop handles. Two passes have two ids.
func TestEveryLineOfAPassNamesIt(t *testing.T) {
	f, _ := shop(t)
	// An audit-only policy logs what it would change, every pass.
	audit := policytest.NetPol("api-audit", v1.NetworkPolicySpec{
		ServiceSelector: policytest.Sel("app", "api"),
		Ingress:         []v1.IngressRule{},
		Enforcement:     v1.EnforcementAudit,
	})
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r := newTestReconciler(t, f, append(shopPolicies(), audit))
	r.Log = log
	r.Limits.Force = true
	c := &Controller{Reconciler: r, Log: log}
	c.init()
	t.Cleanup(c.queue.ShutDown)

	pass := func() (id string, msgs []string) {
		t.Helper()
		buf.Reset()
		c.queue.Add(clusterKey)
		if !c.processNext(t.Context()) {
			t.Fatal("the queue shut down")
		}
		// Nothing else runs: every line is this pass's.
		sc := bufio.NewScanner(&buf)
		for sc.Scan() {
			var line map[string]any
			if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
				t.Fatalf("%v: %s", err, sc.Text())
			}
			msg, _ := line["msg"].(string)
			got, _ := line[logctx.PassKey].(string)
			switch {
			case got == "":
				t.Errorf("line without %s: %s", logctx.PassKey, sc.Text())
			case id == "":
				id = got
			case got != id:
				t.Errorf("line of pass %s names pass %s: %s", id, got, sc.Text())
			}
			msgs = append(msgs, msg)
		}
		return id, msgs
	}

	// The first pass writes, and one write fails.
	f.FailNext("ServiceUpdate", errors.New("injected"))
	first, msgs := pass()
	for _, want := range []string{"audit: would change", "change applied", "change failed", "some changes failed; retrying with backoff"} {
		if !slices.Contains(msgs, want) {
			t.Errorf("first pass logged %q, not %q", msgs, want)
		}
	}
	second, msgs := pass()
	if len(msgs) == 0 || first == second {
		t.Errorf("second pass: id %q after %q, lines %q", second, first, msgs)
	}
}
