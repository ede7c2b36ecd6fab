package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/client"
	"github.com/wshub/wshub/hubtest"
)

func TestClient_TypingReachesThePeerAsAMessage(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice := dial(t, srv.URL, "alice", client.Options{})
	bob := dial(t, srv.URL, "bob", client.Options{})
	ctx := context.Background()

	require.NoError(t, alice.Typing(ctx, "bob", false))
	f := recv(t, bob)
	assert.Equal(t, &wshub.Frame{Cmd: wshub.CmdTyping, UserID: "alice", DstID: "bob"}, f)
	assert.Zero(t, alice.Pending(), "nothing waits for an answer")

	_, err := alice.Join(ctx, "r")
	require.NoError(t, err)
	_, err = bob.Join(ctx, "r")
	require.NoError(t, err)
	require.NoError(t, alice.Typing(ctx, "r", true))
	f = recv(t, bob)
	assert.Equal(t, &wshub.Frame{Cmd: wshub.CmdTyping, UserID: "alice", DstID: "r", Room: true}, f)

	// A message sent after the typing frames comes next: nothing else
	// reached bob, and alice got no copy of her own typing.
	send(t, alice, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "bob", Content: "hi"})
	assert.Equal(t, "hi", recv(t, bob).Content)
	select {
	case f := <-alice.Messages():
		t.Fatalf("alice got %+v", f)
	default:
	}
}

func TestClient_TypingInARoomOfOthersIsRefused(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	var ev events
	carol := dial(t, srv.URL, "carol", ev.options(client.Options{}))
	require.NoError(t, carol.Typing(context.Background(), "r", true), "fire and forget: the refusal comes later")
	require.Eventually(t, func() bool { return ev.hasErr(wshub.ErrNotMember) }, wait, 10*time.Millisecond)
}

func TestClient_TypingIsNotKeptForALaterConnection(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	c, err := client.New(srv.URL, client.Options{Token: "alice"})
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, c.Typing(ctx, "bob", false), "no connection: dropped without an error")
	assert.Zero(t, c.Pending(), "not queued in the outbox")
	assert.ErrorIs(t, c.Typing(ctx, "", false), wshub.ErrMissingDst)

	require.NoError(t, c.Close())
	assert.ErrorIs(t, c.Typing(ctx, "bob", false), client.ErrClosed)
}
