// Package state keeps swarmsec's desired state (the policies loaded from
// manifests) and observed state (what Swarm reported) in go-memdb. Only this
// package touches memdb: callers use the typed helpers and By lookups, or
// the read view (view.go: ReadTx's methods), which the core declares as the
// interfaces it reads through (compile.State, plan.State, migrate.State).
package state

import (
	"fmt"

	memdb "github.com/hashicorp/go-memdb"
)

// Tables. Desired and observed state live in separate tables: they have
// different writers (the manifest watcher and the observer).
const (
	tablePolicies = "policies" // desired
	tableServices = "services" // observed
	tableNetworks = "networks" // observed
	tableNodes    = "nodes"    // observed
	tableTasks    = "tasks"    // observed, only while a migration needs them
	tableRecords  = "records"  // observed: configs holding what to restore
)

// Indexes.
const (
	indexID      = "id"
	indexName    = "name"
	indexKind    = "kind"
	indexFile    = "file"
	indexLabel   = "label"
	indexNetwork = "network"
	indexManaged = "managed"
	indexOwner   = "owner"
	indexService = "service"
)

func schema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tablePolicies: policiesTableSchema(),
		tableServices: servicesTableSchema(),
		tableNetworks: networksTableSchema(),
		tableNodes:    nodesTableSchema(),
		tableTasks:    tasksTableSchema(),
		tableRecords:  recordsTableSchema(),
	}}
}

func policiesTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tablePolicies,
		Indexes: map[string]*memdb.IndexSchema{
			// Names are unique across kinds as well: a policy is found by name.
			indexID:   {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
			indexKind: {Name: indexKind, Indexer: &memdb.StringFieldIndex{Field: "Kind"}},
			indexFile: {Name: indexFile, AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: "File"}},
		},
	}
}

func servicesTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableServices,
		Indexes: map[string]*memdb.IndexSchema{
			indexID:      {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
			indexName:    {Name: indexName, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
			indexLabel:   {Name: indexLabel, AllowMissing: true, Indexer: &memdb.StringMapFieldIndex{Field: "SelectorLabels"}},
			indexNetwork: {Name: indexNetwork, AllowMissing: true, Indexer: attachmentIndexer{}},
		},
	}
}

func networksTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableNetworks,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
			// Docker allows a local and a swarm network of the same name.
			indexName:    {Name: indexName, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
			indexLabel:   {Name: indexLabel, AllowMissing: true, Indexer: &memdb.StringMapFieldIndex{Field: "SelectorLabels"}},
			indexManaged: {Name: indexManaged, Indexer: &memdb.ConditionalIndex{Conditional: isManaged}},
			indexOwner:   {Name: indexOwner, AllowMissing: true, Indexer: ownerIndexer{}},
		},
	}
}

func nodesTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableNodes,
		Indexes: map[string]*memdb.IndexSchema{
			indexID:   {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
			indexName: {Name: indexName, Indexer: &memdb.StringFieldIndex{Field: "Hostname"}},
		},
	}
}

func tasksTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableTasks,
		Indexes: map[string]*memdb.IndexSchema{
			indexID:      {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
			indexService: {Name: indexService, Indexer: &memdb.StringFieldIndex{Field: "ServiceID"}},
		},
	}
}

func recordsTableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableRecords,
		Indexes: map[string]*memdb.IndexSchema{
			indexID:   {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "ID"}},
			indexName: {Name: indexName, Indexer: &memdb.StringFieldIndex{Field: "Name"}},
		},
	}
}

func isManaged(obj any) (bool, error) {
	n, ok := obj.(*Network)
	if !ok {
		return false, fmt.Errorf("managed index: unexpected %T", obj)
	}
	return n.Managed(), nil
}

// attachmentIndexer indexes a service by the targets of its network
// attachments (IDs as Swarm stores them).
type attachmentIndexer struct{}

func (attachmentIndexer) FromObject(obj any) (bool, [][]byte, error) {
	s, ok := obj.(*Service)
	if !ok {
		return false, nil, fmt.Errorf("network index: unexpected %T", obj)
	}
	vals := make([][]byte, 0, len(s.Networks))
	for _, a := range s.Networks {
		vals = append(vals, []byte(a.Target+"\x00"))
	}
	return len(vals) > 0, vals, nil
}

func (attachmentIndexer) FromArgs(args ...any) ([]byte, error) { return stringArg(args) }

// ownerIndexer indexes managed networks by the policy that owns them.
type ownerIndexer struct{}

func (ownerIndexer) FromObject(obj any) (bool, []byte, error) {
	n, ok := obj.(*Network)
	if !ok {
		return false, nil, fmt.Errorf("owner index: unexpected %T", obj)
	}
	if !n.Managed() || n.Owner() == "" {
		return false, nil, nil
	}
	return true, []byte(n.Owner() + "\x00"), nil
}

func (ownerIndexer) FromArgs(args ...any) ([]byte, error) { return stringArg(args) }

func stringArg(args []any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("must provide one argument")
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("argument must be a string: %#v", args[0])
	}
	return []byte(s + "\x00"), nil
}
