//go:build integration

package flows

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/swarmsec/swarmsec/agent/netns"
)

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// testNamespace makes a network namespace of the test's own, joined to
// the machine's by a veth pair on a link-local /30 nothing else uses, and
// returns its file and the addresses of both ends.
func testNamespace(t *testing.T) (path string, host, inside netip.Addr) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace")
	}
	name := fmt.Sprintf("swarmsec-flows-%d", os.Getpid())
	veth := fmt.Sprintf("ssf%d", os.Getpid()%100000)
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", veth).Run()
		_ = exec.Command("ip", "netns", "del", name).Run()
	})
	o := byte(os.Getpid()%60) * 4
	host, inside = netip.AddrFrom4([4]byte{169, 254, 231, o + 1}), netip.AddrFrom4([4]byte{169, 254, 231, o + 2})
	run(t, "ip", "link", "add", veth, "type", "veth", "peer", "name", veth+"p")
	run(t, "ip", "link", "set", veth+"p", "netns", name)
	run(t, "ip", "addr", "add", host.String()+"/30", "dev", veth)
	run(t, "ip", "link", "set", veth, "up")
	run(t, "ip", "-n", name, "addr", "add", inside.String()+"/30", "dev", veth+"p")
	run(t, "ip", "-n", name, "link", "set", veth+"p", "up")
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	// A namespace tracks connections only once a rule asks for conntrack
	// (in a task's namespace, Docker's NAT rules for the embedded DNS do).
	run(t, "ip", "netns", "exec", name, "iptables", "-A", "INPUT", "-m", "conntrack", "--ctstate", "NEW,ESTABLISHED", "-j", "ACCEPT")
	return "/var/run/netns/" + name, host, inside
}

// The reader sees, inside a namespace, the connections made to it from
// outside; OwnAddrs reads the namespace's addresses from inside it, and
// the caller's thread comes back.
func TestDumpReadsANamespacesConnections(t *testing.T) {
	path, host, inside := testNamespace(t)
	ns, err := netns.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	own, err := OwnAddrs(ns)
	if err != nil {
		t.Fatal(err)
	}
	if !own[inside] || own[host] {
		t.Fatalf("own addresses %v: want %s and not %s", own, inside, host)
	}
	// A listener made inside the namespace stays there.
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(inside.String(), "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	for range 3 {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(inside.String(), fmt.Sprint(port)), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	// An attempt from inside that nobody answers: the host's replies to
	// it are dropped in the namespace before conntrack sees them (raw
	// table), so its entry stays SYN_SENT. No flow.
	const unanswered = 9
	run(t, "ip", "netns", "exec", filepath.Base(path), "iptables", "-t", "raw", "-A", "PREROUTING", "-s", host.String(), "-p", "tcp", "--sport", fmt.Sprint(unanswered), "-j", "DROP")
	if err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(host.String(), fmt.Sprint(unanswered)), 300*time.Millisecond)
		if err == nil {
			c.Close()
			return fmt.Errorf("connected to %s:%d through the drop", host, unanswered)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// One-way UDP from inside (statsd, syslog): never answered, read
	// marked, for classify to judge.
	const oneWay = 8125
	if err := ns.Do(func() error {
		c, err := net.Dial("udp", net.JoinHostPort(host.String(), fmt.Sprint(oneWay)))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("hits:1|c"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var conns []Conn
	deadline := time.Now().Add(5 * time.Second)
	for {
		conns, err = Dump(ns.Fd())
		if err != nil {
			t.Fatal(err)
		}
		n, udp := 0, false
		for _, c := range conns {
			if c.Dst == host && c.DstPort == unanswered {
				t.Fatalf("an attempt nobody answered is read as a connection: %+v", c)
			}
			if c.Src == host && c.Dst == inside && c.DstPort == port && c.Protocol == "tcp" && !c.Unanswered {
				n++
			}
			if c.Dst == host && c.DstPort == oneWay && c.Protocol == "udp" && c.Unanswered {
				udp = true
			}
		}
		if n == 3 && udp {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 3 connections in the namespace's conntrack, one-way UDP read %v: %+v", n, udp, conns)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n, err := ConnCount(ns); err != nil || n < 3 {
		t.Errorf("the namespace counts %d connections (%v), want at least 3", n, err)
	}
	// Classified in the namespace's task: a client from outside on its port.
	b := &Book{}
	for _, c := range conns {
		k, ok := classify("svc", own, b, c)
		switch {
		case c.Protocol == "udp":
			// To an address no service has: not counted.
			if ok {
				t.Errorf("one-way UDP outside the Swarm classified as %+v", k)
			}
		case !ok || k.Source != "outside" || k.Destination != "svc" || k.Port != port:
			t.Errorf("classified as %+v, %v", k, ok)
		}
	}
	// Do switched back: this goroutine's thread is the machine's again.
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(inside.AsSlice()) {
			t.Errorf("the caller is still in the namespace: %v", addrs)
		}
	}
}
