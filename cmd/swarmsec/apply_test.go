package main

import (
	"testing"
	"time"
)

// TestPendingWaitBacksOff: a write waiting on Swarm is looked at again
// after 250 ms, then 0.5, 1, 2 s..., never later than the pass asked.
func TestPendingWaitBacksOff(t *testing.T) {
	for _, tc := range []struct {
		requeue time.Duration
		idle    int
		want    time.Duration
	}{
		{5 * time.Second, 0, 250 * time.Millisecond},
		{5 * time.Second, 1, 500 * time.Millisecond},
		{5 * time.Second, 3, 2 * time.Second},
		{5 * time.Second, 4, 4 * time.Second},
		{5 * time.Second, 5, 5 * time.Second},
		{5 * time.Second, 100, 5 * time.Second},
		{100 * time.Millisecond, 0, 100 * time.Millisecond},
	} {
		if got := pendingWait(tc.requeue, tc.idle); got != tc.want {
			t.Errorf("pendingWait(%s, %d) = %s, want %s", tc.requeue, tc.idle, got, tc.want)
		}
	}
}
