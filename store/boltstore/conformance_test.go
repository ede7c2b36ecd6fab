package boltstore_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/boltstore"
	"github.com/wshub/wshub/store/storetest"
)

func TestBoltStore_Conformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s, err := boltstore.Open(filepath.Join(t.TempDir(), "hub.db"), boltstore.Options{})
		require.NoError(t, err)
		return s
	})
}

func TestBoltStore_Durable(t *testing.T) {
	storetest.RunDurable(t, func(t *testing.T, dir string) store.Store {
		s, err := boltstore.Open(filepath.Join(dir, "hub.db"), boltstore.Options{})
		require.NoError(t, err)
		return s
	})
}
