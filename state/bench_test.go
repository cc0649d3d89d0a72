package state

import (
	"fmt"
	"testing"

	"github.com/docker/docker/api/types/swarm"
)

// benchServices are 5,000 services in stacks of five, as Swarm lists them.
func benchServices() []swarm.Service {
	out := make([]swarm.Service, 5000)
	for i := range out {
		s := swarm.Service{ID: fmt.Sprintf("id%05d", i)}
		s.Version.Index = 7
		s.Spec.Name = fmt.Sprintf("bs%04d_app%d", i/5, i%5)
		s.Spec.Labels = map[string]string{"swarmsec.bench": "1", "com.docker.stack.namespace": fmt.Sprintf("bs%04d", i/5), "app": fmt.Sprint(i % 5)}
		s.Spec.TaskTemplate.Networks = []swarm.NetworkAttachmentConfig{{Target: fmt.Sprintf("net%04d", i/5)}, {Target: "n2"}}
		out[i] = s
	}
	return out
}

// BenchmarkNewService5000 is the cost of building what the store keeps of
// a listed service.
func BenchmarkNewService5000(b *testing.B) {
	raw := benchServices()
	for range b.N {
		for _, s := range raw {
			NewService(s)
		}
	}
}

// BenchmarkReplaceServices5000 is a resync's store update when nothing
// changed: listed services built and stored again.
func BenchmarkReplaceServices5000(b *testing.B) {
	raw := benchServices()
	st := New()
	mk := func() []*Service {
		out := make([]*Service, len(raw))
		for i, s := range raw {
			out[i] = NewService(s)
		}
		return out
	}
	_ = st.Update(func(tx Tx) error { return ReplaceServices(tx, mk()) })
	b.ResetTimer()
	for range b.N {
		ss := mk()
		_ = st.Update(func(tx Tx) error { return ReplaceServices(tx, ss) })
	}
}
