package main

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

func TestExplain(t *testing.T) {
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
	for _, tc := range []struct {
		from, to string
		want     []string
	}{
		{"shop_web", "shop_api", []string{"shop_web may reach shop_api", "policy web", "egress[0] lets it reach shop_api", "Now: they share shop_default"}},
		{"shop_web", "shop_db", []string{"shop_web may not reach shop_db", "isolated by web", "isolated by db", "still share shop_default"}},
		{"shop_api", "shop_x", []string{"neither is isolated"}},
		{"outside", "shop_web", []string{"publishes 8080/tcp in host mode"}},
	} {
		var out bytes.Buffer
		var err error
		r.Store.View(func(tx state.ReadTx) { err = explain(&out, tx, p, tc.from, tc.to) })
		if err != nil {
			t.Fatalf("%s %s: %v", tc.from, tc.to, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("explain %s %s lacks %q:\n%s", tc.from, tc.to, w, out.String())
			}
		}
	}
}
