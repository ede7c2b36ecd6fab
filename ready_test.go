package wshub_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
)

// TestHub_ReadyWithoutFeedUntilShutdown: a hub whose store has no feed is
// ready from New until Shutdown; WaitReady then returns ErrClosed. (A
// store with a feed: store/redisstore's tests.)
func TestHub_ReadyWithoutFeedUntilShutdown(t *testing.T) {
	h, err := wshub.New(wshub.Options{Authenticate: wshub.DevAuthenticate})
	require.NoError(t, err)
	assert.True(t, h.Ready())
	require.NoError(t, h.WaitReady(t.Context()))

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	require.NoError(t, h.Shutdown(ctx))
	assert.False(t, h.Ready())
	assert.ErrorIs(t, h.WaitReady(t.Context()), wshub.ErrClosed)
}
