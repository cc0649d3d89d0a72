package lease

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/swarmsec/swarmsec/testing/fake"
)

// A writer outside the replicas learns that one leads while it renews,
// and that none does once it stopped cleanly, once no lease exists, or
// once a dead holder's lease was left unchanged for its duration.
func TestLeaderSeesOnlyALiveHolder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		f := fake.New()
		if h, err := Leader(ctx, f, 10*time.Millisecond, nil); err != nil || h != "" {
			t.Fatalf("no lease: holder %q, %v; want none", h, err)
		}

		a := elector(f, "a")
		stopA := start(t, a)
		eventually(t, "a leads", time.Second, func() bool { return leads(a) })
		var told string
		began := time.Now()
		h, err := Leader(ctx, f, 10*time.Millisecond, func(holder string, _ time.Duration) { told = holder })
		if err != nil || h != "a" || told != "a" {
			t.Fatalf("a renewing: holder %q (told %q), %v; want a", h, told, err)
		}
		if took := time.Since(began); took > 4*a.RetryPeriod {
			t.Errorf("a live leader was seen after %s, want within a few renewals (%s each)", took, a.RetryPeriod)
		}
		stopA()
		if h, err := Leader(ctx, f, 10*time.Millisecond, nil); err != nil || h != "" {
			t.Fatalf("a released the lease: holder %q, %v; want none", h, err)
		}

		// A holder that died: the lease still names it and never changes.
		dead := record{holder: "ghost", renew: time.Now().UTC().Format(time.RFC3339Nano), duration: 150 * time.Millisecond}
		if _, err := f.ConfigCreate(ctx, swarm.ConfigSpec{Annotations: swarm.Annotations{Name: "other-lease", Labels: dead.labels()}}); err != nil {
			t.Fatal(err)
		}
		began = time.Now()
		if h, err := Leader(ctx, f, 10*time.Millisecond, nil); err != nil || h != "" {
			t.Fatalf("a dead holder's lease: holder %q, %v; want none", h, err)
		}
		if took := time.Since(began); took < dead.duration {
			t.Errorf("a dead holder's lease was judged after %s, before its duration %s", took, dead.duration)
		}
	})
}
