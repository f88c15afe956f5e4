package test

import (
	"flag"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: every
// gateway, upstream session and broker must be shut down completely.
//
// The subtests mostly wait on the network, so more of them run at once
// than -parallel's default (GOMAXPROCS) unless -parallel is given.
func TestMain(m *testing.M) {
	flag.Parse()
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		_ = flag.Set("test.parallel", "8")
	}
	goleak.VerifyTestMain(m)
}
