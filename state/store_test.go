package state

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"

	v1 "github.com/swarmsec/swarmsec/api/v1"
)

func TestSchemaBuilds(t *testing.T) {
	if err := schema().Validate(); err != nil {
		t.Fatal(err)
	}
	New()
}

func svc(id, name string, labels map[string]string, nets ...string) *Service {
	s := swarm.Service{ID: id}
	s.Spec.Name = name
	s.Spec.Labels = labels
	for _, n := range nets {
		s.Spec.TaskTemplate.Networks = append(s.Spec.TaskTemplate.Networks, swarm.NetworkAttachmentConfig{Target: n})
	}
	return NewService(s)
}

func TestServicesIndexes(t *testing.T) {
	st := New()
	err := st.Update(func(tx Tx) error {
		return ReplaceServices(tx, []*Service{
			svc("1", "shop_web", map[string]string{"app": "web", v1.LabelStackNamespace: "shop"}, "n1"),
			svc("2", "shop_api", map[string]string{"app": "api", v1.LabelStackNamespace: "shop"}, "n1", "n2"),
			svc("3", "other", nil),
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	st.View(func(tx ReadTx) {
		for _, tc := range []struct {
			name string
			by   By
			want []string
		}{
			{"all", All(), []string{"shop_web", "shop_api", "other"}},
			{"label", ByLabel("app", "api"), []string{"shop_api"}},
			{"stack", ByLabel(v1.LabelStackNamespace, "shop"), []string{"shop_web", "shop_api"}},
			{"implicit", ByLabel(v1.LabelService, "other"), []string{"other"}},
			{"network", ByNetwork("n1"), []string{"shop_web", "shop_api"}},
			{"name", ByName("shop_api"), []string{"shop_api"}},
		} {
			got, err := FindServices(tx, tc.by)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("%s: got %d services, want %v", tc.name, len(got), tc.want)
			}
			names := map[string]bool{}
			for _, s := range got {
				names[s.Name] = true
			}
			for _, w := range tc.want {
				if !names[w] {
					t.Errorf("%s: %s missing", tc.name, w)
				}
			}
		}
	})

	// Replacing drops what is gone.
	if err := st.Update(func(tx Tx) error {
		return ReplaceServices(tx, []*Service{svc("3", "other", nil)})
	}); err != nil {
		t.Fatal(err)
	}
	st.View(func(tx ReadTx) {
		if GetServiceByName(tx, "shop_web") != nil || GetService(tx, "3") == nil {
			t.Error("replace did not make the table exactly the new set")
		}
	})
}

func TestNetworksManagedAndOwner(t *testing.T) {
	st := New()
	nets := []*Network{
		NewNetwork(network.Summary{ID: "a", Name: "swarmsec.db", Labels: map[string]string{v1.LabelManaged: "true", v1.LabelOwner: "db"}, Options: map[string]string{"encrypted": ""}}),
		NewNetwork(network.Summary{ID: "b", Name: "shop_default", Labels: map[string]string{v1.LabelStackNamespace: "shop"}}),
		NewNetwork(network.Summary{ID: "c", Name: "ingress", Ingress: true}),
	}
	if err := st.Update(func(tx Tx) error { return ReplaceNetworks(tx, nets) }); err != nil {
		t.Fatal(err)
	}
	st.View(func(tx ReadTx) {
		m, _ := FindNetworks(tx, ByManaged())
		if len(m) != 1 || m[0].ID != "a" || !m[0].Encrypted() {
			t.Errorf("managed: got %+v", m)
		}
		o, _ := FindNetworks(tx, ByOwner("db"))
		if len(o) != 1 {
			t.Errorf("owner: got %d", len(o))
		}
		if !GetNetwork(tx, "c").Predefined() || GetNetwork(tx, "b").Predefined() {
			t.Error("predefined")
		}
		l, _ := FindNetworks(tx, ByLabel(v1.LabelNetwork, "shop_default"))
		if len(l) != 1 {
			t.Errorf("implicit network label: got %d", len(l))
		}
	})
}

func TestFailedUpdateIsDiscarded(t *testing.T) {
	st := New()
	err := st.Update(func(tx Tx) error {
		if err := ReplacePolicies(tx, []*v1.Policy{{Name: "p", Kind: v1.KindNetworkPolicy}}); err != nil {
			t.Fatal(err)
		}
		return errTest
	})
	if !errors.Is(err, errTest) {
		t.Fatalf("Update returned %v, want the function's error", err)
	}
	st.View(func(tx ReadTx) {
		if GetPolicy(tx, "p") != nil {
			t.Error("a failed update was committed")
		}
	})
}

var errTest = errorString("test")

type errorString string

func (e errorString) Error() string { return string(e) }

// A service removed and created again under its name between two
// observations: the name finds the new one.
func TestReplaceKeepsNamesOfRecreatedObjects(t *testing.T) {
	st := New()
	for _, id := range []string{"b-old", "a-new"} {
		if err := st.Update(func(tx Tx) error { return ReplaceServices(tx, []*Service{svc(id, "shop_web", nil)}) }); err != nil {
			t.Fatal(err)
		}
	}
	st.View(func(tx ReadTx) {
		if s := GetServiceByName(tx, "shop_web"); s == nil || s.ID != "a-new" {
			t.Errorf("by name: %+v, want a-new", s)
		}
		if all, _ := FindServices(tx, All()); len(all) != 1 {
			t.Errorf("%d services, want 1", len(all))
		}
	})
	// And once more, re-read alone (an event named the new one).
	if err := st.Update(func(tx Tx) error { return UpsertService(tx, svc("c-newer", "shop_web", nil)) }); err != nil {
		t.Fatal(err)
	}
	st.View(func(tx ReadTx) {
		if s := GetServiceByName(tx, "shop_web"); s == nil || s.ID != "c-newer" {
			t.Errorf("by name after upsert: %+v, want c-newer", s)
		}
		if all, _ := FindServices(tx, All()); len(all) != 1 {
			t.Errorf("%d services after upsert, want 1", len(all))
		}
	})
}

// A resync stores again only what changed: a service whose version moved
// on, a network whose fields differ. What changed is found by its indexes.
func TestReplaceUpdatesChangedObjects(t *testing.T) {
	st := New()
	versioned := func(v uint64, app string) *Service {
		s := swarm.Service{ID: "1"}
		s.Version.Index = v
		s.Spec.Name, s.Spec.Labels = "web", map[string]string{"app": app}
		return NewService(s)
	}
	net := func(label string) *Network {
		return NewNetwork(network.Summary{ID: "n1", Name: "backend", Labels: map[string]string{"k": label}})
	}
	update := func(s *Service, n *Network) {
		t.Helper()
		if err := st.Update(func(tx Tx) error {
			if err := ReplaceServices(tx, []*Service{s}); err != nil {
				return err
			}
			return ReplaceNetworks(tx, []*Network{n})
		}); err != nil {
			t.Fatal(err)
		}
	}
	update(versioned(1, "a"), net("a"))
	first := versioned(1, "a")
	update(first, net("a"))
	st.View(func(tx ReadTx) {
		if GetService(tx, "1") == first {
			t.Error("an unchanged service was stored again")
		}
	})
	update(versioned(2, "b"), net("b"))
	st.View(func(tx ReadTx) {
		if s, _ := FindServices(tx, ByLabel("app", "b")); len(s) != 1 {
			t.Errorf("the service of version 2 is not found by its new label: %v", s)
		}
		if n, _ := FindNetworks(tx, ByLabel("k", "b")); len(n) != 1 {
			t.Errorf("the changed network is not found by its new label: %v", n)
		}
	})
}

func TestGenerationMovesOnlyWhenSomethingChanged(t *testing.T) {
	st := New()
	services := func(v uint64) []*Service {
		s := swarm.Service{ID: "1"}
		s.Version.Index = v
		s.Spec.Name = "web"
		return []*Service{NewService(s)}
	}
	update := func(ss []*Service) uint64 {
		t.Helper()
		if err := st.Update(func(tx Tx) error { return ReplaceServices(tx, ss) }); err != nil {
			t.Fatal(err)
		}
		return st.Generation()
	}
	g1 := update(services(1))
	if g2 := update(services(1)); g2 != g1 {
		t.Errorf("storing the same service again moved the generation from %d to %d", g1, g2)
	}
	if g3 := update(services(2)); g3 == g1 {
		t.Error("a new version did not move the generation")
	}
	g := st.Generation()
	discarded := errors.New("discarded")
	if err := st.Update(func(tx Tx) error {
		if err := ReplaceServices(tx, nil); err != nil {
			t.Fatal(err)
		}
		return discarded
	}); !errors.Is(err, discarded) {
		t.Fatalf("Update returned %v, want the function's error", err)
	}
	if st.Generation() != g {
		t.Error("a discarded write moved the generation")
	}
}

// sameNetwork compares every field of a network and of its IPAM: a field
// added to either must be compared, or a resync would keep the old value.
func TestSameNetworkSeesEveryField(t *testing.T) {
	base := NewNetwork(network.Summary{ID: "n1", Name: "backend", Driver: "overlay", Scope: "swarm",
		Labels: map[string]string{"k": "v"}, Options: map[string]string{"encrypted": ""},
		IPAM: network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: "10.0.1.0/24", Gateway: "10.0.1.1"}}}})
	if !sameNetwork(base, NewNetwork(network.Summary{ID: "n1", Name: "backend", Driver: "overlay", Scope: "swarm",
		Labels: map[string]string{"k": "v"}, Options: map[string]string{"encrypted": ""},
		IPAM: network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: "10.0.1.0/24", Gateway: "10.0.1.1"}}}})) {
		t.Fatal("two reads of the same network differ")
	}
	// other returns a value of v's type that differs from v.
	other := func(t *testing.T, name string, v reflect.Value) reflect.Value {
		switch x := v.Interface().(type) {
		case string:
			return reflect.ValueOf(x + "x")
		case bool:
			return reflect.ValueOf(!x)
		case map[string]string:
			return reflect.ValueOf(map[string]string{"other": "1"})
		case time.Time:
			return reflect.ValueOf(x.Add(time.Second))
		case []network.IPAMConfig:
			return reflect.ValueOf([]network.IPAMConfig{{Subnet: "10.9.9.0/24"}})
		}
		t.Fatalf("field %s of type %s: compare it in sameNetwork and teach this test to change it", name, v.Type())
		return reflect.Value{}
	}
	nt := reflect.TypeFor[Network]()
	for i := range nt.NumField() {
		f := nt.Field(i)
		if f.Name == "IPAM" {
			it := reflect.TypeFor[network.IPAM]()
			for j := range it.NumField() {
				changed := *base
				ipam := reflect.ValueOf(&changed.IPAM).Elem()
				ipam.Field(j).Set(other(t, "IPAM."+it.Field(j).Name, ipam.Field(j)))
				if sameNetwork(base, &changed) {
					t.Errorf("a change of IPAM.%s goes unseen", it.Field(j).Name)
				}
			}
			changed := *base
			changed.IPAM.Config = []network.IPAMConfig{{Subnet: "10.0.1.0/24", Gateway: "10.0.1.1", IPRange: "10.0.1.0/25"}}
			if sameNetwork(base, &changed) {
				t.Error("a change of an IPAM config goes unseen")
			}
			continue
		}
		changed := *base
		v := reflect.ValueOf(&changed).Elem().Field(i)
		v.Set(other(t, f.Name, v))
		if sameNetwork(base, &changed) {
			t.Errorf("a change of %s goes unseen", f.Name)
		}
	}
}
