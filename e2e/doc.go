// Package e2e holds swarmsec's end-to-end tests, built only with the e2e
// tag: `go test -tags e2e -v ./e2e/...` (make test-e2e). TestMain brings up
// one three-node docker-in-docker Swarm (package cluster) for all the tests
// of the run and removes it at the end, also on failure, interrupt or test
// timeout.
package e2e
