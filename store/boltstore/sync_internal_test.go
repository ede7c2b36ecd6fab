package boltstore

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
)

// TestOpen_DefaultOptionsSyncEveryCommit checks the durability promise of
// the package doc (a receipted message survives a crash of the machine)
// where it is made: the bbolt handle the store commits through. A SIGKILL
// of the process (crash_test.go) cannot see a missing fsync, since the
// operating system's cache survives it; the flags of the opened *bolt.DB
// can. Only Options.NoSync may turn the syncs off.
func TestOpen_DefaultOptionsSyncEveryCommit(t *testing.T) {
	tests := []struct {
		name       string
		opts       Options
		wantNoSync bool
	}{
		{"zero Options", Options{}, false},
		{"defaults spelled out", Options{MaxBatch: DefaultMaxBatch, CheckpointEvery: 1}, false},
		{"NoSync opted in", Options{NoSync: true}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(filepath.Join(t.TempDir(), "hub.db"), tt.opts)
			require.NoError(t, err)
			defer func() { require.NoError(t, s.Close()) }()

			check := func(when string) {
				t.Helper()
				assert.Equal(t, tt.wantNoSync, s.db.NoSync, "%s: bbolt's NoSync (a commit without fdatasync)", when)
				assert.False(t, s.db.NoGrowSync, "%s: bbolt's NoGrowSync (growing the file without fsync)", when)
			}
			check("after Open")

			// The committer must not change that on the way: write
			// through it (an append, an ack, a checkpoint) and look again.
			conv := store.DirectConv("a", "b")
			_, _, err = s.Append(t.Context(), store.AppendRequest{
				Msg:     store.Message{ID: "m1", Conv: conv, Cmd: 10, From: "a", To: "b", Body: []byte("{}")},
				Pending: []string{"b"},
				CID:     "c1",
			})
			require.NoError(t, err)
			require.NoError(t, s.Ack(t.Context(), "b", "m1"))
			check("after commits")
		})
	}
}
