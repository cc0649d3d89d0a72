//go:build integration

package datapath

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	nflog "github.com/florianl/go-nflog/v2"

	"github.com/swarmsec/swarmsec/agent/netns"
	v1 "github.com/swarmsec/swarmsec/api/v1"
)

// pair makes two network namespaces of the test's own joined by a veth
// pair, client 10.99.0.1 and server 10.99.0.2: the machine's own
// namespaces are never touched.
func pair(t *testing.T) (client, server *netns.Handle) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	c, s := fmt.Sprintf("swarmsec-dp-c%d", os.Getpid()), fmt.Sprintf("swarmsec-dp-s%d", os.Getpid())
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	run("netns", "add", c)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", c).Run() })
	run("netns", "add", s)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", s).Run() })
	run("-n", c, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", s)
	run("-n", c, "addr", "add", "10.99.0.1/24", "dev", "eth0")
	run("-n", s, "addr", "add", "10.99.0.2/24", "dev", "eth0")
	for _, ns := range []string{c, s} {
		run("-n", ns, "link", "set", "eth0", "up")
		run("-n", ns, "link", "set", "lo", "up")
	}
	var err error
	if client, err = netns.Open("/run/netns/" + c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if server, err = netns.Open("/run/netns/" + s); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// listen serves TCP on the ports in the namespace, accepting and closing.
func listen(t *testing.T, h *netns.Handle, ports ...int) {
	t.Helper()
	for _, p := range ports {
		var l net.Listener
		if err := h.Do(func() (err error) {
			l, err = net.Listen("tcp", fmt.Sprintf(":%d", p))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
}

func dial(h *netns.Handle, addr string, port int, timeout time.Duration) bool {
	var conn net.Conn
	err := h.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", fmt.Sprintf("%s:%d", addr, port), timeout)
		return err
	})
	if err == nil {
		conn.Close()
	}
	return err == nil
}

var (
	clientAddr = netip.MustParseAddr("10.99.0.1")
	serverAddr = netip.MustParseAddr("10.99.0.2")
)

func only(peer netip.Addr, port uint16) Ruleset {
	return Ruleset{
		Out: []Rule{
			{Addrs: []netip.Addr{peer}, Ports: []Match{{Protocol: v1.ProtocolTCP, Lo: port, Hi: port}}, Verdict: Accept},
			{Addrs: []netip.Addr{peer}, Verdict: Drop},
		},
	}
}

func TestTablesInNamespaces(t *testing.T) {
	client, server := pair(t)
	listen(t, server, 8080, 9090, 7070)
	if !dial(client, "10.99.0.2", 9090, time.Second) {
		t.Fatal("no table yet, and 9090 does not answer")
	}

	// The opening side: only 8080 to the server.
	rs := only(serverAddr, 8080)
	if err := Apply(client.Fd(), &rs, 7332); err != nil {
		t.Fatal(err)
	}
	if n, err := Rules(client.Fd()); err != nil || n < 4 {
		t.Fatalf("rules in the table: %d, %v", n, err)
	}
	if !dial(client, "10.99.0.2", 8080, time.Second) || dial(client, "10.99.0.2", 9090, 300*time.Millisecond) {
		t.Fatal("the client's table admits other than 8080 only")
	}
	if err := Remove(client.Fd()); err != nil {
		t.Fatal(err)
	}
	if n, err := Rules(client.Fd()); err != nil || n != -1 {
		t.Fatalf("after removal: %d rules, %v", n, err)
	}

	// The receiving side: only 8080 from the client, and replies of its
	// own connections (none here) pass.
	in := Ruleset{In: []Rule{
		{Addrs: []netip.Addr{clientAddr}, Ports: []Match{{Protocol: v1.ProtocolTCP, Lo: 8000, Hi: 8100}}, Verdict: Accept},
		{Addrs: []netip.Addr{clientAddr}, Verdict: Drop},
	}}
	if err := Apply(server.Fd(), &in, 7332); err != nil {
		t.Fatal(err)
	}
	if !dial(client, "10.99.0.2", 8080, time.Second) || dial(client, "10.99.0.2", 9090, 300*time.Millisecond) {
		t.Fatal("the server's table admits other than 8000-8100")
	}
	// The server opening to the client is not its ingress: it passes.
	listen(t, client, 6060)
	if !dial(server, "10.99.0.1", 6060, time.Second) {
		t.Fatal("the server's ingress table blocks its own connections out, or their replies")
	}
}

// TestSwapAdmitsNothingNeitherSetAdmits swaps the client's table between
// two rule sets (8080 only, 9090 only) as fast as it can while another
// goroutine keeps opening connections to 7070, which neither admits: not
// one may get through, and both sets must be seen working.
func TestSwapAdmitsNothingNeitherSetAdmits(t *testing.T) {
	client, server := pair(t)
	listen(t, server, 8080, 9090, 7070)
	a, b := only(serverAddr, 8080), only(serverAddr, 9090)
	if err := Apply(client.Fd(), &a, 7332); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var leaked, tried, ok8080, ok9090 atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				tried.Add(1)
				if dial(client, "10.99.0.2", 7070, 50*time.Millisecond) {
					leaked.Add(1)
				}
				if dial(client, "10.99.0.2", 8080, 50*time.Millisecond) {
					ok8080.Add(1)
				}
				if dial(client, "10.99.0.2", 9090, 50*time.Millisecond) {
					ok9090.Add(1)
				}
			}
		}()
	}
	swaps := 0
	for ctx.Err() == nil {
		next := &a
		if swaps%2 == 0 {
			next = &b
		}
		if err := Apply(client.Fd(), next, 7332); err != nil {
			t.Fatal(err)
		}
		swaps++
	}
	wg.Wait()
	t.Logf("%d swaps, %d attempts on 7070, %d admitted on 8080, %d on 9090", swaps, tried.Load(), ok8080.Load(), ok9090.Load())
	if leaked.Load() > 0 {
		t.Fatalf("%d connections to 7070, which neither rule set admits, got through during swaps", leaked.Load())
	}
	if ok8080.Load() == 0 || ok9090.Load() == 0 || swaps < 20 {
		t.Fatalf("the swaps did not alternate: %d swaps, 8080 %d, 9090 %d", swaps, ok8080.Load(), ok9090.Load())
	}
}

// TestDropsAreLoggedInTheNamespace reads the NFLOG group inside the
// client's namespace, as the agent does per task.
func TestDropsAreLoggedInTheNamespace(t *testing.T) {
	client, server := pair(t)
	listen(t, server, 9090)
	rs := only(serverAddr, 8080)
	if err := Apply(client.Fd(), &rs, 7332); err != nil {
		t.Fatal(err)
	}
	nf, err := nflog.Open(&nflog.Config{Group: 7332, Copymode: nflog.CopyPacket, Bufsize: 128, NetNS: client.Fd()})
	if err != nil {
		t.Fatal(err)
	}
	defer nf.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan packet, 16)
	if err := nf.RegisterWithErrorFunc(ctx, func(a nflog.Attribute) int {
		if a.Prefix != nil && cleanPrefix(*a.Prefix) == PrefixOut && a.Payload != nil {
			if k, ok := parse(*a.Payload); ok {
				select {
				case got <- k:
				default:
				}
			}
		}
		return 0
	}, func(error) int { return 0 }); err != nil {
		t.Fatal(err)
	}
	if dial(client, "10.99.0.2", 9090, 300*time.Millisecond) {
		t.Fatal("9090 admitted")
	}
	select {
	case k := <-got:
		if k.dst != serverAddr || k.dstPort != 9090 || k.proto != v1.ProtocolTCP || k.src != clientAddr {
			t.Fatalf("logged %+v", k)
		}
	case <-ctx.Done():
		t.Fatal("no drop logged")
	}
}

// TestAuditAndAllowedAreLoggedInTheNamespace: an audit chain lets what it
// would drop pass and logs it (would-block); an accept with Log logs it
// (allowed); the connections pass either way.
func TestAuditAndAllowedAreLoggedInTheNamespace(t *testing.T) {
	client, server := pair(t)
	listen(t, server, 8080, 9090)
	tcp := func(p uint16) []Match { return []Match{{Protocol: v1.ProtocolTCP, Lo: p, Hi: p}} }
	peer := []netip.Addr{serverAddr}
	rs := Ruleset{
		Out: []Rule{
			{Addrs: peer, Ports: tcp(8080), Verdict: Accept, Log: true},
			{Addrs: peer, Ports: tcp(9090), Verdict: Accept},
			{Addrs: peer, Verdict: Drop},
		},
		AuditOut: []Rule{
			{Addrs: peer, Ports: tcp(8080), Verdict: Accept},
			{Addrs: peer, Verdict: Drop},
		},
	}
	if err := Apply(client.Fd(), &rs, 7332); err != nil {
		t.Fatal(err)
	}
	plain := only(serverAddr, 8080)
	if err := Apply(server.Fd(), &plain, 7332); err != nil { // a table without audit chains, counted alike
		t.Fatal(err)
	}
	n, err := Rules(client.Fd())
	if err != nil {
		t.Fatal(err)
	}
	m, err := Rules(server.Fd())
	if err != nil || n <= m {
		t.Fatalf("the audit chains' rules are not counted: %d with, %d without, %v", n, m, err)
	}
	nf, err := nflog.Open(&nflog.Config{Group: 7332, Copymode: nflog.CopyPacket, Bufsize: 128, NetNS: client.Fd()})
	if err != nil {
		t.Fatal(err)
	}
	defer nf.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type logged struct {
		prefix string
		port   uint16
	}
	got := make(chan logged, 16)
	if err := nf.RegisterWithErrorFunc(ctx, func(a nflog.Attribute) int {
		if a.Prefix != nil && a.Payload != nil {
			if k, ok := parse(*a.Payload); ok && k.dst == serverAddr {
				select {
				case got <- logged{cleanPrefix(*a.Prefix), k.dstPort}:
				default:
				}
			}
		}
		return 0
	}, func(error) int { return 0 }); err != nil {
		t.Fatal(err)
	}
	if !dial(client, "10.99.0.2", 9090, time.Second) {
		t.Fatal("9090 refused: the audit chain dropped what it should only log")
	}
	if !dial(client, "10.99.0.2", 8080, time.Second) {
		t.Fatal("8080 refused")
	}
	want := map[logged]bool{{PrefixAuditOut, 9090}: false, {PrefixAllowOut, 8080}: false}
	for slices.Contains(slices.Collect(maps.Values(want)), false) {
		select {
		case l := <-got:
			if _, ok := want[l]; !ok {
				t.Fatalf("logged %+v", l)
			}
			want[l] = true
		case <-ctx.Done():
			t.Fatalf("not all logged: %v", want)
		}
	}
}
