// Package v1 holds the swarmsec.io/v1 API: the kinds users write in manifests
// and the status swarmsec reports about them. It is data only: no I/O, no
// Docker or memdb imports. Decoding and validation live in reconciler/manifest.
package v1

//go:generate go run ../../dev/schemagen ../..

// Group and version of every kind in this package.
const (
	Group      = "swarmsec.io"
	Version    = "v1"
	APIVersion = Group + "/" + Version
)

// Kinds served by this API version.
const (
	KindNetworkPolicy    = "NetworkPolicy"
	KindEncryptionPolicy = "EncryptionPolicy"
)

// Label keys swarmsec reads or writes on Swarm objects.
const (
	// LabelService is the implicit label every service carries for selectors:
	// its name.
	LabelService = "swarmsec.io/service"
	// LabelNetwork is the implicit label every network carries for selectors:
	// its name.
	LabelNetwork = "swarmsec.io/network"
	// LabelStackNamespace is the label `docker stack deploy` puts on the
	// objects of a stack.
	LabelStackNamespace = "com.docker.stack.namespace"
	// LabelIgnore opts a service or network out: swarmsec never changes it.
	LabelIgnore = "swarmsec.io/ignore"
	// LabelSelf marks swarmsec's own services (the stack file sets it):
	// only a selector naming one by swarmsec.io/service selects it.
	LabelSelf = "swarmsec.io/self"

	// LabelManaged marks a network swarmsec created and may remove.
	LabelManaged = "swarmsec.io/managed"
	// LabelOwner names the policy a managed network exists for.
	LabelOwner = "swarmsec.io/owner"
	// LabelPurpose says why a managed network exists (the Purpose values).
	LabelPurpose = "swarmsec.io/purpose"
	// LabelOriginal, on an isolated service, names the Swarm config that
	// records the networks and published ports it had before swarmsec
	// isolated it (swarmsec before 0.3 kept the record itself here, as
	// JSON; such records are adopted).
	LabelOriginal = "swarmsec.io/original"

	// LabelMigrating, on a temporary migration network, names the network
	// it stands in for.
	LabelMigrating = "swarmsec.io/migrating"
	// LabelMigratedFrom, on the temporary network and on the encrypted
	// replacement, is the ID of the unencrypted network replaced.
	LabelMigratedFrom = "swarmsec.io/migrated-from"
	// LabelMigration, on a temporary network, records the settings of the
	// network replaced (JSON), needed once that network is gone.
	LabelMigration = "swarmsec.io/migration"
)

// AnnotationApproveBroadSelector set to "true" on a NetworkPolicy lets a
// policy whose selector newly isolates many services at once through the
// safety limits: approval lives in the manifest, where a review sees it.
const AnnotationApproveBroadSelector = "swarmsec.io/approve-broad-selector"

// Bookkeeping reports whether a label is one swarmsec itself writes on the
// objects it manages. Selecting on one would make a service flip between
// isolated and restored as swarmsec writes it, so selectors may not.
func Bookkeeping(key string) bool {
	switch key {
	case LabelManaged, LabelOwner, LabelPurpose, LabelOriginal, LabelMigrating, LabelMigratedFrom, LabelMigration:
		return true
	}
	return false
}

// Purposes of managed networks, the values of LabelPurpose.
const (
	// PurposePolicy networks connect the services a policy lets talk.
	PurposePolicy = "policy"
	// PurposeEgress networks give one isolated service a gateway (outside
	// access, host-mode published ports) without a peer.
	PurposeEgress = "egress"
	// PurposeIsolated networks keep an isolated service with no peer off
	// the default bridge.
	PurposeIsolated = "isolated"
	// PurposeMigration networks stand in for a network being replaced by
	// an encrypted one.
	PurposeMigration = "migration"
	// PurposeOriginal marks the Swarm configs that record what an isolated
	// service had, to restore it when isolation ends.
	PurposeOriginal = "original"
	// PurposeLease marks the Swarm config that elects the one replica
	// that writes.
	PurposeLease = "lease"
)

// TypeMeta names the kind of a manifest document.
type TypeMeta struct {
	// APIVersion must be "swarmsec.io/v1".
	APIVersion string `json:"apiVersion"`
	// Kind is NetworkPolicy or EncryptionPolicy.
	Kind string `json:"kind"`
}

// ObjectMeta identifies a policy.
type ObjectMeta struct {
	// Name is unique across the manifest directory; a DNS-1123 label.
	Name string `json:"name"`
	// Labels are free-form, for the operator's own bookkeeping.
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations are free-form, for tools.
	Annotations map[string]string `json:"annotations,omitempty"`
}

// LabelSelectorOperator is the operator of a selector expression.
type LabelSelectorOperator string

// The operators a LabelSelectorRequirement may use, as in Kubernetes.
const (
	OpIn           LabelSelectorOperator = "In"
	OpNotIn        LabelSelectorOperator = "NotIn"
	OpExists       LabelSelectorOperator = "Exists"
	OpDoesNotExist LabelSelectorOperator = "DoesNotExist"
)

// LabelSelectorRequirement is one expression of a LabelSelector.
type LabelSelectorRequirement struct {
	// Key is the label key the expression tests.
	Key string `json:"key"`
	// Operator is In, NotIn, Exists or DoesNotExist.
	Operator LabelSelectorOperator `json:"operator"`
	// Values must be non-empty for In and NotIn and empty otherwise.
	Values []string `json:"values,omitempty"`
}

// LabelSelector selects objects by their labels. All of matchLabels and all
// of matchExpressions must hold. An empty selector selects everything.
type LabelSelector struct {
	// MatchLabels requires each key to have exactly this value.
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
	// MatchExpressions are further requirements, all of which must hold.
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// PolicyType says which direction a NetworkPolicy restricts.
type PolicyType string

// The policy types, as in Kubernetes.
const (
	PolicyTypeIngress PolicyType = "Ingress"
	PolicyTypeEgress  PolicyType = "Egress"
)

// Enforcement says whether swarmsec writes a policy's changes.
type Enforcement string

const (
	// EnforcementEnforce makes the cluster match the policy.
	EnforcementEnforce Enforcement = "enforce"
	// EnforcementAudit reports what would change and writes nothing.
	EnforcementAudit Enforcement = "audit"
)

// Protocol of a published port.
type Protocol string

// The protocols Swarm can publish.
const (
	ProtocolTCP  Protocol = "tcp"
	ProtocolUDP  Protocol = "udp"
	ProtocolSCTP Protocol = "sctp"
)

// PublishMode is how Swarm publishes a port.
type PublishMode string

const (
	// PublishModeHost binds the port on the nodes running a task only.
	PublishModeHost PublishMode = "host"
	// PublishModeIngress publishes through the routing mesh, which puts the
	// service on the shared ingress network.
	PublishModeIngress PublishMode = "ingress"
)

// AnyIPv4 and AnyIPv6 are the blocks that stand for the whole world
// outside the cluster: the network layer gives a service a gateway for any
// ipBlock; the node agent narrows it to the blocks.
const (
	AnyIPv4 = "0.0.0.0/0"
	AnyIPv6 = "::/0"
)

// NetworkPolicy isolates the services it selects: they may talk only to the
// peers its rules (and other policies selecting them) allow.
type NetworkPolicy struct {
	TypeMeta `json:",inline"`
	// Metadata names the policy.
	Metadata ObjectMeta `json:"metadata"`
	// Spec is what the operator asks for.
	Spec NetworkPolicySpec `json:"spec"`
}

// NetworkPolicySpec is the desired isolation of the selected services.
type NetworkPolicySpec struct {
	// ServiceSelector picks the services this policy isolates. Selectors see
	// a service's labels plus swarmsec.io/service=<name>.
	ServiceSelector LabelSelector `json:"serviceSelector"`
	// PolicyTypes lists the directions the policy restricts. Defaults to
	// Ingress, plus Egress when Egress rules are present.
	PolicyTypes []PolicyType `json:"policyTypes,omitempty"`
	// Ingress lists who may connect to the selected services. An empty list
	// denies every peer.
	Ingress []IngressRule `json:"ingress,omitempty"`
	// Egress lists what the selected services may connect to.
	Egress []EgressRule `json:"egress,omitempty"`
	// Publish lists the published ports the selected services may keep.
	// Absent means none.
	Publish []PublishedPort `json:"publish,omitempty"`
	// Enforcement is enforce (default) or audit.
	Enforcement Enforcement `json:"enforcement,omitempty"`
}

// IngressRule allows traffic from its peers.
type IngressRule struct {
	// From lists the peers allowed to connect.
	From []Peer `json:"from,omitempty"`
	// Ports limits the rule to these destination ports of the selected
	// services; absent or empty allows every port. The node agent enforces
	// it: the network layer connects the peers on every port.
	Ports []NetworkPolicyPort `json:"ports,omitempty"`
	// Log is none (default), blocked (the same: blocked attempts are always
	// reported) or all: the node agent also reports each new connection
	// this rule admits, with verdict allowed (Antrea's per-rule logging).
	Log PortLog `json:"log,omitempty"`
}

// EgressRule allows traffic to its peers.
type EgressRule struct {
	// To lists the peers the selected services may connect to.
	To []Peer `json:"to,omitempty"`
	// Ports limits the rule to these destination ports of the peers;
	// absent or empty allows every port. The node agent enforces it.
	Ports []NetworkPolicyPort `json:"ports,omitempty"`
	// Log is none (default), blocked (the same) or all: the node agent
	// also reports each new connection this rule admits, verdict allowed.
	Log PortLog `json:"log,omitempty"`
}

// NetworkPolicyPort is a destination port, or a range of them, of a rule,
// as in Kubernetes. Ports are numeric: Swarm has no named container ports.
type NetworkPolicyPort struct {
	// Protocol is TCP (default), UDP or SCTP, written as Kubernetes does.
	Protocol RuleProtocol `json:"protocol,omitempty"`
	// Port is the destination port, 1..65535; absent means every port of
	// the protocol.
	Port *int `json:"port,omitempty"`
	// EndPort, with Port, makes the range Port..EndPort (inclusive).
	EndPort *int `json:"endPort,omitempty"`
}

// RuleProtocol is the protocol of a rule's port, upper case as in
// Kubernetes' NetworkPolicy.
type RuleProtocol string

// The protocols a rule's port may name.
const (
	RuleTCP  RuleProtocol = "TCP"
	RuleUDP  RuleProtocol = "UDP"
	RuleSCTP RuleProtocol = "SCTP"
)

// Peer is one side of an allowed connection: services chosen by labels, or
// addresses outside the cluster.
type Peer struct {
	// ServiceSelector picks peer services by label.
	ServiceSelector *LabelSelector `json:"serviceSelector,omitempty"`
	// IPBlock, in egress rules only, allows destinations outside the
	// cluster: the network layer gives the selected services a gateway,
	// the node agent admits only the block's addresses.
	IPBlock *IPBlock `json:"ipBlock,omitempty"`
}

// IPBlock names destination addresses outside the cluster, IPv4 or IPv6:
// a CIDR block less its exceptions. Addresses of the cluster's own tasks
// and services are never matched by a block: services are peers by
// serviceSelector.
type IPBlock struct {
	// CIDR is the block, written as its network address (203.0.113.0/24,
	// not 203.0.113.7/24); 0.0.0.0/0 and ::/0 are the whole world.
	CIDR string `json:"cidr"`
	// Except lists blocks inside CIDR that are not allowed.
	Except []string `json:"except,omitempty"`
}

// PublishedPort is a published port a selected service may keep.
type PublishedPort struct {
	// Port is the published (host-side) port, 1..65535.
	Port int `json:"port"`
	// Protocol is tcp (default), udp or sctp.
	Protocol Protocol `json:"protocol,omitempty"`
	// Mode is host (default) or ingress.
	Mode PublishMode `json:"mode,omitempty"`
	// From lists the sources the port admits. Absent admits any source.
	// The node agent enforces it; policies selecting one service admit the
	// union of their sources.
	From []PortSource `json:"from,omitempty"`
	// Log is none (default), blocked or all: which connection attempts the
	// node agent reports.
	Log PortLog `json:"log,omitempty"`
}

// PortSource is a source a published port admits.
type PortSource struct {
	// IPBlock admits the addresses of a CIDR block, less its exceptions.
	IPBlock *SourceBlock `json:"ipBlock,omitempty"`
}

// SourceBlock is a CIDR block of source addresses, IPv4 or IPv6.
type SourceBlock struct {
	// CIDR is the block, written as its network address (203.0.113.0/24,
	// not 203.0.113.7/24).
	CIDR string `json:"cidr"`
	// Except lists blocks inside CIDR that are not admitted.
	Except []string `json:"except,omitempty"`
}

// PortLog says which connection attempts to a published port, or through
// a NetworkPolicy's rule, are reported.
type PortLog string

// The connection attempts a published port may report.
const (
	PortLogNone    PortLog = "none"
	PortLogBlocked PortLog = "blocked"
	PortLogAll     PortLog = "all"
)

// EncryptionPolicy asks that the overlay networks it selects are encrypted,
// replacing unencrypted ones in place.
type EncryptionPolicy struct {
	TypeMeta `json:",inline"`
	// Metadata names the policy.
	Metadata ObjectMeta `json:"metadata"`
	// Spec is what the operator asks for.
	Spec EncryptionPolicySpec `json:"spec"`
}

// EncryptionPolicySpec selects the networks that must be encrypted.
type EncryptionPolicySpec struct {
	// NetworkSelector picks overlay networks by label. Selectors see a
	// network's labels plus swarmsec.io/network=<name>.
	NetworkSelector LabelSelector `json:"networkSelector"`
	// Enforcement is enforce (default) or audit.
	Enforcement Enforcement `json:"enforcement,omitempty"`
}
