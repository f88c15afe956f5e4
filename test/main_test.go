package test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: every
// gateway, upstream session and broker must be shut down completely.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
