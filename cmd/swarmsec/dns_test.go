package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
	"github.com/swarmsec/swarmsec/reconciler/traffic"
)

func TestPrintDNS(t *testing.T) {
	now := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	got := &traffic.Lookups{Nodes: []string{"w1"}, Dropped: map[string]uint64{"w1": 5}, Unseen: map[string]uint64{"w1": 199}, Lookups: []traffic.Lookup{
		{DNSLookup: agentv1.DNSLookup{Source: "shop_web", Name: "shop_api", Type: "A", Class: agentv1.DNSVIP, Service: "shop_api", Count: 12,
			FirstSeen: now.Add(-30 * time.Minute), LastSeen: now.Add(-10 * time.Second)}, Nodes: []string{"w1"}},
		{DNSLookup: agentv1.DNSLookup{Source: "shop_web", Name: "evil\x1b[2J", Type: "A", Class: agentv1.DNSNXDomain, Count: 1,
			FirstSeen: now.Add(-2 * time.Minute), LastSeen: now.Add(-2 * time.Minute)}, Nodes: []string{"w1"}},
	}}
	var b bytes.Buffer
	printDNS(&b, got, now)
	out := b.String()
	for _, want := range []string{"SOURCE", "shop_web  shop_api", "vip", "12", "30 min ago", "just now", `"evil\x1b[2J"`, "nxdomain", "w1: 5 lookups not reported", "w1: 199 answers not seen"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	printDNS(&b, &traffic.Lookups{}, now)
	if !strings.Contains(b.String(), "No node agent reported DNS lookups") {
		t.Errorf("no reports: %s", b.String())
	}
}

// The audit's reconnaissance check sees only the lookups the agents
// reported: it says where some were lost (the bound's evictions, the
// kernel's limit), a sign of a flood that may hide a probe.
func TestDNSGaps(t *testing.T) {
	got := dnsGaps(&traffic.Lookups{Dropped: map[string]uint64{"w2": 5}, Unseen: map[string]uint64{"w1": 199, "w2": 1}})
	want := "audit: some DNS lookups in the window were not reported, so dns-reconnaissance may miss some: w1 199 unseen (the kernel's limit); w2 5 not reported (--dns-max, a service's share), 1 unseen (the kernel's limit)\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if got := dnsGaps(&traffic.Lookups{}); got != "" {
		t.Errorf("no gaps: %q", got)
	}
}
