package manifest

import (
	"fmt"
	"strings"
	"testing"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// np is a NetworkPolicy named p whose spec body starts on line 6. Bodies are
// indented by two spaces.
func np(body string) string {
	return "apiVersion: swarmsec.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\nspec:\n" + body
}

// sel is a spec's first line (6): an empty selector, so bodies that add to
// it start on line 7.
const sel = "  serviceSelector: {}\n"

// ep is an EncryptionPolicy named e whose spec body starts on line 6.
func ep(body string) string {
	return "apiVersion: swarmsec.io/v1\nkind: EncryptionPolicy\nmetadata:\n  name: e\nspec:\n" + body
}

// checkErrors compares errors with wants of the form "line:col: field:
// message": each error must start with its want, so long explanations can
// be abbreviated.
func checkErrors(t *testing.T, file string, errs []Error, want []string) {
	t.Helper()
	var got []string
	for _, e := range errs {
		got = append(got, strings.TrimPrefix(e.Error(), file+":"))
	}
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = strings.HasPrefix(got[i], want[i])
	}
	if !ok {
		t.Errorf("errors:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

func TestDecodeRules(t *testing.T) {
	long := strings.Repeat("a", 64)
	tests := []struct {
		name string
		doc  string
		want []string // empty: valid
	}{
		// The document and its header.
		{"minimal", np(sel), nil},
		{"root is a list", "- a\n", []string{`1:1: expected a mapping with apiVersion and kind, got a list`}},
		{"root is a string", "hello\n", []string{`1:1: expected a mapping with apiVersion and kind, got a string`}},
		{"kind missing", "apiVersion: swarmsec.io/v1\nmetadata: {name: p}\n", []string{`1:1: kind: required: one of EncryptionPolicy, NetworkPolicy`}},
		{"kind unknown", "apiVersion: swarmsec.io/v1\nkind: Deployment\n", []string{`2:7: kind: unsupported value "Deployment": must be one of EncryptionPolicy, NetworkPolicy`}},
		{"kind not a string", "apiVersion: swarmsec.io/v1\nkind: [NetworkPolicy]\n", []string{`2:7: kind: unsupported value a list: must be one of`}},
		{"kind and apiVersion wrong", "apiVersion: apps/v1\nkind: Deployment\n", []string{
			`1:13: apiVersion: unsupported value "apps/v1": must be swarmsec.io/v1`,
			`2:7: kind: unsupported value "Deployment"`,
		}},
		{"kubernetes apiVersion", strings.Replace(np(sel), "swarmsec.io/v1", "networking.k8s.io/v1", 1), []string{
			`1:13: apiVersion: unsupported value "networking.k8s.io/v1": must be swarmsec.io/v1`,
		}},
		{"apiVersion missing", "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {serviceSelector: {}}\n", []string{`1:1: apiVersion: required: swarmsec.io/v1`}},
		{"unknown top-level field", np(sel) + "status: {}\n", []string{`7:1: status: unknown field`}},
		{"duplicate key", np(sel + "  serviceSelector: {}\n"), []string{`7:3: spec.serviceSelector: duplicate key "serviceSelector" (first at line 6)`}},
		{"merge key", "base: &b {name: p}\n" + np(sel), []string{`1:1: base: unknown field`}},
		{"merge key in metadata", "apiVersion: swarmsec.io/v1\nkind: NetworkPolicy\nmetadata:\n  <<: {name: p}\nspec: {serviceSelector: {}}\n", []string{
			`3:1: metadata.name: required`,
			`4:3: metadata.<<: merge keys are not supported: write the fields out`,
		}},
		{"non-string key", np(sel + "  1: x\n"), []string{`7:3: spec: mapping key must be a string, got an integer "1"`}},
		{"aliases", np("  serviceSelector: &s {matchLabels: {app: web}}\n  ingress: [{from: [{serviceSelector: *s}]}]\n"), nil},

		// metadata
		{"metadata missing", "apiVersion: swarmsec.io/v1\nkind: NetworkPolicy\nspec: {serviceSelector: {}}\n", []string{`1:1: metadata: required`}},
		{"name missing", strings.Replace(np(sel), "  name: p\n", "  labels: {a: b}\n", 1), []string{`3:1: metadata.name: required`}},
		{"name empty", strings.Replace(np(sel), "name: p", `name: ""`, 1), []string{`4:9: metadata.name: required`}},
		{"name uppercase", strings.Replace(np(sel), "name: p", "name: Web_1", 1), []string{
			`4:9: metadata.name: invalid name "Web_1": must be a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters`,
		}},
		{"name with a dot", strings.Replace(np(sel), "name: p", "name: a.b", 1), []string{`4:9: metadata.name: invalid name "a.b"`}},
		{"name starts with dash", strings.Replace(np(sel), "name: p", "name: -a", 1), []string{`4:9: metadata.name: invalid name "-a"`}},
		{"name too long", strings.Replace(np(sel), "name: p", "name: "+long, 1), []string{`4:9: metadata.name: invalid name "` + long[:64] + `"`}},
		{"name of 63", strings.Replace(np(sel), "name: p", "name: "+long[:63], 1), nil},
		{"name a number", strings.Replace(np(sel), "name: p", "name: 12", 1), []string{
			`4:9: metadata.name: expected a string, got an integer 12 (quote it: "12")`,
			`4:9: metadata.name: required`,
		}},
		{"labels and annotations", strings.Replace(np(sel), "  name: p\n", "  name: p\n  labels: {team: shop, empty: \"\"}\n  annotations: {note: x}\n", 1), nil},
		{"label value null", strings.Replace(np(sel), "  name: p\n", "  name: p\n  labels: {team: }\n", 1), []string{
			`5:18: metadata.labels["team"]: expected a string, got null (write "" for an empty value)`,
		}},
		{"spec missing", "apiVersion: swarmsec.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\n", []string{`1:1: spec: required`}},
		{"spec null", np(""), []string{`5:1: spec: required`}},
		{"spec a list", np("  - a\n"), []string{`6:3: spec: expected a mapping, got a list`}},

		// serviceSelector
		{"selector missing", np("  policyTypes: [Ingress]\n"), []string{`5:1: spec.serviceSelector: required (write {} to select everything)`}},
		{"selector null", np("  serviceSelector:\n"), []string{`6:3: spec.serviceSelector: required`}},
		{"selector a string", np("  serviceSelector: app=web\n"), []string{`6:20: spec.serviceSelector: expected a mapping, got a string`}},
		{"matchLabels", np("  serviceSelector:\n    matchLabels: {app: web, com.docker.stack.namespace: shop, empty: \"\"}\n"), nil},
		{"label key with a space", np("  serviceSelector:\n    matchLabels:\n      \"a b\": x\n"), []string{
			`8:7: spec.serviceSelector.matchLabels["a b"]: invalid label key "a b": must be non-empty and free of whitespace`,
		}},
		{"label key empty", np("  serviceSelector:\n    matchLabels:\n      \"\": x\n"), []string{`8:7: spec.serviceSelector.matchLabels[""]: invalid label key ""`}},
		{"selector on swarmsec's own record", np("  serviceSelector:\n    matchLabels:\n      swarmsec.io/original: x\n"), []string{
			`8:7: spec.serviceSelector.matchLabels["swarmsec.io/original"]: swarmsec.io/original is a label swarmsec writes itself: selecting on it would make services flip`,
		}},
		{"expression on swarmsec's managed label", np("  serviceSelector:\n    matchExpressions:\n      - {key: swarmsec.io/managed, operator: Exists}\n"), []string{
			`8:15: spec.serviceSelector.matchExpressions[0].key: swarmsec.io/managed is a label swarmsec writes itself`,
		}},
		{"label value a number", np("  serviceSelector:\n    matchLabels:\n      version: 2\n"), []string{
			`8:16: spec.serviceSelector.matchLabels["version"]: expected a string, got an integer 2 (quote it: "2")`,
		}},
		{"label value a boolean", np("  serviceSelector:\n    matchLabels:\n      public: true\n"), []string{
			`8:15: spec.serviceSelector.matchLabels["public"]: expected a string, got a boolean true (quote it: "true")`,
		}},
		{"operator unsupported", np("  serviceSelector:\n    matchExpressions:\n      - key: app\n        operator: Inn\n        values: [db]\n"), []string{
			`9:19: spec.serviceSelector.matchExpressions[0].operator: unsupported value "Inn": must be one of In, NotIn, Exists, DoesNotExist`,
		}},
		{"all operators", np(`  serviceSelector:
    matchExpressions:
      - {key: app, operator: In, values: [a, b]}
      - {key: tier, operator: NotIn, values: [""]}
      - {key: com.docker.stack.namespace, operator: Exists}
      - {key: swarmsec.io/ignore, operator: DoesNotExist, values: []}
`), nil},
		{"In without values", np("  serviceSelector:\n    matchExpressions:\n      - key: app\n        operator: In\n"), []string{
			`8:9: spec.serviceSelector.matchExpressions[0].values: required: In needs at least one value`,
		}},
		{"NotIn with empty values", np("  serviceSelector:\n    matchExpressions:\n      - {key: app, operator: NotIn, values: []}\n"), []string{
			`8:45: spec.serviceSelector.matchExpressions[0].values: required: NotIn needs at least one value`,
		}},
		{"Exists with values", np("  serviceSelector:\n    matchExpressions:\n      - {key: app, operator: Exists, values: [web]}\n"), []string{
			`8:46: spec.serviceSelector.matchExpressions[0].values: must be empty: Exists takes no values`,
		}},
		{"DoesNotExist with values", np("  serviceSelector:\n    matchExpressions:\n      - {key: app, operator: DoesNotExist, values: [web]}\n"), []string{
			`8:52: spec.serviceSelector.matchExpressions[0].values: must be empty: DoesNotExist takes no values`,
		}},
		{"expression without key", np("  serviceSelector:\n    matchExpressions:\n      - operator: Exists\n"), []string{
			`8:9: spec.serviceSelector.matchExpressions[0].key: required`,
		}},
		{"expression key with whitespace", np("  serviceSelector:\n    matchExpressions:\n      - {key: \"app\\t\", operator: Exists}\n"), []string{
			`8:15: spec.serviceSelector.matchExpressions[0].key: invalid label key "app\t"`,
		}},
		{"expression without operator", np("  serviceSelector:\n    matchExpressions:\n      - key: app\n"), []string{
			`8:9: spec.serviceSelector.matchExpressions[0].operator: required: one of In, NotIn, Exists, DoesNotExist`,
		}},
		{"null expression", np("  serviceSelector:\n    matchExpressions: [~]\n"), []string{
			`7:24: spec.serviceSelector.matchExpressions[0]: expected a mapping, got null`,
		}},
		{"values not a list", np("  serviceSelector:\n    matchExpressions:\n      - {key: app, operator: In, values: web}\n"), []string{
			`8:42: spec.serviceSelector.matchExpressions[0].values: expected a list, got a string "web"`,
		}},
		{"misspelt field", np("  serviceSelector:\n    matchLabel: {app: web}\n"), []string{
			`7:5: spec.serviceSelector.matchLabel: unknown field (did you mean matchLabels?)`,
		}},

		// policyTypes
		{"policyTypes", np(sel + "  policyTypes: [Ingress, Egress]\n"), nil},
		{"policyType unsupported", np(sel + "  policyTypes: [Ingress, Sideways]\n"), []string{
			`7:26: spec.policyTypes[1]: unsupported value "Sideways": must be one of Ingress, Egress`,
		}},
		{"policyType duplicate", np(sel + "  policyTypes: [Egress, Egress]\n"), []string{
			`7:25: spec.policyTypes[1]: duplicate value "Egress" (also spec.policyTypes[0])`,
		}},
		{"policyTypes not a list", np(sel + "  policyTypes: Ingress\n"), []string{`7:16: spec.policyTypes: expected a list, got a string "Ingress"`}},
		{"policyType null", np(sel + "  policyTypes: [Ingress, ~]\n"), []string{`7:26: spec.policyTypes[1]: expected a string, got null`}},
		{"ingress without Ingress", np(sel + "  policyTypes: [Egress]\n  ingress: [{from: [{serviceSelector: {}}]}]\n"), []string{
			`8:12: spec.ingress: has no effect: spec.policyTypes does not include Ingress`,
		}},
		{"egress without Egress", np(sel + "  policyTypes: [Ingress]\n  egress: [{to: [{serviceSelector: {}}]}]\n"), []string{
			`8:11: spec.egress: has no effect: spec.policyTypes does not include Egress`,
		}},

		// Rules and peers.
		{"rules", np(sel + `  ingress:
    - from:
        - serviceSelector: {matchLabels: {app: web}}
  egress:
    - to:
        - serviceSelector: {}
        - ipBlock: {cidr: 0.0.0.0/0}
        - ipBlock: {cidr: "::/0"}
`), nil},
		{"ingress not a list", np(sel + "  ingress: {from: []}\n"), []string{`7:12: spec.ingress: expected a list, got a mapping`}},
		{"ingress rule without from", np(sel + "  ingress:\n    - {}\n"), []string{
			`8:7: spec.ingress[0].from: required: a rule names its peers (serviceSelector: {} allows every service)`,
		}},
		{"egress rule without to", np(sel + "  egress:\n    - to: []\n"), []string{`8:11: spec.egress[0].to: required: a rule names its peers`}},
		{"ports in ingress", np(sel + "  ingress:\n    - from: [{serviceSelector: {}}]\n      ports: [{port: 80}, {port: 8000, endPort: 8100, protocol: UDP}, {protocol: SCTP}]\n"), nil},
		{"log all on rules", np(sel + "  ingress:\n    - from: [{serviceSelector: {}}]\n      log: all\n  egress:\n    - to: [{serviceSelector: {}}]\n      log: blocked\n"), nil},
		{"log unknown on a rule", np(sel + "  egress:\n    - to: [{serviceSelector: {}}]\n      log: everything\n"), []string{
			`9:12: spec.egress[0].log: unsupported value "everything": must be one of none, blocked, all`,
		}},
		{"ports only", np(sel + "  ingress:\n    - ports: [{port: 80}]\n"), []string{`8:7: spec.ingress[0].from: required: a rule names its peers (serviceSelector: {} allows every service)`}},
		{"ports in egress", np(sel + "  egress:\n    - to: [{serviceSelector: {}}]\n      ports: [{port: 53, protocol: UDP}]\n"), nil},
		{"ports empty", np(sel + "  egress:\n    - to: [{serviceSelector: {}}]\n      ports: []\n"), []string{
			`9:14: spec.egress[0].ports: empty: omit ports to allow every port, or list the ports to allow`,
		}},
		{"named port", np(sel + "  ingress:\n    - from: [{serviceSelector: {}}]\n      ports: [{port: http}]\n"), []string{
			`9:22: spec.ingress[0].ports[0].port: expected an integer, got a string "http"`,
		}},
		{"port out of range", np(sel + "  ingress:\n    - from: [{serviceSelector: {}}]\n      ports: [{port: 0}, {port: 65536}]\n"), []string{
			`9:22: spec.ingress[0].ports[0].port: out of range 0: must be 1..65535`,
			`9:33: spec.ingress[0].ports[1].port: out of range 65536: must be 1..65535`,
		}},
		{"endPort below port", np(sel + "  ingress:\n    - from: [{serviceSelector: {}}]\n      ports: [{port: 90, endPort: 80}]\n"), []string{
			`9:35: spec.ingress[0].ports[0].endPort: out of range 80: must be 90 (port)..65535`,
		}},
		{"endPort without port", np(sel + "  ingress:\n    - from: [{serviceSelector: {}}]\n      ports: [{endPort: 80}]\n"), []string{
			`9:25: spec.ingress[0].ports[0].endPort: needs port: endPort ends a range that port starts`,
		}},
		{"protocol lower case", np(sel + "  ingress:\n    - from: [{serviceSelector: {}}]\n      ports: [{port: 80, protocol: tcp}]\n"), []string{
			`9:36: spec.ingress[0].ports[0].protocol: unsupported value "tcp": must be one of TCP, UDP, SCTP`,
		}},
		{"duplicate port", np(sel + "  ingress:\n    - from: [{serviceSelector: {}}]\n      ports: [{port: 80}, {port: 80, protocol: TCP}]\n"), []string{
			`9:27: spec.ingress[0].ports[1]: duplicate port (also spec.ingress[0].ports[0])`,
		}},
		{"namespaceSelector", np(sel + "  ingress:\n    - from:\n        - namespaceSelector: {matchLabels: {team: a}}\n"), []string{
			`9:11: spec.ingress[0].from[0].namespaceSelector: not supported: Swarm has no namespaces: to select a stack, use serviceSelector with the label com.docker.stack.namespace=<stack name>`,
		}},
		{"podSelector in a peer", np(sel + "  egress:\n    - to:\n        - podSelector: {}\n"), []string{
			`9:11: spec.egress[0].to[0].podSelector: not supported: Swarm has no pods: use serviceSelector (every service carries the implicit label swarmsec.io/service=<service name>)`,
		}},
		{"podSelector in the spec", np("  podSelector: {matchLabels: {app: db}}\n"), []string{
			`5:1: spec.serviceSelector: required`,
			`6:3: spec.podSelector: not supported: Swarm has no pods: use serviceSelector`,
		}},
		{"ipBlock in ingress", np(sel + "  ingress:\n    - from:\n        - ipBlock: {cidr: 0.0.0.0/0}\n"), []string{
			`9:20: spec.ingress[0].from[0].ipBlock: not supported in ingress rules: Swarm cannot tell clients outside the cluster apart; they reach a service only through its published ports, which spec.publish governs`,
		}},
		{"ipBlock narrower than everything", np(sel + "  egress:\n    - to:\n        - ipBlock: {cidr: 10.0.0.0/8}\n        - ipBlock: {cidr: \"2001:db8::/32\"}\n"), nil},
		{"ipBlock except", np(sel + "  egress:\n    - to:\n        - ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.9/32]}\n"), nil},
		{"ipBlock host bits", np(sel + "  egress:\n    - to:\n        - ipBlock: {cidr: 10.0.0.1/8}\n"), []string{
			`9:27: spec.egress[0].to[0].ipBlock.cidr: host address in 10.0.0.1/8: write the block's network address, 10.0.0.0/8 (a single address is /32)`,
		}},
		{"ipBlock except outside", np(sel + "  egress:\n    - to:\n        - ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}\n"), []string{
			`9:48: spec.egress[0].to[0].ipBlock.except[0]: 192.168.0.0/16 is not inside 10.0.0.0/8: an exception must be a smaller block within the cidr`,
		}},
		{"ipBlock without cidr", np(sel + "  egress:\n    - to:\n        - ipBlock: {}\n"), []string{
			`9:11: spec.egress[0].to[0].ipBlock.cidr: required: a CIDR block such as 203.0.113.0/24, 2001:db8::/32, or 0.0.0.0/0 and ::/0 for the whole world`,
		}},
		{"peer with both", np(sel + "  egress:\n    - to:\n        - {serviceSelector: {}, ipBlock: {cidr: 0.0.0.0/0}}\n"), []string{
			`9:11: spec.egress[0].to[0]: serviceSelector and ipBlock exclude each other: write them as two peers`,
		}},
		{"peer with neither", np(sel + "  egress:\n    - to:\n        - {}\n"), []string{`9:11: spec.egress[0].to[0]: needs serviceSelector or ipBlock`}},
		{"peer selector checked", np(sel + "  ingress:\n    - from:\n        - serviceSelector: {matchExpressions: [{key: a, operator: In}]}\n"), []string{
			`9:48: spec.ingress[0].from[0].serviceSelector.matchExpressions[0].values: required: In needs at least one value`,
		}},

		// publish
		{"publish", np(sel + "  publish:\n    - {port: 8080}\n    - {port: 8080, protocol: udp, mode: ingress}\n    - {port: 9, protocol: sctp, mode: host}\n"), nil},
		{"port 0", np(sel + "  publish: [{port: 0}]\n"), []string{`7:20: spec.publish[0].port: out of range 0: must be 1..65535`}},
		{"port 65536", np(sel + "  publish: [{port: 65536}]\n"), []string{`7:20: spec.publish[0].port: out of range 65536: must be 1..65535`}},
		{"port huge", np(sel + "  publish: [{port: 99999999999999999999}]\n"), []string{`7:20: spec.publish[0].port: expected an integer, got a number "99999999999999999999"`}},
		{"port missing", np(sel + "  publish:\n    - protocol: udp\n"), []string{`8:7: spec.publish[0].port: required`}},
		{"port a string", np(sel + "  publish: [{port: \"80\"}]\n"), []string{`7:20: spec.publish[0].port: expected an integer, got a string "80"`}},
		{"port a float", np(sel + "  publish: [{port: 80.5}]\n"), []string{`7:20: spec.publish[0].port: expected an integer, got a number "80.5"`}},
		{"protocol unsupported", np(sel + "  publish: [{port: 80, protocol: TCP}]\n"), []string{`7:34: spec.publish[0].protocol: unsupported value "TCP": must be one of tcp, udp, sctp`}},
		{"mode unsupported", np(sel + "  publish: [{port: 80, mode: global}]\n"), []string{`7:30: spec.publish[0].mode: unsupported value "global": must be one of host, ingress`}},
		{"duplicate port", np(sel + "  publish:\n    - {port: 80}\n    - {port: 80, protocol: tcp, mode: ingress}\n"), []string{
			`9:7: spec.publish[1]: duplicate port 80/tcp (also spec.publish[0])`,
		}},

		// publish sources
		{"sources ok", np(sel + "  publish:\n    - port: 443\n      log: blocked\n      from:\n        - ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.9/32]}\n        - ipBlock: {cidr: \"2001:db8::/32\"}\n"), nil},
		{"source host address", np(sel + "  publish:\n    - port: 443\n      from: [{ipBlock: {cidr: 203.0.113.7/24}}]\n"), []string{
			`9:31: spec.publish[0].from[0].ipBlock.cidr: host address in 203.0.113.7/24: write the block's network address, 203.0.113.0/24 (a single address is /32)`,
		}},
		{"source not a cidr", np(sel + "  publish:\n    - port: 443\n      from: [{ipBlock: {cidr: 203.0.113.7}}]\n"), []string{
			`9:31: spec.publish[0].from[0].ipBlock.cidr: invalid CIDR "203.0.113.7": must be an address and a prefix length, as 203.0.113.0/24 or 2001:db8::/32`,
		}},
		{"except outside", np(sel + "  publish:\n    - port: 443\n      from: [{ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}}]\n"), []string{
			`9:52: spec.publish[0].from[0].ipBlock.except[0]: 192.168.0.0/16 is not inside 10.0.0.0/8: an exception must be a smaller block within the cidr`,
		}},
		{"except the whole block", np(sel + "  publish:\n    - port: 443\n      from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.0.0.0/8]}}]\n"), []string{
			`9:52: spec.publish[0].from[0].ipBlock.except[0]: 10.0.0.0/8 is not inside 10.0.0.0/8: an exception must be a smaller block within the cidr`,
		}},
		{"except other family", np(sel + "  publish:\n    - port: 443\n      from: [{ipBlock: {cidr: 10.0.0.0/8, except: [\"::/64\"]}}]\n"), []string{
			`9:52: spec.publish[0].from[0].ipBlock.except[0]: ::/64 is not inside 10.0.0.0/8: one is IPv4, the other IPv6`,
		}},
		{"source mapped", np(sel + "  publish:\n    - port: 443\n      from: [{ipBlock: {cidr: \"::ffff:10.0.0.0/104\"}}]\n"), []string{
			`9:31: spec.publish[0].from[0].ipBlock.cidr: invalid CIDR "::ffff:10.0.0.0/104": write an IPv4 block as IPv4, 10.0.0.0/8`,
		}},
		{"sources empty", np(sel + "  publish:\n    - port: 443\n      from: []\n"), []string{
			`9:13: spec.publish[0].from: empty: omit from to admit any source, or list the sources to admit`,
		}},
		{"source without block", np(sel + "  publish:\n    - port: 443\n      from: [{}]\n"), []string{
			`9:14: spec.publish[0].from[0].ipBlock: required`,
		}},
		{"log unsupported", np(sel + "  publish:\n    - port: 443\n      log: dropped\n"), []string{
			`9:12: spec.publish[0].log: unsupported value "dropped": must be one of none, blocked, all`,
		}},

		// enforcement
		{"enforcement audit", np(sel + "  enforcement: audit\n"), nil},
		{"enforcement unsupported", np(sel + "  enforcement: Audit\n"), []string{`7:16: spec.enforcement: unsupported value "Audit": must be one of enforce, audit`}},
		{"enforcement empty", np(sel + "  enforcement: \"\"\n"), []string{`7:16: spec.enforcement: unsupported value "": must be one of enforce, audit`}},

		// EncryptionPolicy
		{"encryption", ep("  networkSelector: {matchLabels: {com.docker.stack.namespace: shop}}\n  enforcement: audit\n"), nil},
		{"encryption without selector", ep("  enforcement: audit\n"), []string{`5:1: spec.networkSelector: required (write {} to select everything)`}},
		{"encryption bad operator", ep("  networkSelector:\n    matchExpressions: [{key: a, operator: exists}]\n"), []string{
			`7:43: spec.networkSelector.matchExpressions[0].operator: unsupported value "exists": must be one of In, NotIn, Exists, DoesNotExist`,
		}},
		{"encryption enforcement", ep("  networkSelector: {}\n  enforcement: on\n"), []string{`7:16: spec.enforcement: unsupported value "on"`}},
		{"encryption with serviceSelector", ep("  networkSelector: {}\n  serviceSelector: {}\n"), []string{`7:3: spec.serviceSelector: unknown field`}},
		{"encryption name", strings.Replace(ep("  networkSelector: {}\n"), "name: e", "name: E", 1), []string{`4:9: metadata.name: invalid name "E"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs, errs := DecodeFile("f.yaml", []byte(tt.doc))
			checkErrors(t, "f.yaml", errs, tt.want)
			if len(tt.want) == 0 && len(objs) != 1 {
				t.Errorf("got %d objects, want 1", len(objs))
			}
			if len(tt.want) > 0 && len(objs) != 0 {
				t.Errorf("got %d objects from an invalid document", len(objs))
			}
		})
	}
}

// TestDecodeIssueExample checks the error the issue gives as the model.
func TestDecodeIssueExample(t *testing.T) {
	doc := np("  serviceSelector:\n    matchExpressions:\n      - key: app\n        operator: Inn\n        values: [db]\n")
	_, errs := DecodeFile("db.yaml", []byte(doc))
	want := `db.yaml:9:19: spec.serviceSelector.matchExpressions[0].operator: unsupported value "Inn": must be one of In, NotIn, Exists, DoesNotExist`
	if len(errs) != 1 || errs[0].Error() != want {
		t.Fatalf("errors %v, want %s", errs, want)
	}
	if e := errs[0]; e.File != "db.yaml" || e.Line != 9 || e.Column != 19 || e.Field != "spec.serviceSelector.matchExpressions[0].operator" {
		t.Errorf("error fields %+v", e)
	}
}

func TestDecodeObject(t *testing.T) {
	doc := "# comment\n\n" + np(sel+"  publish: [{port: 8080}]\n")
	objs, errs := DecodeFile("web.yaml", []byte(doc))
	if len(errs) > 0 || len(objs) != 1 {
		t.Fatalf("objects %v, errors %v", objs, errs)
	}
	o := objs[0]
	if o.Kind != v1.KindNetworkPolicy || o.Name != "p" || o.File != "web.yaml" || o.Line != 3 || len(o.Generation) != 16 {
		t.Errorf("object %+v", o)
	}
	if o.Network == nil || o.Encryption != nil || o.Network.Spec.Publish[0].Port != 8080 {
		t.Errorf("typed object %+v", o.Network)
	}
	if o.Network.APIVersion != v1.APIVersion || o.Network.Kind != v1.KindNetworkPolicy {
		t.Errorf("type meta %+v", o.Network.TypeMeta)
	}

	objs, errs = DecodeFile("enc.json", []byte(`{"apiVersion": "swarmsec.io/v1", "kind": "EncryptionPolicy",
 "metadata": {"name": "enc"}, "spec": {"networkSelector": {"matchLabels": {"a": "b"}}}}`))
	if len(errs) > 0 || len(objs) != 1 || objs[0].Encryption == nil || objs[0].Encryption.Spec.NetworkSelector.MatchLabels["a"] != "b" {
		t.Fatalf("JSON: objects %+v, errors %v", objs, errs)
	}
}

func TestDecodeMultipleDocuments(t *testing.T) {
	file := `# Three policies and some trouble.
---
apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata: {name: one}
spec: {serviceSelector: {}}
--- # a comment after the marker
apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata: {name: two}
spec:
  serviceSelector: {}
  publish: [{port: 0}]
---
---
# an empty document, then one that does not parse
---
apiVersion: swarmsec.io/v1
kind: NetworkPolicy
metadata: {name: [
---
apiVersion: swarmsec.io/v1
kind: EncryptionPolicy
metadata:
  name: three
spec:
  networkSelector: {}
...
--- {apiVersion: swarmsec.io/v1, kind: NetworkPolicy, metadata: {name: four}, spec: {serviceSelecter: {}}}
`
	objs, errs := DecodeFile("all.yaml", []byte(file))
	checkErrors(t, "all.yaml", errs, []string{
		`13:20: spec.publish[0].port: out of range 0`,
		`20:`, // the YAML parser's own message
		`29:79: spec.serviceSelector: required`,
		`29:86: spec.serviceSelecter: unknown field (did you mean serviceSelector?)`,
	})
	var got []string
	for _, o := range objs {
		got = append(got, fmt.Sprintf("%s@%d", o.Name, o.Line))
	}
	if want := "one@3 three@22"; strings.Join(got, " ") != want {
		t.Errorf("objects %v, want %s", got, want)
	}
}

func TestDecodeEmpty(t *testing.T) {
	for _, doc := range []string{"", "\n", "# only a comment\n", "---\n", "---\n---\n...\n", "~\n", "null\n"} {
		objs, errs := DecodeFile("e.yaml", []byte(doc))
		if len(objs) != 0 || len(errs) != 0 {
			t.Errorf("%q: objects %v, errors %v", doc, objs, errs)
		}
	}
}

// TestDecodeAllErrors checks that a file reports every error, not the first.
func TestDecodeAllErrors(t *testing.T) {
	var b strings.Builder
	for i := range MaxErrors + 20 {
		fmt.Fprintf(&b, "---\napiVersion: swarmsec.io/v1\nkind: NetworkPolicy\nmetadata: {name: p%d}\nspec: {serviceSelector: {}, x: 1}\n", i)
	}
	_, errs := DecodeFile("many.yaml", []byte(b.String()))
	if len(errs) != MaxErrors+1 {
		t.Fatalf("%d errors, want %d", len(errs), MaxErrors+1)
	}
	if got := errs[MaxErrors-1].Error(); !strings.HasPrefix(got, fmt.Sprintf("many.yaml:%d:", 5*MaxErrors)) {
		t.Errorf("last error %s", got)
	}
	if got := errs[MaxErrors].Error(); got != "many.yaml: too many errors: stopped after 100" {
		t.Errorf("summary %s", got)
	}
}

func TestGeneration(t *testing.T) {
	base := np(sel + "  ingress:\n  - from:\n    - serviceSelector:\n        matchLabels: {app: web, tier: front}\n  publish: [{port: 80}]\n")
	tests := []struct {
		name  string
		other string
		same  bool
	}{
		{"identical", base, true},
		{"comments and layout", "# hello\n" + strings.Replace(base, "{app: web, tier: front}", "\n          tier: front # x\n          app: web", 1), true},
		{"defaults written out", strings.Replace(base, "{port: 80}", "{port: 80, protocol: tcp, mode: host}", 1) + "  enforcement: enforce\n  policyTypes: [Ingress]\n", true},
		{"metadata only", strings.Replace(base, "  name: p\n", "  name: p\n  labels: {a: b}\n", 1), true},
		{"selector value", strings.Replace(base, "app: web", "app: api", 1), false},
		{"port", strings.Replace(base, "port: 80", "port: 81", 1), false},
		{"protocol", strings.Replace(base, "{port: 80}", "{port: 80, protocol: udp}", 1), false},
		{"enforcement", base + "  enforcement: audit\n", false},
		{"empty egress without policyTypes is Ingress only, as in Kubernetes", base + "  egress: []\n", true},
		{"empty egress with policyTypes Egress restricts egress", base + "  egress: []\n  policyTypes: [Ingress, Egress]\n", false},
	}
	gen := func(doc string) string {
		objs, errs := DecodeFile("g.yaml", []byte(doc))
		if len(errs) > 0 || len(objs) != 1 {
			t.Fatalf("objects %v, errors %v", objs, errs)
		}
		return objs[0].Generation
	}
	want := gen(base)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gen(tt.other); (got == want) != tt.same {
				t.Errorf("generation %s vs %s, same=%v", got, want, tt.same)
			}
		})
	}
}
