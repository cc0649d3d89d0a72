package state

import (
	"fmt"
	"reflect"
	"sync/atomic"

	memdb "github.com/hashicorp/go-memdb"
)

// Store holds desired and observed state. Reads see a consistent snapshot;
// writes are atomic. Objects handed to a write belong to the store from then
// on, and objects read from it are shared: never modify either in place.
type Store struct {
	db *memdb.MemDB
	// gen counts the writes that changed something.
	gen atomic.Uint64
}

// New returns an empty store.
func New() *Store {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		// The schema is static; a failure is a programming error that the
		// schema test catches.
		panic(fmt.Sprintf("state: invalid schema: %v", err))
	}
	return &Store{db: db}
}

// ReadTx is a read-only snapshot of the store.
type ReadTx struct{ txn *memdb.Txn }

// Tx is a write transaction; it can read its own writes.
type Tx struct{ ReadTx }

// View calls fn with a consistent read-only snapshot.
func (s *Store) View(fn func(tx ReadTx)) {
	txn := s.db.Txn(false)
	defer txn.Abort()
	fn(ReadTx{txn})
}

// Update runs fn in a write transaction, committed when fn returns nil and
// discarded otherwise.
func (s *Store) Update(fn func(tx Tx) error) error {
	txn := s.db.Txn(true)
	txn.TrackChanges()
	defer txn.Abort()
	if err := fn(Tx{ReadTx{txn}}); err != nil {
		return err
	}
	changed := len(txn.Changes()) > 0
	txn.Commit()
	if changed {
		s.gen.Add(1)
	}
	return nil
}

// Generation changes whenever a committed write changed what the store
// holds, and only then: what was computed from the store at one generation
// holds while it stays the same.
func (s *Store) Generation() uint64 { return s.gen.Load() }

// By selects objects in a Find call. It is sealed: only this package
// implements it.
type By interface{ isBy() }

type byAll struct{}
type byName string
type byLabel struct{ key, value string }
type byNetwork string
type byOwner string
type byManaged struct{}
type byKind string
type byFile string
type byService string

func (byAll) isBy()     {}
func (byName) isBy()    {}
func (byLabel) isBy()   {}
func (byNetwork) isBy() {}
func (byOwner) isBy()   {}
func (byManaged) isBy() {}
func (byKind) isBy()    {}
func (byFile) isBy()    {}
func (byService) isBy() {}

// All selects every object of the table.
func All() By { return byAll{} }

// ByName selects objects by name (services, networks, nodes by hostname).
func ByName(name string) By { return byName(name) }

// ByLabel selects services or networks whose selector labels (implicit
// label included) have key=value.
func ByLabel(key, value string) By { return byLabel{key, value} }

// ByNetwork selects services attached to the network with this ID.
func ByNetwork(id string) By { return byNetwork(id) }

// ByOwner selects managed networks owned by a policy.
func ByOwner(policy string) By { return byOwner(policy) }

// ByManaged selects networks swarmsec created.
func ByManaged() By { return byManaged{} }

// ByKind selects policies of a kind.
func ByKind(kind string) By { return byKind(kind) }

// ByFile selects policies declared in a file.
func ByFile(file string) By { return byFile(file) }

// ByService selects the tasks of a service.
func ByService(id string) By { return byService(id) }

// find returns the objects of table that by selects, typed: collecting
// them as []any and converting would allocate the result twice, which
// shows at 10,000 services.
func find[T any](tx ReadTx, table string, by By) ([]T, error) {
	var (
		it  memdb.ResultIterator
		err error
	)
	switch v := by.(type) {
	case byAll:
		it, err = tx.txn.Get(table, indexID)
	case byName:
		it, err = tx.txn.Get(table, indexName, string(v))
	case byLabel:
		it, err = tx.txn.Get(table, indexLabel, v.key, v.value)
	case byNetwork:
		it, err = tx.txn.Get(table, indexNetwork, string(v))
	case byOwner:
		it, err = tx.txn.Get(table, indexOwner, string(v))
	case byManaged:
		it, err = tx.txn.Get(table, indexManaged, true)
	case byKind:
		it, err = tx.txn.Get(table, indexKind, string(v))
	case byFile:
		it, err = tx.txn.Get(table, indexFile, string(v))
	case byService:
		it, err = tx.txn.Get(table, indexService, string(v))
	default:
		return nil, fmt.Errorf("state: unsupported selector %T", by)
	}
	if err != nil {
		return nil, fmt.Errorf("state: find in %s by %T: %w", table, by, err)
	}
	var out []T
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(T))
	}
	return out, nil
}

// get returns the first object of table whose index has key, or nil. It
// cannot fail on data: table and index are this package's constants, each
// Get helper names a pair the schema holds (TestGetters reads through every
// one) and the key is a string, which every index here takes. An error is
// then a programming error, and it panics rather than read as "absent".
func (tx ReadTx) get(table, index, key string) any {
	obj, err := tx.txn.First(table, index, key)
	if err != nil {
		panic(fmt.Sprintf("state: get from %s by %s: %v", table, index, err))
	}
	return obj
}

// replace makes a table hold exactly objs: it deletes the objects no
// longer present, then inserts new and changed ones. Deletes go first: an
// object removed and created again under its name has a new ID, and
// deleting the old one after inserting the new would drop the name's entry
// from a unique index. same, when set, says a stored object is as good as
// its replacement, which is then not inserted: at thousands of services,
// re-indexing what did not change cost more than the list that read it.
func (tx Tx) replace(table string, objs []any, id func(any) string, same func(stored, fresh any) bool) error {
	keep := make(map[string]bool, len(objs))
	for _, o := range objs {
		keep[id(o)] = true
	}
	it, err := tx.txn.Get(table, indexID)
	if err != nil {
		return fmt.Errorf("state: list %s: %w", table, err)
	}
	var stale []any
	stored := map[string]any{}
	for obj := it.Next(); obj != nil; obj = it.Next() {
		switch {
		case !keep[id(obj)]:
			stale = append(stale, obj)
		case same != nil:
			stored[id(obj)] = obj
		}
	}
	for _, o := range stale {
		if err := tx.txn.Delete(table, o); err != nil {
			return fmt.Errorf("state: delete from %s %q: %w", table, id(o), err)
		}
	}
	for _, o := range objs {
		if old, ok := stored[id(o)]; ok && same(old, o) {
			continue
		}
		if err := tx.txn.Insert(table, o); err != nil {
			return fmt.Errorf("state: insert into %s %q: %w", table, id(o), err)
		}
	}
	return nil
}

// deepSame compares observed objects field by field: fine for those
// without a version.
func deepSame(stored, fresh any) bool { return reflect.DeepEqual(stored, fresh) }
