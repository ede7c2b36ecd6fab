package boltstore_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/boltstore"
	"github.com/wshub/wshub/store/storetest"
)

// Writes reach the index through the log and checkpoints, and reads merge
// the two, so the suite runs with the default checkpoints (everything only
// in the log during a subtest), a checkpoint after every commit
// (everything in the index) and one every 3 records (both).
var checkpointings = []struct {
	name  string
	every int
}{
	{"LogOnly", 0},
	{"Index", 1},
	{"Mixed", 3},
}

func TestBoltStore_Conformance(t *testing.T) {
	for _, c := range checkpointings {
		t.Run(c.name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store {
				s, err := boltstore.Open(filepath.Join(t.TempDir(), "hub.db"), boltstore.Options{CheckpointEvery: c.every})
				require.NoError(t, err)
				return s
			})
		})
	}
}

func TestBoltStore_Durable(t *testing.T) {
	for _, c := range checkpointings {
		t.Run(c.name, func(t *testing.T) {
			storetest.RunDurable(t, func(t *testing.T, dir string) store.Store {
				s, err := boltstore.Open(filepath.Join(dir, "hub.db"), boltstore.Options{CheckpointEvery: c.every})
				require.NoError(t, err)
				return s
			})
		})
	}
}
