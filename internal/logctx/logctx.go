package logctx

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
)

type key struct{}

// With returns ctx carrying log.
func With(ctx context.Context, log *slog.Logger) context.Context {
	return context.WithValue(ctx, key{}, log)
}

// From returns the logger ctx carries, else fallback, else slog.Default().
func From(ctx context.Context, fallback *slog.Logger) *slog.Logger {
	if log, ok := ctx.Value(key{}).(*slog.Logger); ok {
		return log
	}
	if fallback != nil {
		return fallback
	}
	return slog.Default()
}

// PassKey is the attribute that names a pass.
const PassKey = "pass"

var passes atomic.Uint64

// NewPassID returns a short id for a pass, unique within the process (a
// counter) and, with its random suffix, across the replicas whose logs
// end up together: "12-3fa9".
func NewPassID() string {
	return fmt.Sprintf("%d-%04x", passes.Add(1), rand.Uint32()&0xffff)
}

// ForPass returns ctx carrying log (or slog.Default() when nil) with a new
// pass id, and that logger.
func ForPass(ctx context.Context, log *slog.Logger) (context.Context, *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	log = log.With(PassKey, NewPassID())
	return With(ctx, log), log
}
