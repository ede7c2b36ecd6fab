package wshub_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
)

func TestHub_TypingDirectReachesEveryConnectionOfThePeer(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice1, alice2 := srv.Dial(t, "alice"), srv.Dial(t, "alice")
	bob1, bob2 := srv.Dial(t, "bob"), srv.Dial(t, "bob")
	carol := srv.Dial(t, "carol")

	alice1.Send(t, &wshub.Frame{Cmd: wshub.CmdTyping, DstID: "bob"})
	for _, c := range []*hubtest.Conn{bob1, bob2} {
		f := c.Expect(t, wshub.CmdTyping)
		assert.Equal(t, &wshub.Frame{Cmd: wshub.CmdTyping, UserID: "alice", DstID: "bob"}, f)
	}
	// No receipt, no reply, no copy to the sender's other connections or
	// to anyone else.
	for _, c := range []*hubtest.Conn{alice1, alice2, bob1, bob2, carol} {
		c.ExpectNothing(t)
	}
}

func TestHub_TypingInRoomReachesMembersButTheSendingConnection(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	ctx := context.Background()
	require.NoError(t, srv.Hub.Join(ctx, "alice", "r"))
	require.NoError(t, srv.Hub.Join(ctx, "bob", "r"))
	alice1, alice2 := srv.Dial(t, "alice"), srv.Dial(t, "alice")
	bob, carol := srv.Dial(t, "bob"), srv.Dial(t, "carol")

	alice1.SendRaw(t, `{"cmd":22,"dstid":"r","room":true}`)
	for _, c := range []*hubtest.Conn{alice2, bob} {
		f := c.Expect(t, wshub.CmdTyping)
		assert.Equal(t, &wshub.Frame{Cmd: wshub.CmdTyping, UserID: "alice", DstID: "r", Room: true}, f)
	}
	for _, c := range []*hubtest.Conn{alice1, alice2, bob, carol} {
		c.ExpectNothing(t)
	}

	// A non-member may not type in the room.
	carol.Send(t, &wshub.Frame{Cmd: wshub.CmdTyping, CID: "t1", DstID: "r", Room: true})
	e := carol.Expect(t, wshub.CmdError)
	assert.Equal(t, 403, e.Code)
	assert.Equal(t, "t1", e.CID)
	for _, c := range []*hubtest.Conn{alice1, alice2, bob} {
		c.ExpectNothing(t)
	}
}

func TestHub_TypingIsNotQueuedForAnOfflinePeer(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice := srv.Dial(t, "alice")
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdTyping, DstID: "bob"})
	alice.ExpectNothing(t) // dispatched, no error, no receipt

	bob := srv.Dial(t, "bob")
	bob.ExpectNothing(t)
	pending, err := srv.Hub.Store().Pending(context.Background(), "bob")
	require.NoError(t, err)
	assert.Empty(t, pending)
}

func TestHub_TypingOverTheRateIsDroppedSilently(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice, bob := srv.Dial(t, "alice"), srv.Dial(t, "bob")
	for range 10 {
		alice.Send(t, &wshub.Frame{Cmd: wshub.CmdTyping, DstID: "bob"})
	}
	alice.ExpectNothing(t) // no error frame for the dropped ones

	// Every typing frame alice's ten produced was queued for bob before
	// alice's pong: they all come before bob's pong.
	bob.Send(t, &wshub.Frame{Cmd: wshub.CmdPing})
	got := 0
	for {
		f := bob.Recv(t)
		if f.Cmd == wshub.CmdPong {
			break
		}
		require.Equal(t, wshub.CmdTyping, f.Cmd)
		got++
	}
	assert.GreaterOrEqual(t, got, 1)
	assert.LessOrEqual(t, got, 5, "at most the burst of 5 passes at once")
}

func TestHub_TypingBadDstID(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice := srv.Dial(t, "alice")
	for _, f := range []*wshub.Frame{
		{Cmd: wshub.CmdTyping, CID: "none"},
		{Cmd: wshub.CmdTyping, CID: "none-room", Room: true},
		{Cmd: wshub.CmdTyping, CID: "long", DstID: strings.Repeat("b", wshub.MaxIDLen+1)},
	} {
		alice.Send(t, f)
		e := alice.Expect(t, wshub.CmdError)
		assert.Equal(t, 400, e.Code, f.CID)
		assert.Equal(t, f.CID, e.CID)
	}
}
