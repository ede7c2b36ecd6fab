package boltstore_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives the tests: every
// Store's committer and notifier must end with Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
