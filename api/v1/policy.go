package v1

// Policy is one valid policy as a manifest declared it: its kind and name,
// where it was written, the hash of its meaning and the decoded object. It is
// the one policy type from decoding (reconciler/manifest) to the store
// (state) and the compiler. Snapshots and the store share it: treat it as
// read-only.
type Policy struct {
	// Kind is KindNetworkPolicy or KindEncryptionPolicy.
	Kind string
	// Name is metadata.name, unique across kinds.
	Name string
	// File is the path of the manifest file, as found.
	File string
	// Line is where the document starts in File, 1-based.
	Line int
	// NameLine is the line of metadata.name in File, so an error about a
	// duplicate name can point at it (0 when unknown).
	NameLine int
	// NameColumn is the column of metadata.name on NameLine, 1-based (0
	// when unknown).
	NameColumn int
	// Generation is a hash (16 hex digits) of the spec with defaults filled
	// in: it changes exactly when the spec's meaning changes, not when
	// comments, key order or explicitly written defaults do.
	Generation string
	// Network is the decoded policy when Kind is KindNetworkPolicy.
	Network *NetworkPolicy
	// Encryption is the decoded policy when Kind is KindEncryptionPolicy.
	Encryption *EncryptionPolicy
}

// Enforcement is the policy's enforcement mode with its default applied.
func (p *Policy) Enforcement() Enforcement {
	switch {
	case p.Network != nil:
		return p.Network.Spec.EffectiveEnforcement()
	case p.Encryption != nil:
		return p.Encryption.Spec.EffectiveEnforcement()
	}
	return EnforcementEnforce
}
