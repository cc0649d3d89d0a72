package agent

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/coreos/go-iptables/iptables"

	"github.com/swarmsec/swarmsec/agent/firewall"
)

// ipt is a node's iptables of one family, through go-iptables.
type ipt struct{ *iptables.IPTables }

// Counters reads each rule's packets from "-S -v" ("... -c packets bytes"):
// plain tokens, whatever the rule's matches print like.
func (t ipt) Counters(table, chain string) ([]uint64, error) {
	lines, err := t.ListWithCounters(table, chain)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, l := range lines {
		if !strings.HasPrefix(l, "-A ") {
			continue
		}
		f := strings.Fields(l)
		var n uint64
		for i := 0; i+2 < len(f); i++ {
			if f[i] == "-c" {
				n, _ = strconv.ParseUint(f[i+1], 10, 64)
			}
		}
		out = append(out, n)
	}
	return out, nil
}

// candidates are the iptables commands to try for a family, in order:
// the nf_tables one, the legacy one, then whatever the default is.
func candidates(f firewall.Family) []string {
	base := "iptables"
	if f == firewall.IPv6 {
		base = "ip6tables"
	}
	return []string{base + "-nft", base + "-legacy", base}
}

// Detect finds the iptables of a family that holds Docker's rules: the
// backend whose filter table has DOCKER-USER (Docker writes to one, and
// rules in the other would never see its traffic). It returns nil, with
// the reason, when none has.
func Detect(f firewall.Family) (Table, string, error) {
	proto := iptables.ProtocolIPv4
	if f == firewall.IPv6 {
		proto = iptables.ProtocolIPv6
	}
	var tried []string
	for _, name := range candidates(f) {
		path, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		t, err := iptables.New(iptables.IPFamily(proto), iptables.Path(path), iptables.Timeout(10))
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", path, err))
			continue
		}
		if ok, err := t.ChainExists("filter", firewall.DockerUser); err == nil && ok {
			return ipt{t}, path, nil
		}
		tried = append(tried, path+": no "+firewall.DockerUser)
	}
	if len(tried) == 0 {
		return nil, "", fmt.Errorf("%s: no %s command found", f, candidates(f)[2])
	}
	return nil, "", fmt.Errorf("%s: no backend holds Docker's %s chain (%s)", f, firewall.DockerUser, strings.Join(tried, "; "))
}
