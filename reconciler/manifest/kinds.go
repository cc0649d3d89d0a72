package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// policy is a kind as the decoder sees it. Adding a kind is writing one of
// these and an entry in kinds.
type policy interface {
	// target is the pointer a document decodes into.
	target() any
	// validate reports what the decoder cannot see: rules across fields.
	validate(c *checker)
	// object wraps the decoded policy; the decoder fills in the rest.
	object() v1.Policy
	// canonicalSpec is the spec with defaults filled in, hashed into
	// Policy.Generation.
	canonicalSpec() any
}

// kinds dispatches on the kind field. Every kind is served at v1.APIVersion.
var kinds = map[string]func() policy{
	v1.KindNetworkPolicy:    func() policy { return &networkPolicy{} },
	v1.KindEncryptionPolicy: func() policy { return &encryptionPolicy{} },
}

// kindList names the kinds for errors.
func kindList() string {
	return strings.Join(slices.Sorted(maps.Keys(kinds)), ", ")
}

// unsupported explains the Kubernetes fields Swarm cannot enforce. They are
// rejected with the reason instead of being reported as unknown, and never
// silently ignored: a policy that quietly enforces less than it says is
// worse than none.
var unsupported = map[reflect.Type]map[string]string{
	reflect.TypeFor[v1.NetworkPolicySpec](): {
		"podSelector": "Swarm has no pods: use serviceSelector (every service carries the implicit label " + v1.LabelService + "=<service name>)",
	},
	reflect.TypeFor[v1.Peer](): {
		"namespaceSelector": "Swarm has no namespaces: to select a stack, use serviceSelector with the label " + v1.LabelStackNamespace + "=<stack name>",
		"podSelector":       "Swarm has no pods: use serviceSelector (every service carries the implicit label " + v1.LabelService + "=<service name>)",
	},
}

type networkPolicy struct{ p v1.NetworkPolicy }

func (n *networkPolicy) target() any { return &n.p }

func (n *networkPolicy) object() v1.Policy {
	return v1.Policy{Kind: v1.KindNetworkPolicy, Name: n.p.Metadata.Name, Network: &n.p}
}

func (n *networkPolicy) canonicalSpec() any {
	s := n.p.Spec
	s.PolicyTypes = slices.Clone(s.EffectivePolicyTypes())
	slices.Sort(s.PolicyTypes)
	s.Enforcement = s.EffectiveEnforcement()
	s.Publish = slices.Clone(s.Publish)
	for i := range s.Publish {
		s.Publish[i].Protocol = s.Publish[i].EffectiveProtocol()
		s.Publish[i].Mode = s.Publish[i].EffectiveMode()
	}
	s.Ingress = slices.Clone(s.Ingress)
	for i := range s.Ingress {
		s.Ingress[i].Ports = canonicalPorts(s.Ingress[i].Ports)
	}
	s.Egress = slices.Clone(s.Egress)
	for i := range s.Egress {
		s.Egress[i].Ports = canonicalPorts(s.Egress[i].Ports)
	}
	return s
}

// canonicalPorts fills in the default protocol, so TCP written or implied
// is the same generation.
func canonicalPorts(ports []v1.NetworkPolicyPort) []v1.NetworkPolicyPort {
	out := slices.Clone(ports)
	for i := range out {
		out[i].Protocol = out[i].EffectiveProtocol()
	}
	return out
}

type encryptionPolicy struct{ p v1.EncryptionPolicy }

func (e *encryptionPolicy) target() any { return &e.p }

func (e *encryptionPolicy) object() v1.Policy {
	return v1.Policy{Kind: v1.KindEncryptionPolicy, Name: e.p.Metadata.Name, Encryption: &e.p}
}

func (e *encryptionPolicy) canonicalSpec() any {
	s := e.p.Spec
	s.Enforcement = s.EffectiveEnforcement()
	return s
}

// generation hashes the canonical JSON of a spec. encoding/json sorts map
// keys, so equal specs hash equal.
func generation(spec any) string {
	b, err := json.Marshal(spec)
	if err != nil {
		panic("manifest: spec does not marshal: " + err.Error()) // plain data always does
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
