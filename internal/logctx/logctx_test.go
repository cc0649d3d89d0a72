package logctx

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestForPassNamesEachPass(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewJSONHandler(&buf, nil))
	if From(context.Background(), base) != base {
		t.Error("From without a logger in ctx is not the fallback")
	}
	seen := map[string]bool{}
	for range 3 {
		ctx, log := ForPass(context.Background(), base)
		if From(ctx, nil) != log {
			t.Fatal("From does not return the pass's logger")
		}
		buf.Reset()
		From(ctx, base).Info("x")
		var line map[string]any
		if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		id, _ := line[PassKey].(string)
		if id == "" || seen[id] {
			t.Fatalf("pass id %q: empty or seen before (%v)", id, seen)
		}
		seen[id] = true
	}
}
