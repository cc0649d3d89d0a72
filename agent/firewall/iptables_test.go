//go:build integration

package firewall

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-iptables/iptables"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// netnsTable is go-iptables for one family inside a network namespace of
// the test's own, so the machine's firewall is never touched.
func netnsTable(t *testing.T, f Family) *iptables.IPTables {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	ns := fmt.Sprintf("swarmsec-fw-%d-%d", os.Getpid(), f)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	bin := "iptables"
	if f == IPv6 {
		bin = "ip6tables"
	}
	wrapper := filepath.Join(t.TempDir(), bin)
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nexec ip netns exec "+ns+" "+bin+" \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	proto := iptables.ProtocolIPv4
	if f == IPv6 {
		proto = iptables.ProtocolIPv6
	}
	ipt, err := iptables.New(iptables.Path(wrapper), iptables.IPFamily(proto), iptables.Timeout(10))
	if err != nil {
		t.Fatal(err)
	}
	// What Docker makes, and an operator's rule the agent must keep.
	for _, step := range []error{
		ipt.NewChain(filter, DockerUser),
		ipt.Append(filter, DockerUser, "-p", "tcp", "--dport", "22", "-j", "DROP"),
		ipt.Append(filter, DockerUser, "-j", "RETURN"),
		ipt.Append(filter, "FORWARD", "-j", DockerUser),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	return ipt
}

// The rendered rules are what the kernel's iptables accepts (conntrack,
// NFLOG), a second sync finds them in place through iptables' own
// normalized listing, a change swaps chains and a sync with no rules leaves
// only what was there before.
func TestSyncOnRealIptables(t *testing.T) {
	for _, f := range []Family{IPv4, IPv6} {
		t.Run(f.String(), func(t *testing.T) {
			ipt := netnsTable(t, f)
			before, _ := ipt.List(filter, DockerUser)
			ports := []agentv1.Port{{
				Service: "shop_web", Port: 443, Protocol: v1.ProtocolTCP, Log: v1.PortLogAll,
				From: []v1.SourceBlock{{CIDR: "203.0.113.0/24", Except: []string{"203.0.113.9/32"}}, {CIDR: "2001:db8::/32", Except: []string{"2001:db8::/48"}}},
			}, {Service: "dns", Port: 53, Protocol: v1.ProtocolUDP, Log: v1.PortLogBlocked}}
			rules, err := Rules(f, ports, 5)
			if err != nil {
				t.Fatal(err)
			}
			if wrote, err := Sync(ipt, rules); err != nil || !wrote {
				t.Fatalf("first sync: wrote %v: %v", wrote, err)
			}
			if wrote, err := Sync(ipt, rules); err != nil || wrote {
				t.Fatalf("second sync: wrote %v: %v", wrote, err)
			}
			lines, _ := ipt.List(filter, DockerUser)
			if lines[1] != "-A DOCKER-USER -j "+chains[0] {
				t.Fatalf("the jump is not first:\n%s", strings.Join(lines, "\n"))
			}
			ports[0].Log = v1.PortLogBlocked
			rules, _ = Rules(f, ports, 5)
			if wrote, err := Sync(ipt, rules); err != nil || !wrote {
				t.Fatalf("change: wrote %v: %v", wrote, err)
			}
			all, _ := ipt.ListChains(filter)
			if slices.Contains(all, chains[0]) || !slices.Contains(all, chains[1]) {
				t.Fatalf("after the change, chains %v: want only %s", all, chains[1])
			}
			if wrote, err := Sync(ipt, nil); err != nil || !wrote {
				t.Fatalf("removal: wrote %v: %v", wrote, err)
			}
			after, _ := ipt.List(filter, DockerUser)
			all, _ = ipt.ListChains(filter)
			if !slices.Equal(before, after) || slices.ContainsFunc(all, func(c string) bool { return strings.HasPrefix(c, Chain) }) {
				t.Fatalf("left behind: chains %v, DOCKER-USER\n%s\nwas\n%s", all, strings.Join(after, "\n"), strings.Join(before, "\n"))
			}
		})
	}
}
