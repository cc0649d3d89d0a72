package agent

import (
	"net/netip"
	"testing"
)

func ipv4From(src string) []byte {
	p := make([]byte, 40)
	p[0] = 0x45
	a := netip.MustParseAddr(src).As4()
	copy(p[12:16], a[:])
	return p
}

func ipv6From(src string) []byte {
	p := make([]byte, 60)
	p[0] = 0x60
	a := netip.MustParseAddr(src).As16()
	copy(p[8:24], a[:])
	return p
}

func TestEventsCountPerSourcePortAndVerdict(t *testing.T) {
	var e Events
	for range 3 {
		e.Add("swarmsec blocked 443/tcp shop_web", ipv4From("198.51.100.7"))
	}
	e.Add("swarmsec blocked 443/tcp shop_web", ipv6From("2001:db8::1"))
	e.Add("swarmsec admitted 443/tcp shop_web", ipv4From("203.0.113.1"))
	for _, bad := range []struct{ prefix string }{{"other tool 443/tcp"}, {"swarmsec maybe 443/tcp x"}, {"swarmsec"}} {
		if e.Add(bad.prefix, ipv4From("192.0.2.1")) {
			t.Errorf("counted a message with prefix %q", bad.prefix)
		}
	}
	if e.Add("swarmsec blocked 443/tcp shop_web", []byte{0x45, 0}) {
		t.Error("counted a truncated packet")
	}
	got := e.Flush()
	want := []Event{
		{"admitted", "443/tcp", "shop_web", "203.0.113.1", 1},
		{"blocked", "443/tcp", "shop_web", "198.51.100.7", 3},
		{"blocked", "443/tcp", "shop_web", "2001:db8::1", 1},
	}
	if len(got) != len(want) {
		t.Fatalf("events %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if again := e.Flush(); len(again) != 0 {
		t.Errorf("a flushed window counted again: %+v", again)
	}
}

func TestEventsAreBounded(t *testing.T) {
	var e Events
	for i := range maxSources + 50 {
		e.Add("swarmsec blocked 22/tcp ssh", ipv4From(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String()))
	}
	got := e.Flush()
	if len(got) != maxSources+1 || got[len(got)-1].Source != "other" || got[len(got)-1].Attempts != 50 {
		t.Fatalf("%d events, last %+v; want %d and 50 under other", len(got), got[len(got)-1], maxSources+1)
	}
}
