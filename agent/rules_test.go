package agent

import (
	"strings"
	"testing"
)

func TestDecodeRulesRefusesWhatItCannotEnforce(t *testing.T) {
	head := `{"apiVersion": "swarmsec.io/v1", "kind": "AgentRules", `
	for _, tc := range []struct{ name, doc, err string }{
		{"ports only", head + `"ports": []}`, ""},
		{"services", head + `"revision": 2, "ports": [], "services": [{"service": "db", "ingressIsolated": true, "ingress": [{"policy": "db/ingress[0]", "services": ["api"], "ports": [{"protocol": "tcp", "port": 8080}]}]}]}`, ""},
		{"audit and log", head + `"revision": 3, "ports": [], "services": [{"service": "db", "ingressIsolated": true, "ingress": [{"policy": "db/ingress[0]", "services": ["api"], "logAllowed": true}]}], "audit": [{"service": "api", "egressIsolated": true}]}`, ""},
		{"audit unsorted", head + `"revision": 3, "ports": [], "audit": [{"service": "db"}, {"service": "api"}]}`, "audit[1]"},
		{"newer revision", head + `"revision": 4, "ports": []}`, "rules revision 4 is newer than this agent's (3)"},
		{"unknown field", head + `"ports": [], "services": [{"service": "db", "l7": {}}]}`, `unknown field "l7"`},
		{"unsorted", head + `"revision": 2, "ports": [], "services": [{"service": "db"}, {"service": "api"}]}`, "sorted"},
		{"bad protocol", head + `"revision": 2, "ports": [], "services": [{"service": "db", "egress": [{"policy": "p", "ports": [{"protocol": "icmp"}]}]}]}`, "not a port range"},
		{"reversed range", head + `"revision": 2, "ports": [], "services": [{"service": "db", "egress": [{"policy": "p", "ports": [{"protocol": "tcp", "port": 9, "endPort": 8}]}]}]}`, "not a port range"},
		{"bad block", head + `"revision": 2, "ports": [], "services": [{"service": "db", "egress": [{"policy": "p", "blocks": [{"cidr": "10.0.0.0/8", "except": ["x"]}]}]}]}`, "block 10.0.0.0/8 except x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeRules([]byte(tc.doc))
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
}
