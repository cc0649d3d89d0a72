package audit

import (
	"cmp"
	"maps"
	"slices"

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// KindNode is the kind of a finding about a node, from its agent's checks.
const KindNode = "node"

// nodeChecks are the node agents' checks as audit findings: their IDs
// prefixed "node-", at the severity a failure or warning of each has.
var nodeChecks = []Info{
	{ID: "node-" + agentv1.CheckIPTables, Severity: SeverityHigh, Kind: KindNode, Title: "Docker manages no iptables rules on the node: published ports cannot be filtered (node agent)"},
	{ID: "node-" + agentv1.CheckESP, Severity: SeverityMedium, Kind: KindNode, Title: "the node's kernel cannot carry encrypted overlay traffic: no IPsec ESP with AES-GCM (node agent)"},
	{ID: "node-" + agentv1.CheckU32, Severity: SeverityMedium, Kind: KindNode, Title: "the node's kernel has no u32 match, which Docker needs for encrypted networks (node agent)"},
	{ID: "node-" + agentv1.CheckDataPath, Severity: SeverityMedium, Kind: KindNode, Title: "the node's firewall may drop the overlay data path (VXLAN, ESP) (node agent)"},
	{ID: "node-" + agentv1.CheckPublishAll, Severity: SeverityMedium, Kind: KindNode, Title: "containers outside Swarm publish on every address of the node (node agent)"},
	{ID: "node-" + agentv1.CheckICC, Severity: SeverityLow, Kind: KindNode, Title: "containers on the node's default bridge can talk to each other (node agent)", DockerBench: "2.2"},
	{ID: "node-" + agentv1.CheckUserlandProxy, Severity: SeverityLow, Kind: KindNode, Title: "a userland proxy holds published ports on the node (node agent)"},
}

// AddNodes adds the findings of the node agents' reports: every check
// that failed or warns.
func (r *Report) AddNodes(reports map[string]agentv1.Report) {
	for _, k := range slices.Sorted(maps.Keys(reports)) {
		n := reports[k]
		r.Nodes++
		for _, c := range n.Checks {
			if c.Result != agentv1.Failed && c.Result != agentv1.Warning {
				continue
			}
			i := slices.IndexFunc(nodeChecks, func(info Info) bool { return info.ID == "node-"+c.ID })
			if i < 0 {
				continue
			}
			info := nodeChecks[i]
			r.Findings = append(r.Findings, Finding{Check: info.ID, Severity: info.Severity, Kind: KindNode, Name: n.Node,
				Message: c.Message, Fix: c.Fix, DockerBench: info.DockerBench})
		}
	}
	slices.SortFunc(r.Findings, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(b.Severity.rank(), a.Severity.rank()), cmp.Compare(a.Check, b.Check),
			cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
}
