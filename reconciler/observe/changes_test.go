package observe_test

import (
	"context"
	"errors"
	"maps"
	"testing"

	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/compile"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/fake"
	"github.com/swarmsec/swarmsec/testing/policytest"
)

var lists = map[string]int{"ServiceList": 1, "NetworkList": 1, "NodeList": 1, "ConfigList": 1}

// observed runs one observation and returns it with the calls it made.
func observed(t *testing.T, c *observe.Changes, f *fake.Swarm, st *state.Store) (*observe.Observation, map[string]int) {
	t.Helper()
	f.ResetCalls()
	o, err := c.Observe(context.Background(), f, st, false)
	if err != nil {
		t.Fatal(err)
	}
	return o, f.Calls()
}

// watched returns Changes whose events stream is subscribed and a store
// filled by the list that follows.
func watched(t *testing.T, f *fake.Swarm) (*observe.Changes, *state.Store) {
	t.Helper()
	c, st := observe.NewChanges(), state.New()
	c.Watch("start")
	if o, calls := observed(t, c, f, st); !o.Full || !maps.Equal(calls, lists) {
		t.Fatalf("first pass: %+v, calls %v", o, calls)
	}
	return c, st
}

func service(st *state.Store, id string) *state.Service {
	var s *state.Service
	st.View(func(tx state.ReadTx) { s = state.GetService(tx, id) })
	return s
}

func TestChangesReReadOnlyWhatEventsNamed(t *testing.T) {
	f, ids := policytest.Shop(t)
	c, st := watched(t, f)

	// Nothing named: nothing read.
	if o, calls := observed(t, c, f, st); o.Full || len(calls) != 0 {
		t.Errorf("a pass with no event: %+v, calls %v", o, calls)
	}

	// A drift on one service costs a read of that service.
	if err := f.UpdateService(ids["shop_db"], func(s *swarm.ServiceSpec) { s.Labels["drift"] = "1" }); err != nil {
		t.Fatal(err)
	}
	c.Event(events.Message{Type: events.ServiceEventType, Action: events.ActionUpdate, Actor: events.Actor{ID: ids["shop_db"]}})
	o, calls := observed(t, c, f, st)
	if o.Full || o.Services != 1 || !maps.Equal(calls, map[string]int{"ServiceInspectWithRaw": 1}) {
		t.Errorf("a drift's pass: %+v, calls %v", o, calls)
	}
	if s := service(st, ids["shop_db"]); s == nil || s.Labels["drift"] != "1" {
		t.Errorf("the store holds %+v, not the drift", s)
	}

	// A service removed and created again under its name: the old one
	// leaves the store, the name finds the new one.
	spec := policytest.Inspect(t, f, ids["shop_db"]).Spec
	if err := f.RemoveService(ids["shop_db"]); err != nil {
		t.Fatal(err)
	}
	again := f.AddService(spec)
	c.Service(again.ID)
	c.Service(ids["shop_db"])
	// Two or more of a kind cost one list filtered by their IDs, not an
	// inspect each (a wave's hundreds of services).
	if o, calls := observed(t, c, f, st); o.Services != 2 || !maps.Equal(calls, map[string]int{"ServiceList": 1}) {
		t.Errorf("re-read %+v, calls %v", o, calls)
	}
	st.View(func(tx state.ReadTx) {
		if s := state.GetServiceByName(tx, "shop_db"); s == nil || s.ID != again.ID {
			t.Errorf("shop_db is %+v, want %s", s, again.ID)
		}
		if state.GetService(tx, ids["shop_db"]) != nil {
			t.Error("the removed service is still stored")
		}
	})

	// Networks likewise, by ID.
	n := f.AddNetwork("late", network.CreateOptions{Driver: "overlay", Scope: "swarm"})
	c.Event(events.Message{Type: events.NetworkEventType, Action: events.ActionCreate, Actor: events.Actor{ID: n.ID}})
	if o, calls := observed(t, c, f, st); o.Networks != 1 || !maps.Equal(calls, map[string]int{"NetworkInspect": 1}) {
		t.Errorf("a new network's pass: %+v, calls %v", o, calls)
	}
	if err := f.NetworkRemove(context.Background(), n.ID); err != nil {
		t.Fatal(err)
	}
	c.Network(n.ID)
	c.Network(ids["shop_default"])
	if o, calls := observed(t, c, f, st); o.Networks != 2 || !maps.Equal(calls, map[string]int{"NetworkList": 1}) {
		t.Errorf("two networks' pass: %+v, calls %v", o, calls)
	}
	st.View(func(tx state.ReadTx) {
		if state.GetNetwork(tx, n.ID) != nil {
			t.Error("the removed network is still stored")
		}
	})
}

func TestChangesRecordsAreListedAgain(t *testing.T) {
	f, _ := policytest.Shop(t)
	c, st := watched(t, f)
	// The lease and the agents' rules are configs too: their events are
	// no concern of the store.
	if c.Event(events.Message{Type: events.ConfigEventType, Action: events.ActionUpdate, Actor: events.Actor{ID: "x", Attributes: map[string]string{"name": "swarmsec-leader"}}}) {
		t.Error("a lease renewal asked for a pass")
	}
	resp, err := f.ConfigCreate(context.Background(), swarm.ConfigSpec{Annotations: swarm.Annotations{Name: compile.RecordName("svc1"), Labels: compile.RecordLabels()}, Data: []byte("{}")})
	if err != nil {
		t.Fatal(err)
	}
	if !c.Event(events.Message{Type: events.ConfigEventType, Action: events.ActionCreate, Actor: events.Actor{ID: resp.ID, Attributes: map[string]string{"name": compile.RecordName("svc1")}}}) {
		t.Error("a record's event asked for no pass")
	}
	if o, calls := observed(t, c, f, st); !o.Records || !maps.Equal(calls, map[string]int{"ConfigList": 1}) {
		t.Errorf("a record's pass: %+v, calls %v", o, calls)
	}
	st.View(func(tx state.ReadTx) {
		if rs, err := state.FindRecords(tx, state.All()); err != nil || len(rs) != 1 || rs[0].ID != resp.ID {
			t.Errorf("records %+v (%v)", rs, err)
		}
	})
}

func TestChangesListWhenTheyMust(t *testing.T) {
	f, ids := policytest.Shop(t)
	c, st := watched(t, f)
	ctx := context.Background()

	c.Resync("resync")
	if o, calls := observed(t, c, f, st); !o.Full || o.Why != "resync" || !maps.Equal(calls, lists) {
		t.Errorf("a resync: %+v, calls %v", o, calls)
	}

	// A lost events stream: every pass lists until one is back, and the
	// pass after it lists too.
	c.Unwatch()
	for range 2 {
		if o, calls := observed(t, c, f, st); !o.Full || !maps.Equal(calls, lists) {
			t.Errorf("without a stream: %+v, calls %v", o, calls)
		}
	}
	c.Watch("events stream reconnected")
	if o, _ := observed(t, c, f, st); !o.Full || o.Why != "events stream reconnected" {
		t.Errorf("after reconnecting: %+v", o)
	}
	if o, calls := observed(t, c, f, st); o.Full || len(calls) != 0 {
		t.Errorf("with the stream back: %+v, calls %v", o, calls)
	}

	// A failed read: the next pass lists.
	c.Service(ids["shop_db"])
	f.FailNext("ServiceInspectWithRaw", errors.New("connection reset"))
	if _, err := c.Observe(ctx, f, st, false); err == nil {
		t.Error("a failed read did not fail the observation")
	}
	if o, _ := observed(t, c, f, st); !o.Full {
		t.Errorf("after a failed read: %+v", o)
	}

	// Where tasks run matters: tasks have no events.
	f.ResetCalls()
	if o, err := c.Observe(ctx, f, st, true); err != nil || !o.Full || f.Calls()["TaskList"] != 1 {
		t.Errorf("with tasks: %+v, %v, calls %v", o, err, f.Calls())
	}

	// A burst: listing costs less than reading each.
	for i := range observe.MaxReads + 1 {
		c.Service(string(rune('a' + i%26)))
		c.Network(string(rune('a'+i%26)) + string(rune('0'+i/26)))
	}
	if o, calls := observed(t, c, f, st); !o.Full || !maps.Equal(calls, lists) {
		t.Errorf("a burst: %+v, calls %v", o, calls)
	}

	// A migration under way: its passes read tasks.
	f.AddNetwork("swarmsec-tmp", network.CreateOptions{Driver: "overlay", Scope: "swarm",
		Labels: map[string]string{v1.LabelManaged: "true", v1.LabelPurpose: v1.PurposeMigration}})
	c.Resync("resync")
	observed(t, c, f, st)
	if o, calls := observed(t, c, f, st); !o.Full || calls["TaskList"] != 1 {
		t.Errorf("during a migration: %+v, calls %v", o, calls)
	}
}

func TestChangesTrackWrites(t *testing.T) {
	f, ids := policytest.Shop(t)
	c, st := watched(t, f)
	ctx := context.Background()
	api := c.Track(f)

	svc := policytest.Inspect(t, f, ids["shop_web"])
	svc.Spec.Labels["x"] = "1"
	if _, err := api.ServiceUpdate(ctx, svc.ID, svc.Version, svc.Spec, swarm.ServiceUpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	resp, err := api.NetworkCreate(ctx, "swarmsec-x", network.CreateOptions{Driver: "overlay", Scope: "swarm"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.ConfigCreate(ctx, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: compile.RecordName(svc.ID)}, Data: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	o, _ := observed(t, c, f, st)
	if o.Full || o.Services != 1 || o.Networks != 1 || !o.Records {
		t.Errorf("after writes: %+v", o)
	}
	if s := service(st, svc.ID); s == nil || s.Labels["x"] != "1" {
		t.Errorf("the store holds %+v, not what was written", s)
	}
	st.View(func(tx state.ReadTx) {
		if state.GetNetwork(tx, resp.ID) == nil {
			t.Error("the network created is not stored")
		}
	})

	// A create that failed may have created it all the same: list.
	f.FailNext("NetworkCreate", errors.New("context deadline exceeded"))
	if _, err := api.NetworkCreate(ctx, "swarmsec-y", network.CreateOptions{Driver: "overlay", Scope: "swarm"}); err == nil {
		t.Fatal("the create did not fail")
	}
	if o, _ := observed(t, c, f, st); !o.Full {
		t.Errorf("after a failed create: %+v", o)
	}
}
