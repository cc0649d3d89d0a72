//go:build integration

package dns

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/swarmsec/swarmsec/agent/netns"
)

// resolverNamespace makes a network namespace of the test's own with
// Docker's embedded resolver as the engine sets it up in a task: a server
// on 127.0.0.11 at a random port, and the engine's nat rules that DNAT
// 127.0.0.11:53 to it and put port 53 back on its answers. The server
// answers "db" with a VIP, "tasks.db" with two task addresses,
// "example.org" with an outside address, and anything else NXDOMAIN.
func resolverNamespace(t *testing.T) *netns.Handle {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	name := fmt.Sprintf("swarmsec-dns-%d", os.Getpid())
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	ip("netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	ip("-n", name, "link", "set", "lo", "up")
	h, err := netns.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })

	var udp net.PacketConn
	var tcp net.Listener
	if err := h.Do(func() (err error) {
		if udp, err = net.ListenPacket("udp4", "127.0.0.11:0"); err != nil {
			return err
		}
		tcp, err = net.Listen("tcp4", "127.0.0.11:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { udp.Close(); tcp.Close() })
	uport, tport := udp.LocalAddr().(*net.UDPAddr).Port, tcp.Addr().(*net.TCPAddr).Port
	// The engine's rules (libnetwork's resolver setup), as iptables -t nat -S shows them in a task.
	rules := [][]string{
		{"-N", "DOCKER_OUTPUT"}, {"-N", "DOCKER_POSTROUTING"},
		{"-A", "OUTPUT", "-d", "127.0.0.11/32", "-j", "DOCKER_OUTPUT"},
		{"-A", "POSTROUTING", "-d", "127.0.0.11/32", "-j", "DOCKER_POSTROUTING"},
		{"-A", "DOCKER_OUTPUT", "-d", "127.0.0.11/32", "-p", "tcp", "--dport", "53", "-j", "DNAT", "--to-destination", fmt.Sprintf("127.0.0.11:%d", tport)},
		{"-A", "DOCKER_OUTPUT", "-d", "127.0.0.11/32", "-p", "udp", "--dport", "53", "-j", "DNAT", "--to-destination", fmt.Sprintf("127.0.0.11:%d", uport)},
		{"-A", "DOCKER_POSTROUTING", "-s", "127.0.0.11/32", "-p", "tcp", "--sport", fmt.Sprint(tport), "-j", "SNAT", "--to-source", ":53"},
		{"-A", "DOCKER_POSTROUTING", "-s", "127.0.0.11/32", "-p", "udp", "--sport", fmt.Sprint(uport), "-j", "SNAT", "--to-source", ":53"},
	}
	for _, r := range rules {
		args := append([]string{"netns", "exec", name, "iptables", "-t", "nat"}, r...)
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("iptables %v: %v: %s", r, err, out)
		}
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := udp.ReadFrom(buf)
			if err != nil {
				return
			}
			if out, ok := answer(buf[:n]); ok {
				_, _ = udp.WriteTo(out, from)
			}
		}
	}()
	go func() {
		for {
			c, err := tcp.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var l [2]byte
				if _, err := c.Read(l[:]); err != nil {
					return
				}
				buf := make([]byte, int(l[0])<<8|int(l[1]))
				if _, err := readFull(c, buf); err != nil {
					return
				}
				if out, ok := answer(buf); ok {
					_, _ = c.Write(append([]byte{byte(len(out) >> 8), byte(len(out))}, out...))
				}
			}()
		}
	}()
	return h
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

var records = map[string][]string{
	"db.":          {"10.0.7.2"},
	"tasks.db.":    {"10.0.7.5", "10.0.7.6"},
	"example.org.": {"203.0.113.7"},
}

// answer builds the resolver's answer to a query.
func answer(q []byte) ([]byte, bool) {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		return nil, false
	}
	question, err := p.Question()
	if err != nil {
		return nil, false
	}
	addrs, ok := records[strings.ToLower(question.Name.String())]
	h.Response, h.Authoritative = true, true
	if !ok {
		h.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, h)
	_ = b.StartQuestions()
	_ = b.Question(question)
	_ = b.StartAnswers()
	if question.Type == dnsmessage.TypeA {
		for _, a := range addrs {
			_ = b.AResource(dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: 600},
				dnsmessage.AResource{A: netip.MustParseAddr(a).As4()})
		}
	}
	out, err := b.Finish()
	return out, err == nil
}

// lookup asks the namespace's resolver for name's A records over network
// (udp, tcp), as a task's stub resolver does. The socket is made inside
// the namespace.
func lookup(t *testing.T, h *netns.Handle, network, name string) {
	t.Helper()
	var c net.Conn
	if err := h.Do(func() (err error) {
		c, err = net.DialTimeout(network, "127.0.0.11:53", time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, RecursionDesired: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name + "."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	q, _ := b.Finish()
	if network == "tcp" {
		q = append([]byte{byte(len(q) >> 8), byte(len(q))}, q...)
	}
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(q); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	if _, err := c.Read(buf); err != nil {
		t.Fatalf("lookup %s over %s: %v", name, network, err)
	}
}

func TestCapturesTheResolversAnswersBehindDockersNAT(t *testing.T) {
	h := resolverNamespace(t)
	if err := Install(h.Fd(), DefaultGroup); err != nil {
		t.Fatal(err)
	}
	if ok, err := Installed(h.Fd()); err != nil || !ok {
		t.Fatalf("installed %v, %v", ok, err)
	}
	w := &Watcher{Agg: &Aggregator{}}
	v := bookView(map[string][2][]string{"shop_db": {{"10.0.7.2"}, {"10.0.7.5", "10.0.7.6"}}})
	w.book.Store(NewBook(v))
	var mu sync.Mutex
	packets := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Listen(ctx, h.Fd(), DefaultGroup, func(p []byte) {
		mu.Lock()
		packets++
		mu.Unlock()
		w.Record("shop_web", p, time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	lookup(t, h, "udp", "db")
	lookup(t, h, "udp", "db")
	lookup(t, h, "udp", "tasks.db")
	lookup(t, h, "udp", "example.org")
	lookup(t, h, "udp", "payments")
	lookup(t, h, "tcp", "db")
	want := map[string]uint64{
		"shop_web|db|A|vip|shop_db":         3,
		"shop_web|tasks.db|A|tasks|shop_db": 1,
		"shop_web|example.org|A|external|":  1,
		"shop_web|payments|A|nxdomain|":     1,
	}
	var got map[string]uint64
	deadline := time.Now().Add(5 * time.Second)
	for {
		lookups, _, _ := w.Agg.Flush(time.Now())
		if got == nil {
			got = map[string]uint64{}
		}
		for _, l := range lookups {
			got[l.Key()] += l.Count
		}
		if len(got) >= len(want) && got["shop_web|db|A|vip|shop_db"] >= 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d answers, want %d", k, got[k], n)
		}
	}
	mu.Lock()
	t.Logf("%d packets logged; lookups %v", packets, got)
	logged := packets
	mu.Unlock()
	// The counter before the limit saw every answer the listener got.
	if n, err := Counted(h.Fd()); err != nil || n < uint64(logged) || n == 0 {
		t.Errorf("counted %d answers (%v), %d logged", n, err, logged)
	}
	// The table goes, and nothing else of the namespace's with it.
	if err := Remove(h.Fd()); err != nil {
		t.Fatal(err)
	}
	if ok, _ := Installed(h.Fd()); ok {
		t.Error("table still there")
	}
}

// A task flooding the resolver: the kernel logs 2×LogRate at once (the
// burst), then LogRate a second; the table's counter sees them all, and
// the watcher reports the difference as unseen.
func TestTheLimitsDropsAreCounted(t *testing.T) {
	h := resolverNamespace(t)
	if err := Install(h.Fd(), DefaultGroup); err != nil {
		t.Fatal(err)
	}
	var got atomic.Uint64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := Listen(ctx, h.Fd(), DefaultGroup, func([]byte) { got.Add(1) }); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	const n = 4 * LogRate
	for range n {
		lookup(t, h, "udp", "db")
	}
	took := time.Since(start)
	time.Sleep(500 * time.Millisecond) // the NFLOG queue's timeout
	counted, err := Counted(h.Fd())
	if err != nil {
		t.Fatal(err)
	}
	most := uint64(2*LogRate + LogRate*(took.Seconds()+1))
	t.Logf("%d lookups in %s: %d counted, %d logged (at most %d)", n, took.Round(time.Millisecond), counted, got.Load(), most)
	if counted < n || got.Load() > most || got.Load() < 2*LogRate {
		t.Errorf("%d counted, %d logged of %d lookups in %s", counted, got.Load(), n, took)
	}
}
