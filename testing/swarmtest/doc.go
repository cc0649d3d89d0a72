// Package swarmtest holds the helpers swarmsec's integration tests (the
// machine's engine as a one-node Swarm) and end-to-end tests (a
// docker-in-docker Swarm) share, in the style of moby's
// integration/internal/swarm: each takes the *client.Client of the engine to
// act on, fails the test on an error, registers a t.Cleanup for what it
// creates, and polls with a deadline instead of sleeping.
//
// Everything created carries the labels swarmsec.test=1 and
// swarmsec.test.run=<RunID()>, so Sweep can remove what an interrupted run
// left behind.
//
// Helpers whose name ends in E return an error instead of failing a test:
// use them from TestMain and from goroutines other than the test's own,
// where t.Fatal must not be called.
package swarmtest
