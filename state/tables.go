package state

import (
	"fmt"
	"maps"
	"slices"

	"github.com/docker/docker/api/types/network"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// Typed access to each table. Find results come in index order: by name for
// policies, by ID for the observed tables unless the index says otherwise.

// GetPolicy returns the policy with this name, or nil.
func GetPolicy(tx ReadTx, name string) *v1.Policy {
	p, _ := tx.get(tablePolicies, indexID, name).(*v1.Policy)
	return p
}

// FindPolicies returns the policies selected by by (All, ByKind, ByFile).
func FindPolicies(tx ReadTx, by By) ([]*v1.Policy, error) {
	if n, ok := by.(byName); ok {
		return single(GetPolicy(tx, string(n))), nil
	}
	return find[*v1.Policy](tx, tablePolicies, by)
}

// ReplacePolicies makes the desired policies exactly ps.
func ReplacePolicies(tx Tx, ps []*v1.Policy) error {
	return tx.replace(tablePolicies, toAny(ps), func(o any) string { return o.(*v1.Policy).Name }, nil)
}

// GetService returns the service with this ID, or nil.
func GetService(tx ReadTx, id string) *Service {
	s, _ := tx.get(tableServices, indexID, id).(*Service)
	return s
}

// GetServiceByName returns the service with this name, or nil.
func GetServiceByName(tx ReadTx, name string) *Service {
	s, _ := tx.get(tableServices, indexName, name).(*Service)
	return s
}

// FindServices returns the services selected by by (All, ByName, ByLabel,
// ByNetwork).
func FindServices(tx ReadTx, by By) ([]*Service, error) {
	return find[*Service](tx, tableServices, by)
}

// ReplaceServices makes the observed services exactly ss.
func ReplaceServices(tx Tx, ss []*Service) error {
	return tx.replace(tableServices, toAny(ss), func(o any) string { return o.(*Service).ID }, sameService)
}

// sameService: Swarm moves a service's version on every write to it, its
// update status included; the task counts are not part of it. A version
// of 0 is no Swarm's: compare it all.
func sameService(stored, fresh any) bool {
	a, b := stored.(*Service), fresh.(*Service)
	if a.Version == 0 || b.Version == 0 {
		return deepSame(a, b)
	}
	return a.Version == b.Version && a.StatusKnown == b.StatusKnown && a.DesiredTasks == b.DesiredTasks
}

// UpsertService stores one observed service, e.g. after re-reading it.
// A stored service of the same name and another ID is gone from Swarm,
// where names are unique: it is dropped first, so the name finds this one.
func UpsertService(tx Tx, s *Service) error {
	if old := GetServiceByName(tx.ReadTx, s.Name); old != nil && old.ID != s.ID {
		if err := tx.txn.Delete(tableServices, old); err != nil {
			return fmt.Errorf("state: delete service %q: %w", old.ID, err)
		}
	}
	if err := tx.txn.Insert(tableServices, s); err != nil {
		return fmt.Errorf("state: insert service %q: %w", s.ID, err)
	}
	return nil
}

// DeleteService forgets a service, e.g. one Swarm no longer has.
func DeleteService(tx Tx, id string) error {
	s := GetService(tx.ReadTx, id)
	if s == nil {
		return nil
	}
	return tx.txn.Delete(tableServices, s)
}

// GetNetwork returns the network with this ID, or nil.
func GetNetwork(tx ReadTx, id string) *Network {
	n, _ := tx.get(tableNetworks, indexID, id).(*Network)
	return n
}

// GetNetworkByName returns the first network with this name, by ID, or
// nil: Docker allows several networks of one name.
func GetNetworkByName(tx ReadTx, name string) *Network {
	n, _ := tx.get(tableNetworks, indexName, name).(*Network)
	return n
}

// FindNetworks returns the networks selected by by (All, ByName, ByLabel,
// ByManaged, ByOwner).
func FindNetworks(tx ReadTx, by By) ([]*Network, error) {
	return find[*Network](tx, tableNetworks, by)
}

// ReplaceNetworks makes the observed networks exactly ns.
func ReplaceNetworks(tx Tx, ns []*Network) error {
	return tx.replace(tableNetworks, toAny(ns), func(o any) string { return o.(*Network).ID }, sameNetwork)
}

// sameNetwork compares what the store keeps of two networks, field by
// field, as networks carry no version: reflect.DeepEqual over thousands of
// them took a tenth of a resync's own work. TestSameNetworkSeesEveryField
// fails when Network or IPAM gains a field this does not compare.
func sameNetwork(stored, fresh any) bool {
	a, b := stored.(*Network), fresh.(*Network)
	return a.ID == b.ID && a.Name == b.Name && a.Driver == b.Driver && a.Scope == b.Scope &&
		a.Internal == b.Internal && a.Attachable == b.Attachable && a.Ingress == b.Ingress &&
		a.EnableIPv6 == b.EnableIPv6 && a.ConfigFrom == b.ConfigFrom && a.Created.Equal(b.Created) &&
		maps.Equal(a.Labels, b.Labels) && maps.Equal(a.SelectorLabels, b.SelectorLabels) &&
		maps.Equal(a.Options, b.Options) && sameIPAM(a.IPAM, b.IPAM)
}

func sameIPAM(a, b network.IPAM) bool {
	return a.Driver == b.Driver && maps.Equal(a.Options, b.Options) &&
		slices.EqualFunc(a.Config, b.Config, func(x, y network.IPAMConfig) bool {
			return x.Subnet == y.Subnet && x.IPRange == y.IPRange && x.Gateway == y.Gateway && maps.Equal(x.AuxAddress, y.AuxAddress)
		})
}

// UpsertNetwork stores one observed network, e.g. one just created.
func UpsertNetwork(tx Tx, n *Network) error {
	return tx.txn.Insert(tableNetworks, n)
}

// DeleteNetwork forgets a network, e.g. one just removed.
func DeleteNetwork(tx Tx, id string) error {
	n := GetNetwork(tx.ReadTx, id)
	if n == nil {
		return nil
	}
	return tx.txn.Delete(tableNetworks, n)
}

// FindNodes returns the nodes selected by by (All, ByName for a hostname).
func FindNodes(tx ReadTx, by By) ([]*Node, error) {
	return find[*Node](tx, tableNodes, by)
}

// ReplaceNodes makes the observed nodes exactly ns.
func ReplaceNodes(tx Tx, ns []*Node) error {
	return tx.replace(tableNodes, toAny(ns), func(o any) string { return o.(*Node).ID }, deepSame)
}

// FindTasks returns the tasks selected by by (All, ByService).
func FindTasks(tx ReadTx, by By) ([]*Task, error) {
	return find[*Task](tx, tableTasks, by)
}

// ReplaceTasks makes the observed tasks exactly ts.
func ReplaceTasks(tx Tx, ts []*Task) error {
	return tx.replace(tableTasks, toAny(ts), func(o any) string { return o.(*Task).ID }, deepSame)
}

// FindRecords returns the records selected by by (All, ByName).
func FindRecords(tx ReadTx, by By) ([]*Record, error) {
	return find[*Record](tx, tableRecords, by)
}

// ReplaceRecords makes the observed records exactly rs.
func ReplaceRecords(tx Tx, rs []*Record) error {
	return tx.replace(tableRecords, toAny(rs), func(o any) string { return o.(*Record).ID }, deepSame)
}

func toAny[T any](xs []T) []any {
	out := make([]any, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out
}

func single[T any](x *T) []*T {
	if x == nil {
		return nil
	}
	return []*T{x}
}
