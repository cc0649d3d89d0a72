// Package faults holds the fault tests that need no engine: the real
// manifest watcher and controller against the fake Swarm while the
// manifests churn. Each test records every write the controller makes and
// checks it against an oracle, and prints what it tried and what held. The
// engine faults (restarts, a lost leader, a partition) are in e2e/.
package faults
