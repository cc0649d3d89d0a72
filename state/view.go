package state

import v1 "github.com/swarmsec/swarmsec/api/v1"

// The read view: one method per read the core (compile, plan, migrate)
// makes. Those packages declare the subset they need as an interface of
// their own (nomad's scheduler State), which ReadTx satisfies, so a test can
// feed them without memdb. Each method is the Find or Get of the same name
// with its selector fixed; the results are the store's: never modify them.

// Policy returns the policy with this name, or nil.
func (tx ReadTx) Policy(name string) *v1.Policy { return GetPolicy(tx, name) }

// PoliciesOf returns the policies of a kind, by name.
func (tx ReadTx) PoliciesOf(kind string) ([]*v1.Policy, error) {
	return FindPolicies(tx, ByKind(kind))
}

// Service returns the service with this ID, or nil.
func (tx ReadTx) Service(id string) *Service { return GetService(tx, id) }

// Services returns every observed service, by ID.
func (tx ReadTx) Services() ([]*Service, error) { return FindServices(tx, All()) }

// Network returns the network with this ID, or nil.
func (tx ReadTx) Network(id string) *Network { return GetNetwork(tx, id) }

// Networks returns every observed network, by ID.
func (tx ReadTx) Networks() ([]*Network, error) { return FindNetworks(tx, All()) }

// NetworkNamed returns the first network with this name, by ID, or nil:
// Docker allows several of one name.
func (tx ReadTx) NetworkNamed(name string) *Network { return GetNetworkByName(tx, name) }

// ManagedNetworks returns the networks swarmsec created.
func (tx ReadTx) ManagedNetworks() ([]*Network, error) { return FindNetworks(tx, ByManaged()) }

// Nodes returns every observed node.
func (tx ReadTx) Nodes() ([]*Node, error) { return FindNodes(tx, All()) }

// Tasks returns every observed task (the store holds them only while a
// migration needs them).
func (tx ReadTx) Tasks() ([]*Task, error) { return FindTasks(tx, All()) }

// Records returns every observed record.
func (tx ReadTx) Records() ([]*Record, error) { return FindRecords(tx, All()) }
