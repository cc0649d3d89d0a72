//go:build e2e

package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/swarmsec/swarmsec/e2e/cluster"
)

// testCluster is the Swarm every test of the run shares.
var testCluster *cluster.Cluster

// bringUp is how long bringing the cluster up took.
var bringUp time.Duration

func logf(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	flag.Parse()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Three managers: failover keeps quorum when one goes.
	c := cluster.New(cluster.Config{Logf: logf, Managers: 3})
	var once sync.Once
	teardown := func() {
		once.Do(func() {
			// A fresh context: the run's may be what ended.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			if err := c.Stop(ctx); err != nil {
				logf("e2e: teardown: %v", err)
			}
		})
	}
	defer teardown()

	// Interrupted (Ctrl-C, or SIGTERM from a CI timeout): stop bringing the
	// cluster up if it is still coming, tear it down, and exit as an
	// interrupted test does.
	started := make(chan struct{})
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		logf("e2e: %s: tearing the cluster down", s)
		cancel()
		select {
		case <-started:
		case <-time.After(30 * time.Second):
		}
		teardown()
		os.Exit(130)
	}()

	start := time.Now()
	err := c.Start(ctx)
	bringUp = time.Since(start)
	close(started)
	if err != nil {
		logf("e2e: cluster bring-up failed after %s: %v", bringUp.Round(time.Millisecond), err)
		return 1
	}
	logf("e2e: cluster up in %s", bringUp.Round(time.Millisecond))
	testCluster = c

	// go test -timeout panics the binary when it passes, with no deferred
	// call run: tear down a little before.
	if t := flag.Lookup("test.timeout"); t != nil {
		if d, ok := t.Value.(flag.Getter).Get().(time.Duration); ok && d > 0 {
			// Teardown takes a few seconds; keep a minute when there is one.
			margin := min(max(d/4, 15*time.Second), time.Minute, d/2)
			timer := time.AfterFunc(d-margin, func() {
				logf("e2e: the test timeout (%s) is near: tearing the cluster down", d)
				teardown()
			})
			defer timer.Stop()
		}
	}
	return m.Run()
}
