package nodeprobe

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/system"

	agentv1 "github.com/swarmsec/swarmsec/api/v1/agent"
)

// node is a node's engine as the checks see it.
type node struct {
	icc        string
	containers []container.Summary
}

func (n *node) Info(context.Context) (system.Info, error) {
	i := system.Info{}
	i.Swarm.NodeID = "n1"
	return i, nil
}

func (n *node) NetworkInspect(_ context.Context, id string, _ network.InspectOptions) (network.Inspect, error) {
	if id != "bridge" {
		return network.Inspect{}, errors.New("no such network")
	}
	return network.Inspect{Options: map[string]string{"com.docker.network.bridge.enable_icc": n.icc}}, nil
}

func (n *node) ContainerList(context.Context, container.ListOptions) ([]container.Summary, error) {
	return n.containers, nil
}

// table is the filter table with chains of rules; noU32 refuses u32.
type table struct {
	chains map[string][]string
	noU32  bool
}

func (t *table) ChainExists(_, c string) (bool, error) { _, ok := t.chains[c]; return ok, nil }
func (t *table) ClearChain(_, c string) error          { t.chains[c] = nil; return nil }
func (t *table) ClearAndDeleteChain(_, c string) error { delete(t.chains, c); return nil }
func (t *table) List(_, c string) ([]string, error)    { return t.chains[c], nil }
func (t *table) Append(_, c string, r ...string) error {
	if t.noU32 && slices.Contains(r, "u32") {
		return errors.New("iptables: No chain/target/match by that name.") //nolint:revive // iptables' own words, as the kernel's refusal reads
	}
	t.chains[c] = append(t.chains[c], strings.Join(r, " "))
	return nil
}
func (t *table) Insert(string, string, int, ...string) error    { return nil }
func (t *table) Exists(string, string, ...string) (bool, error) { return false, nil }
func (t *table) DeleteIfExists(string, string, ...string) error { return nil }

func results(r agentv1.Report) map[string]string {
	out := map[string]string{}
	for _, c := range r.Checks {
		out[c.ID] = c.Result
	}
	return out
}

func TestProberOnAGoodAndABadNode(t *testing.T) {
	proc := t.TempDir()
	// Something listens on 8080 (a userland proxy for a published port).
	tcp := "  sl  local_address rem_address   st\n   0: 00000000:1F90 00000000:0000 0A\n"
	if err := os.WriteFile(filepath.Join(proc, "tcp"), []byte(tcp), 0o644); err != nil {
		t.Fatal(err)
	}
	var xfrm [][]string
	good := &Prober{Hostname: "good", ProcNet: t.TempDir(),
		Docker:   &node{icc: "false"},
		IPTables: &table{chains: map[string][]string{"INPUT": {"-P INPUT ACCEPT"}}},
		Exec: func(_ context.Context, _ string, args ...string) ([]byte, error) {
			xfrm = append(xfrm, args)
			return nil, nil
		}}
	r := good.Report(context.Background())
	if r.NodeID != "n1" {
		t.Errorf("node ID %q", r.NodeID)
	}
	for id, res := range results(r) {
		if res != agentv1.OK && id != agentv1.CheckUserlandProxy {
			t.Errorf("good node: %s is %s", id, res)
		}
	}
	if ok, known := r.CanEncrypt(); !ok || !known {
		t.Errorf("good node cannot encrypt: %v %v", ok, known)
	}
	// The ESP probe removes what it added, and the u32 probe its chain.
	if len(xfrm) != 2 || xfrm[0][2] != "add" || xfrm[1][2] != "del" || !slices.Contains(xfrm[0], "rfc4106(gcm(aes))") {
		t.Errorf("ESP probe: %v", xfrm)
	}
	if _, left := good.IPTables.(*table).chains[probeChain]; left {
		t.Error("the u32 probe chain was left behind")
	}

	bad := &Prober{Hostname: "bad", ProcNet: proc,
		Docker: &node{icc: "true", containers: []container.Summary{
			{Names: []string{"/db"}, Ports: []container.Port{{IP: "0.0.0.0", PublicPort: 8080, PrivatePort: 80}}},
			{Names: []string{"/task"}, Labels: map[string]string{"com.docker.swarm.task.id": "x"}, Ports: []container.Port{{IP: "0.0.0.0", PublicPort: 9000}}},
		}},
		IPTables: &table{noU32: true, chains: map[string][]string{"INPUT": {"-P INPUT DROP", "-A INPUT -p tcp --dport 22 -j ACCEPT"}}},
		Exec: func(context.Context, string, ...string) ([]byte, error) {
			return []byte("Error: Requested AEAD algorithm not found.\n"), errors.New("exit status 2")
		}}
	r = bad.Report(context.Background())
	want := map[string]string{agentv1.CheckESP: agentv1.Failed, agentv1.CheckU32: agentv1.Failed, agentv1.CheckDataPath: agentv1.Warning, agentv1.CheckIPTables: agentv1.OK,
		agentv1.CheckICC: agentv1.Warning, agentv1.CheckPublishAll: agentv1.Warning, agentv1.CheckUserlandProxy: agentv1.Warning}
	if got := results(r); !equalMaps(got, want) {
		t.Errorf("bad node: %v, want %v", got, want)
	}
	if c, _ := r.Get(agentv1.CheckPublishAll); !strings.Contains(c.Message, "db (0.0.0.0:8080)") || strings.Contains(c.Message, "task") {
		t.Errorf("publish check names the wrong containers: %s", c.Message)
	}
	if c, _ := r.Get(agentv1.CheckESP); !strings.Contains(c.Message, "Requested AEAD algorithm not found") || c.Fix == "" {
		t.Errorf("ESP check: %+v", c)
	}
	if ok, known := r.CanEncrypt(); ok || !known {
		t.Errorf("bad node can encrypt: %v %v", ok, known)
	}

	none := (&Prober{Hostname: "bare"}).Report(context.Background())
	if ok, known := none.CanEncrypt(); known {
		t.Errorf("a node with nothing to ask knows: %v", ok)
	}
	if got := results(none)[agentv1.CheckIPTables]; got != agentv1.Failed {
		t.Errorf("no DOCKER-USER: iptables check %s", got)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
