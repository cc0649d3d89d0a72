package netns

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
)

func TestRebase(t *testing.T) {
	if got, _ := Rebase("/var/run/docker/netns/1a2b3c", "/host/netns"); got != "/host/netns/1a2b3c" {
		t.Errorf("rebased to %s", got)
	}
	if got, _ := Rebase("/var/run/docker/netns/1a2b3c", ""); got != "/var/run/docker/netns/1a2b3c" {
		t.Errorf("kept as %s", got)
	}
	for _, bad := range []string{"", "/", "/var/run/docker/netns/.."} {
		if _, err := Rebase(bad, "/host/netns"); err == nil {
			t.Errorf("Rebase(%q) took it", bad)
		}
	}
}

// Open takes namespace files only: a plain file left where a sandbox was
// is refused.
func TestOpenTakesNamespacesOnly(t *testing.T) {
	plain := filepath.Join(t.TempDir(), "sandbox")
	if err := os.WriteFile(plain, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if ns, err := Open(plain); err == nil {
		ns.Close()
		t.Error("a plain file opened as a namespace")
	}
	ns, err := Open("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if os.Geteuid() != 0 {
		t.Skip("entering a namespace needs CAP_SYS_ADMIN")
	}
	ran := false
	if err := ns.Do(func() error { ran = true; return nil }); err != nil || !ran {
		t.Errorf("Do in its own namespace: ran %v, %v", ran, err)
	}
	want := errors.New("from inside")
	if err := ns.Do(func() error { return want }); !errors.Is(err, want) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
}

type engine []container.InspectResponse

func (e engine) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	var out []container.Summary
	for _, c := range e {
		out = append(out, container.Summary{ID: c.ID, Labels: c.Config.Labels})
	}
	return append(out, container.Summary{ID: "gone"}), nil
}

func (e engine) ContainerInspect(_ context.Context, id string) (container.InspectResponse, error) {
	for _, c := range e {
		if c.ID == id {
			return c, nil
		}
	}
	return container.InspectResponse{}, errors.New("no such container")
}

func TestLocalTasks(t *testing.T) {
	c := func(id, service, mode, addr string) container.InspectResponse {
		r := container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{ID: id, HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(mode)}},
			Config: &container.Config{Labels: map[string]string{LabelServiceName: service, LabelTaskID: "t" + id, LabelServiceID: "s" + service}}}
		r.NetworkSettings = &container.NetworkSettings{Networks: map[string]*network.EndpointSettings{"n": {NetworkID: "nid", IPAddress: addr, GlobalIPv6Address: "fd00::5"}}}
		r.NetworkSettings.SandboxKey = "/var/run/docker/netns/" + id
		return r
	}
	tasks, err := LocalTasks(context.Background(), engine{c("2", "web", "", "10.0.1.3"), c("1", "agent", "host", ""), c("3", "api", "default", "bad")})
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 3 || tasks[0].Service != "agent" || tasks[0].SandboxKey != "" || tasks[2].Service != "web" {
		t.Fatalf("tasks %+v", tasks)
	}
	if got := tasks[2].Addrs(); len(got) != 2 || got[0] != netip.MustParseAddr("10.0.1.3") {
		t.Errorf("web's addresses %v", got)
	}
	if got := tasks[1].Addrs(); len(got) != 1 {
		t.Errorf("api's addresses %v (a bad one skipped)", got)
	}
}

func TestNetNSPath(t *testing.T) {
	task := Task{TaskID: "t1", SandboxKey: "/var/run/docker/netns/abc", Pid: 4242}
	for _, c := range []struct{ proc, root, want string }{
		{"/host/proc", "", "/host/proc/4242/ns/net"},
		{"", "/host/netns", "/host/netns/abc"},
		{"", "", "/var/run/docker/netns/abc"},
	} {
		if got, err := task.NetNSPath(c.proc, c.root); err != nil || got != c.want {
			t.Errorf("NetNSPath(%q, %q) = %s, %v; want %s", c.proc, c.root, got, err, c.want)
		}
	}
	if _, err := (&Task{TaskID: "host"}).NetNSPath("", ""); err == nil {
		t.Error("a task on the host's network has a namespace path")
	}
}
