package adopt_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/manifest"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/reconciler/reconcile"
	"github.com/swarmsec/swarmsec/reconciler/traffic"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/policytest"
	"github.com/swarmsec/swarmsec/tools/adopt"
)

// The manifests written from observed flows validate, and applied to the
// cluster they came from they keep every flow seen while the pair never
// seen (web and db, on one network today) no longer shares a network.
func TestFromTrafficKeepsEveryFlowSeen(t *testing.T) {
	f, _ := policytest.Shop(t)
	now := time.Now().UTC()
	fl := func(kind, src, dst, block string, port uint16) traffic.Flow {
		x := traffic.Flow{Flow: agentv1.Flow{Kind: kind, Source: src, Destination: dst, Port: port, Protocol: "tcp", Connections: 12, FirstSeen: now, LastSeen: now}}
		switch kind {
		case agentv1.FlowExternal:
			x.DestinationBlock = block
		case agentv1.FlowPublished:
			x.SourceBlock = block
		}
		return x
	}
	flows := []traffic.Flow{
		fl(agentv1.FlowService, "shop_web", "shop_api", "", 8080),
		fl(agentv1.FlowService, "shop_api", "shop_db", "", 5432),
		fl(agentv1.FlowExternal, "shop_web", agentv1.Outside, "203.0.113.0/24", 443),
		fl(agentv1.FlowPublished, agentv1.Outside, "shop_web", "198.51.100.0/24", 8080),
		fl(agentv1.FlowService, "shop_api", "shop_gone", "", 80),
	}
	st := state.New()
	if err := observe.Observe(context.Background(), f, st); err != nil {
		t.Fatal(err)
	}
	var files map[string][]byte
	var err error
	st.View(func(tx state.ReadTx) { files, err = adopt.FromTraffic(tx, flows, "", time.Hour) })
	if err != nil {
		t.Fatal(err)
	}
	shop := string(files["shop.yaml"])
	for _, want := range []string{"to shop_db 5432/tcp: 12 connections", "shop_api -> shop_gone:80/tcp", "published port 9090/tcp: no connection seen", "0.0.0.0/0"} {
		if !strings.Contains(shop, want) {
			t.Errorf("shop.yaml lacks %q:\n%s", want, shop)
		}
	}
	var objs []v1.Policy
	for name, b := range files {
		o, errs := manifest.DecodeFile(name, b)
		if len(errs) > 0 {
			t.Fatalf("%s does not validate: %v\n%s", name, errs, b)
		}
		objs = append(objs, o...)
	}
	if len(objs) != 3 {
		t.Fatalf("%d policies, want one per service:\n%s", len(objs), shop)
	}
	r := &reconcile.Reconciler{Docker: f, Store: state.New(), Mode: reconcile.ModeEnforce, Log: slog.New(slog.DiscardHandler),
		ProgressDelay: time.Millisecond, PendingDelay: time.Millisecond}
	r.Limits.Force = true
	if err := r.SetPolicies(state.Policies(objs)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, _, err := r.Converge(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := pairs(t, f), [][2]string{{"shop_api", "shop_db"}, {"shop_api", "shop_web"}}; !slices.Equal(got, want) {
		t.Errorf("sharing after %v, want %v", got, want)
	}
	r.Store.View(func(tx state.ReadTx) {
		var d *compile.Desired
		if d, err = compile.Compile(tx, nil); err != nil {
			return
		}
		err = traffic.Judge(tx, d, flows[:4])
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, fl := range flows[:4] {
		if fl.Verdict != traffic.Allowed {
			t.Errorf("%s -> %s: %s (%s) under the policies written from it", fl.From(), fl.Target(), fl.Verdict, fl.Why)
		}
	}
}
