package main

import (
	"bytes"
	"strings"
	"testing"
)

// A line over 1 MiB is skipped, not the end of the reading: every later
// event was left out, with no error.
func TestPrintEventsSkipsALineTooLong(t *testing.T) {
	logs := `{"msg":"connection attempts","x":"` + strings.Repeat("x", 2<<20) + `"}
{"time":"2026-12-06T23:00:00Z","msg":"connection attempts","verdict":"blocked","service":"shop_web","port":"8080/tcp","source":"203.0.113.9","attempts":4,"node":"w1"}
`
	var out bytes.Buffer
	if err := printEvents(&out, strings.NewReader(logs), "table", false); err != nil || !strings.Contains(out.String(), "203.0.113.9") {
		t.Errorf("after a long line: %q, %v", out.String(), err)
	}
}
