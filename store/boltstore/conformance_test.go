package boltstore_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
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

// TestBoltStore_PendingPages walks queues held in the log only, in the
// index only, and in both, so that pages start and end on either side.
func TestBoltStore_PendingPages(t *testing.T) {
	for _, c := range checkpointings {
		t.Run(c.name, func(t *testing.T) {
			storetest.RunPendingPages(t, func(t *testing.T) store.Store {
				s, err := boltstore.Open(filepath.Join(t.TempDir(), "hub.db"), boltstore.Options{CheckpointEvery: c.every})
				require.NoError(t, err)
				return s
			})
		})
	}
}

// TestBoltStore_ConformanceWithMaxAge: an age bound that nothing reaches
// changes nothing, while its expiry passes run between the writes.
func TestBoltStore_ConformanceWithMaxAge(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := boltstore.Open(filepath.Join(t.TempDir(), "hub.db"), boltstore.Options{CheckpointEvery: 3, MaxAge: time.Hour, CheckpointInterval: 10 * time.Millisecond})
		require.NoError(t, err)
		return s
	})
}

func TestBoltStore_PendingBounds(t *testing.T) {
	for _, c := range checkpointings {
		t.Run(c.name, func(t *testing.T) {
			storetest.RunPendingBounds(t, func(t *testing.T, b storetest.Bounds) store.Store {
				path := filepath.Join(t.TempDir(), "hub.db")
				s, err := boltstore.Open(path, boltstore.Options{
					CheckpointEvery: c.every, MaxPending: b.MaxPending, MaxPendingPerSender: b.MaxPendingPerSender,
				})
				require.NoError(t, err)
				return &checked{Store: s, t: t, path: path}
			})
		})
	}
}

// checked checks, once the suite closed the store, that the file's queues
// agree with their counts.
type checked struct {
	*boltstore.Store
	t    *testing.T
	path string
}

func (c *checked) Close() error {
	err := c.Store.Close()
	if err == nil {
		assert.NoError(c.t, boltstore.CheckQueues(c.path), "queues and counts after the subtest")
	}
	return err
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
