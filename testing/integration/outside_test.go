//go:build integration

package integration

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// outsideClient is a network namespace of this test's own with one veth
// to the host: a client outside the Swarm with an address of its choosing.
type outsideClient struct {
	ns   string
	addr string // its own address
	host string // the host's end, the address it connects to
}

func newOutsideClient(ctx context.Context, t *testing.T, name string, subnet int) *outsideClient {
	t.Helper()
	c := &outsideClient{ns: name, addr: fmt.Sprintf("198.18.%d.2", subnet), host: fmt.Sprintf("198.18.%d.1", subnet)}
	hostEnd, nsEnd := name+"h", name+"n"
	steps := [][]string{
		{"ip", "netns", "add", name},
		{"ip", "link", "add", hostEnd, "type", "veth", "peer", "name", nsEnd},
		{"ip", "link", "set", nsEnd, "netns", name},
		{"ip", "addr", "add", c.host + "/30", "dev", hostEnd},
		{"ip", "link", "set", hostEnd, "up"},
		{"ip", "netns", "exec", name, "ip", "addr", "add", c.addr + "/30", "dev", nsEnd},
		{"ip", "netns", "exec", name, "ip", "link", "set", nsEnd, "up"},
		{"ip", "netns", "exec", name, "ip", "route", "add", "default", "via", c.host},
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", hostEnd).Run()
		_ = exec.Command("ip", "netns", "del", name).Run()
	})
	for _, s := range steps {
		if out, err := exec.CommandContext(ctx, s[0], s[1:]...).CombinedOutput(); err != nil {
			t.Skipf("cannot make a client namespace (%s): %v %s", strings.Join(s, " "), err, out)
		}
	}
	return c
}
