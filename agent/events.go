package agent

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	nflog "github.com/florianl/go-nflog/v2"
)

// Connection attempts the rules log (log: blocked or all) arrive through
// NFLOG, one message per new connection (the rules rate-limit them). The
// agent never writes a line per packet: it counts per source, port and
// verdict, and logs each count once a window (a minute), the events
// `swarmsec events` reads back through the agent service's logs.

// EventMessage is the log message of an aggregated event.
const EventMessage = "connection attempts"

// maxSources bounds the sources counted apart in one window; the rest are
// counted together under source "other".
const maxSources = 10000

// Event is what one window saw of one source towards one port.
type Event struct {
	Verdict  string // blocked or admitted
	Port     string // "port/protocol"
	Service  string
	Source   string // the address, or "other"
	Attempts int
}

type eventKey struct{ verdict, port, service, source string }

// Events aggregates logged attempts into windows.
type Events struct {
	mu     sync.Mutex
	counts map[eventKey]int
}

// Add counts one attempt from a logged packet: its NFLOG prefix and the
// packet from its IP header on.
func (e *Events) Add(prefix string, packet []byte) bool {
	f := strings.Fields(prefix)
	if len(f) < 3 || f[0] != "swarmsec" || (f[1] != "blocked" && f[1] != "admitted") {
		return false
	}
	service := ""
	if len(f) > 3 {
		service = f[3]
	}
	src, ok := sourceOf(packet)
	if !ok {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.counts == nil {
		e.counts = map[eventKey]int{}
	}
	k := eventKey{f[1], f[2], service, src.String()}
	if _, seen := e.counts[k]; !seen && len(e.counts) >= maxSources {
		k.source = "other"
	}
	e.counts[k]++
	return true
}

// Flush returns the window's events, sorted, and starts a new window.
func (e *Events) Flush() []Event {
	e.mu.Lock()
	counts := e.counts
	e.counts = nil
	e.mu.Unlock()
	out := make([]Event, 0, len(counts))
	for k, n := range counts {
		out = append(out, Event{Verdict: k.verdict, Port: k.port, Service: k.service, Source: k.source, Attempts: n})
	}
	slices.SortFunc(out, func(a, b Event) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Verdict, b.Verdict), cmp.Compare(a.Source, b.Source))
	})
	return out
}

// sourceOf reads the source address of an IPv4 or IPv6 packet.
func sourceOf(p []byte) (netip.Addr, bool) {
	if len(p) < 1 {
		return netip.Addr{}, false
	}
	switch p[0] >> 4 {
	case 4:
		if len(p) >= 20 {
			return netip.AddrFrom4([4]byte(p[12:16])), true
		}
	case 6:
		if len(p) >= 40 {
			return netip.AddrFrom16([16]byte(p[8:24])), true
		}
	}
	return netip.Addr{}, false
}

// ListenEvents reads the agent's NFLOG group and logs the counts every
// window until ctx ends. netns, when not 0, is the network namespace to
// listen in (tests); the agent's own is the node's.
func ListenEvents(ctx context.Context, log *slog.Logger, node string, window time.Duration, netns int) error {
	nf, err := nflog.Open(&nflog.Config{Group: NFLOGGroup, Copymode: nflog.CopyPacket, Bufsize: 128, NetNS: netns})
	if err != nil {
		return fmt.Errorf("NFLOG group %d: %w", NFLOGGroup, err)
	}
	defer nf.Close()
	var ev Events
	hook := func(a nflog.Attribute) int {
		if a.Prefix != nil && a.Payload != nil {
			ev.Add(*a.Prefix, *a.Payload)
		}
		return 0
	}
	errs := func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		// A full socket buffer drops messages, not the listener.
		log.Warn("NFLOG read", "err", err)
		return 0
	}
	if err := nf.RegisterWithErrorFunc(ctx, hook, errs); err != nil {
		return fmt.Errorf("NFLOG group %d: %w", NFLOGGroup, err)
	}
	t := time.NewTicker(window)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			logEvents(log, node, window, ev.Flush())
			return nil
		case <-t.C:
			logEvents(log, node, window, ev.Flush())
		}
	}
}

func logEvents(log *slog.Logger, node string, window time.Duration, events []Event) {
	for _, e := range events {
		level := slog.LevelInfo
		if e.Verdict == "blocked" {
			level = slog.LevelWarn
		}
		log.Log(context.Background(), level, EventMessage, "verdict", e.Verdict, "service", e.Service, "port", e.Port,
			"source", e.Source, "attempts", e.Attempts, "node", node, "window", window.String())
	}
}
