package swarmtest

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// DefaultTimeout bounds the waits of this package: long enough for a task to
// start on a loaded two-core machine running three engines.
const DefaultTimeout = 2 * time.Minute

// Poll calls check until it reports done, failing the test with check's last
// message when timeout passes or ctx ends first. Checks are spaced from
// 100 ms up to 1 s apart.
func Poll(ctx context.Context, tb testing.TB, timeout time.Duration, check func() (done bool, msg string)) {
	tb.Helper()
	if err := PollE(ctx, timeout, check); err != nil {
		tb.Fatal(err)
	}
}

// PollE is Poll returning an error instead of failing a test.
func PollE(ctx context.Context, timeout time.Duration, check func() (done bool, msg string)) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wait := 100 * time.Millisecond
	for {
		done, msg := check()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			if parent.Err() != nil {
				return fmt.Errorf("stopped (%w): %s", context.Cause(parent), msg)
			}
			return fmt.Errorf("gave up after %s: %s", timeout, msg)
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}
