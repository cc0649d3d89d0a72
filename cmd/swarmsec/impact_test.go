package main

import (
	"strings"
	"testing"
	"time"

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/reconciler/traffic"
)

func TestCutLineSaysCountWindowAndLastSeen(t *testing.T) {
	now := time.Now()
	c := traffic.Cut{Flow: traffic.Flow{Flow: agentv1.Flow{Kind: agentv1.FlowService, Source: "shop_api", Destination: "legacy_svc", Port: 8080, Protocol: "tcp",
		Connections: 412, LastSeen: now.Add(-2*time.Minute - time.Second)}, Why: "no policy lets shop_api and legacy_svc talk: they share no network"}}
	got := cutLine(c, time.Hour, now)
	if want := "shop_api -> legacy_svc:8080/tcp, 412 connections in the last hour, last 2 min ago: no policy"; !strings.HasPrefix(got, want) {
		t.Errorf("%q, want it to start with %q", got, want)
	}
	var b strings.Builder
	printCuts(&b, []traffic.Cut{c}, 30*time.Minute, now)
	if !strings.Contains(b.String(), "Observed flows this change would block (the last 30m0s") {
		t.Errorf("printed %q", b.String())
	}
}
