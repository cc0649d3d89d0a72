package swarmtest

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"os"
	"sync"
)

const (
	// LabelTest marks everything a test created, with the value "1".
	LabelTest = "swarmsec.test"
	// LabelRun carries the RunID of the test process that created it.
	LabelRun = "swarmsec.test.run"

	// RunIDEnv overrides the generated RunID (for example to let a shell
	// script sweep exactly one run).
	RunIDEnv = "SWARMSEC_TEST_RUN"
)

var runID = sync.OnceValue(func() string {
	if id := os.Getenv(RunIDEnv); id != "" {
		return id
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
})

// RunID identifies this test process: eight hex digits, the same for every
// call.
func RunID() string { return runID() }

// Labels returns the labels every test object carries (LabelTest and
// LabelRun) merged with extra.
func Labels(extra ...map[string]string) map[string]string {
	l := map[string]string{LabelTest: "1", LabelRun: RunID()}
	for _, e := range extra {
		maps.Copy(l, e)
	}
	return l
}
