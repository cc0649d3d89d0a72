// Package plan is the pure core of swarmsec: it diffs the desired topology
// (package compile) against the observed state in the store into a plan of
// steps, orders them, and applies the safety limits. It does no I/O: the
// writer (package apply) executes what it plans.
package plan
