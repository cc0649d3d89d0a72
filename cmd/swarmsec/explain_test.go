package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

// shopPlan plans the shop policies on a fake Swarm with one more service,
// shop_x, that no policy names.
func shopPlan(t *testing.T) (*reconcile.Reconciler, *plan.Plan) {
	t.Helper()
	f, _ := policytest.Shop(t)
	spec := swarm.ServiceSpec{}
	spec.Name = "shop_x"
	spec.Labels = map[string]string{"app": "x"}
	spec.TaskTemplate.ContainerSpec = &swarm.ContainerSpec{Image: "x"}
	f.AddService(spec)
	r := &reconcile.Reconciler{Docker: f, Store: state.New(), Mode: reconcile.ModeEnforce, Log: slog.New(slog.DiscardHandler)}
	if err := r.SetPolicies(policytest.ShopPolicies()); err != nil {
		t.Fatal(err)
	}
	p, err := r.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r, p
}

// exitCode is the process exit status err makes (see main).
func exitCode(err error) int {
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	}
	return 1
}

func TestExplain(t *testing.T) {
	r, p := shopPlan(t)
	for _, tc := range []struct {
		from, to string
		want     []string
		code     int
	}{
		{"shop_web", "shop_api", []string{"shop_web may reach shop_api", "policy web", "egress[0] lets it reach shop_api", "Now: they share shop_default"}, exitCodeMayReach},
		{"shop_web", "shop_db", []string{"shop_web may not reach shop_db", "isolated by web", "isolated by db", "still share shop_default"}, exitCodeMayNotReach},
		{"shop_api", "shop_db", []string{"shop_api may reach shop_db", "policy db", "ingress[0] admits shop_api"}, exitCodeMayReach},
		{"shop_api", "shop_x", []string{"neither is isolated"}, exitCodeMayReach},
		{"outside", "shop_web", []string{"publishes 8080/tcp in host mode"}, exitCodeMayReach},
		{"outside", "shop_db", []string{"shop_db publishes no port"}, exitCodeMayNotReach},
		{"outside", "shop_x", []string{"shop_x is not isolated"}, exitCodeMayNotReach},
	} {
		var out bytes.Buffer
		err := explainPair(&out, r, p, tc.from, tc.to, "text")
		if code := exitCode(err); code != tc.code {
			t.Errorf("explain %s %s: exit %d (%v), want %d", tc.from, tc.to, code, err, tc.code)
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("explain %s %s lacks %q:\n%s", tc.from, tc.to, w, out.String())
			}
		}
		// JSON says the same, with the same exit status.
		out.Reset()
		err = explainPair(&out, r, p, tc.from, tc.to, "json")
		var ans struct {
			From, To string
			Allowed  bool
		}
		if jerr := json.Unmarshal(out.Bytes(), &ans); jerr != nil {
			t.Fatalf("explain -o json %s %s: %v\n%s", tc.from, tc.to, jerr, out.String())
		}
		if code := exitCode(err); code != tc.code || ans.Allowed != (tc.code == exitCodeMayReach) || ans.From != tc.from || ans.To != tc.to {
			t.Errorf("explain -o json %s %s: exit %d, %+v; want exit %d", tc.from, tc.to, code, ans, tc.code)
		}
	}
}

// explain exits as kubectl auth can-i does: 0 may reach, 1 may not, 2 for
// any error, so that a script never reads an error as "may not".
func TestExplainErrorsExit2(t *testing.T) {
	r, p := shopPlan(t)
	for _, pair := range [][2]string{{"shop_web", "nope"}, {"nope", "shop_web"}, {"outside", "nope"}} {
		err := explainPair(&bytes.Buffer{}, r, p, pair[0], pair[1], "text")
		if code := exitCode(err); code != exitCodeExplainErr || !strings.Contains(err.Error(), "no service nope") {
			t.Errorf("explain %s %s: exit %d (%v), want %d naming the missing service", pair[0], pair[1], code, err, exitCodeExplainErr)
		}
	}
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	for _, args := range [][]string{
		{"explain", "shop_web"},                                              // one service
		{"explain", "shop_web", "shop_db", "--no-such-flag"},                 // a flag it does not know
		{"explain", "shop_web", "shop_db", "-o", "yaml"},                     // a format it does not know
		{"explain", "shop_web", "shop_db", "--manifests", "/nonexistent"},    // manifests it cannot read
		{"explain", "shop_web", "shop_db", "--manifests", "../../manifests"}, // no engine
	} {
		if code := exitCode(run(t, args...)); code != exitCodeExplainErr {
			t.Errorf("%v: exit %d, want %d", args, code, exitCodeExplainErr)
		}
	}
}
