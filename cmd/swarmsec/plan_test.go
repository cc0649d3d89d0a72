package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/plan"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

// plan and explain show the sources a published port admits, and say that
// nothing enforces them yet.
func TestPlanShowsPortRules(t *testing.T) {
	f, _ := policytest.Shop(t)
	policies := policytest.ShopPolicies()
	var restricted bool
	for _, p := range policies {
		if p.Network == nil {
			continue
		}
		for i := range p.Network.Spec.Publish {
			p.Network.Spec.Publish[i].From = []v1.PortSource{{IPBlock: &v1.SourceBlock{CIDR: "203.0.113.0/24"}}}
			p.Network.Spec.Publish[i].Log = v1.PortLogBlocked
			restricted = true
		}
	}
	if !restricted {
		t.Fatal("the shop policies publish no port")
	}
	r := &reconcile.Reconciler{Docker: f, Store: state.New(), Mode: reconcile.ModeEnforce, Log: slog.New(slog.DiscardHandler)}
	if err := r.SetPolicies(policies); err != nil {
		t.Fatal(err)
	}
	p, err := r.Plan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printPlanTable(&out, p)
	for _, w := range []string{"node agent rules", "shop_web  8080/tcp  host  203.0.113.0/24  blocked", plan.AgentNote} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("plan lacks %q:\n%s", w, out.String())
		}
	}
	out.Reset()
	err = explainPair(&out, r, p, "outside", "shop_web", "text")
	if err != nil || !strings.Contains(out.String(), "admit 203.0.113.0/24, logging blocked, but until a node agent enforces it") {
		t.Errorf("explain outside shop_web: %v\n%s", err, out.String())
	}
}
