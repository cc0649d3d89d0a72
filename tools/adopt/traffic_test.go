package adopt_test

import (
	"context"
	"fmt"
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
	flows[1].Unanswered = 5 // the comment says so
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
	for _, want := range []string{"to shop_db 5432/tcp: 12 connections (5 unanswered", "shop_api -> shop_gone:80/tcp", "published port 9090/tcp: no connection seen", "to outside 203.0.113.0/24 443/tcp: 12 connections"} {
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
	web := rules(t, objs, "shop_web")
	if got, want := web.egress, []string{"shop_api 8080/TCP", "203.0.113.0/24 443/TCP"}; !slices.Equal(got, want) {
		t.Errorf("shop_web egress %q, want %q", got, want)
	}
	api := rules(t, objs, "shop_api")
	if got, want := api.ingress, []string{"shop_web 8080/TCP"}; !slices.Equal(got, want) {
		t.Errorf("shop_api ingress %q, want %q", got, want)
	}
	if got, want := api.egress, []string{"shop_db 5432/TCP"}; !slices.Equal(got, want) {
		t.Errorf("shop_api egress %q, want %q (shop_gone is gone)", got, want)
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

// Each peer's rule takes only the ports seen to it, protocols upper case;
// outside blocks seen on the same ports share a rule, others get their
// own; a peer seen with icmp keeps every port, and the comment says so.
func TestFromTrafficWritesPortsAndBlocks(t *testing.T) {
	f, _ := policytest.Shop(t)
	now := time.Now().UTC()
	fl := func(kind, src, dst, block, proto string, port uint16) traffic.Flow {
		return traffic.Flow{Flow: agentv1.Flow{Kind: kind, Source: src, Destination: dst, DestinationBlock: block,
			Port: port, Protocol: proto, Connections: 3, FirstSeen: now, LastSeen: now}}
	}
	flows := []traffic.Flow{
		fl(agentv1.FlowService, "shop_web", "shop_api", "", "tcp", 8080),
		fl(agentv1.FlowService, "shop_web", "shop_api", "", "udp", 9000),
		fl(agentv1.FlowService, "shop_web", "shop_api", "", "tcp", 8080), // from another node
		fl(agentv1.FlowService, "shop_web", "shop_api", "", "tcp", 443),
		fl(agentv1.FlowService, "shop_web", "shop_db", "", "icmp", 0),
		fl(agentv1.FlowService, "shop_web", "shop_db", "", "tcp", 5432),
		fl(agentv1.FlowExternal, "shop_api", agentv1.Outside, "203.0.113.0/24", "tcp", 443),
		fl(agentv1.FlowExternal, "shop_api", agentv1.Outside, "198.51.100.0/24", "tcp", 443),
		fl(agentv1.FlowExternal, "shop_api", agentv1.Outside, "2001:db8:1:2::/64", "udp", 53),
		fl(agentv1.FlowExternal, "shop_api", agentv1.Outside, "2001:db8:1:2::/64", "sctp", 3868),
		fl(agentv1.FlowExternal, "shop_api", agentv1.Outside, "not-a-block", "tcp", 80),
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
	objs, errs := manifest.DecodeFile("shop.yaml", files["shop.yaml"])
	if len(errs) > 0 {
		t.Fatalf("shop.yaml does not validate: %v\n%s", errs, files["shop.yaml"])
	}
	web, api, db := rules(t, objs, "shop_web"), rules(t, objs, "shop_api"), rules(t, objs, "shop_db")
	for _, c := range []struct {
		what      string
		got, want []string
	}{
		{"shop_web egress", web.egress, []string{"shop_api 443/TCP 8080/TCP 9000/UDP", "shop_db all"}},
		{"shop_api ingress", api.ingress, []string{"shop_web 443/TCP 8080/TCP 9000/UDP"}},
		{"shop_api egress", api.egress, []string{"198.51.100.0/24,203.0.113.0/24 443/TCP", "2001:db8:1:2::/64 3868/SCTP 53/UDP"}},
		{"shop_db ingress", db.ingress, []string{"shop_web all"}},
		{"shop_db egress", db.egress, nil},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s %q, want %q\n%s", c.what, c.got, c.want, files["shop.yaml"])
		}
	}
	shop := string(files["shop.yaml"])
	for _, want := range []string{"to shop_db icmp seen, which no port names: every port stays admitted", `to outside "not-a-block" 80/tcp: not a block, left out`} {
		if !strings.Contains(shop, want) {
			t.Errorf("shop.yaml lacks %q:\n%s", want, shop)
		}
	}
	if strings.Contains(shop, v1.AnyIPv4) || strings.Contains(shop, v1.AnyIPv6) {
		t.Errorf("shop.yaml admits the whole world, want only the blocks seen:\n%s", shop)
	}
}

// policyRules are a service's rules written as "peers ports", peers by
// service or block joined with commas, ports as port/PROTOCOL or "all".
type policyRules struct{ ingress, egress []string }

func rules(t *testing.T, objs []v1.Policy, service string) policyRules {
	t.Helper()
	rule := func(peers []v1.Peer, ports []v1.NetworkPolicyPort) string {
		var ps, qs []string
		for _, p := range peers {
			if p.IPBlock != nil {
				ps = append(ps, p.IPBlock.CIDR)
			} else {
				ps = append(ps, p.ServiceSelector.MatchLabels[v1.LabelService])
			}
		}
		for _, q := range ports {
			from, to := q.Range()
			if from != to {
				t.Errorf("%s: a range %d-%d written, want single ports seen", service, from, to)
			}
			qs = append(qs, fmt.Sprintf("%d/%s", from, q.Protocol))
		}
		if len(qs) == 0 {
			qs = []string{"all"}
		}
		return strings.Join(ps, ",") + " " + strings.Join(qs, " ")
	}
	for _, o := range objs {
		if o.Network == nil || o.Network.Spec.ServiceSelector.MatchLabels[v1.LabelService] != service {
			continue
		}
		var r policyRules
		for _, in := range o.Network.Spec.Ingress {
			r.ingress = append(r.ingress, rule(in.From, in.Ports))
		}
		for _, out := range o.Network.Spec.Egress {
			r.egress = append(r.egress, rule(out.To, out.Ports))
		}
		return r
	}
	t.Fatalf("no policy for %s", service)
	return policyRules{}
}
