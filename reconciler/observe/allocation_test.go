package observe_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/docker/docker/api/types/network"

	v1 "github.com/swarmsec/swarmsec/api/v1"
	"github.com/swarmsec/swarmsec/reconciler/observe"
	"github.com/swarmsec/swarmsec/state"
	"github.com/swarmsec/swarmsec/testing/fake"
)

// lateNetwork creates, on f, a network with swarmsec's labels that Swarm's
// allocator cannot allocate yet (its subnet overlaps "first"'s), as it is
// for a moment after any create, and returns its ID.
func lateNetwork(t *testing.T, f *fake.Swarm) string {
	t.Helper()
	ipam := func(subnet string) *network.IPAM {
		return &network.IPAM{Config: []network.IPAMConfig{{Subnet: subnet}}}
	}
	f.AddNetwork("first", network.CreateOptions{Driver: "overlay", IPAM: ipam("10.9.0.0/24")})
	resp, err := f.NetworkCreate(context.Background(), "swarmsec-late", network.CreateOptions{
		Driver: "overlay", IPAM: ipam("10.9.0.0/25"), Options: map[string]string{"encrypted": ""},
		Labels: map[string]string{v1.LabelManaged: "true", v1.LabelPurpose: v1.PurposePolicy},
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp.ID
}

// A pass that reads a network swarmsec just created waits for Swarm to
// allocate it, and so sees it encrypted, not as a look-alike.
func TestObserveWaitsForAllocation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fake.New()
		id := lateNetwork(t, f)
		go func() {
			time.Sleep(200 * time.Millisecond)
			_ = f.NetworkRemove(context.Background(), "first") // the allocator retries the late one
		}()
		st := state.New()
		if err := observe.Observe(context.Background(), f, st); err != nil {
			t.Fatal(err)
		}
		var n *state.Network
		st.View(func(tx state.ReadTx) { n = state.GetNetwork(tx, id) })
		if n == nil || n.Driver != "overlay" || !n.Encrypted() {
			t.Fatalf("observed %+v, want the allocated, encrypted network", n)
		}
	})
}

// One Swarm never allocates delays a read by AllocationWait at most.
func TestObserveWaitForAllocationIsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fake.New()
		id := lateNetwork(t, f)
		st := state.New()
		start := time.Now()
		if err := observe.Observe(context.Background(), f, st); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > observe.AllocationWait+time.Second {
			t.Errorf("the read took %s", took)
		}
		var n *state.Network
		st.View(func(tx state.ReadTx) { n = state.GetNetwork(tx, id) })
		if n == nil || n.Driver != "" {
			t.Fatalf("observed %+v, want it as Swarm lists it", n)
		}
	})
}
