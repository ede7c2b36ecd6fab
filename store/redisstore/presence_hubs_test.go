package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
)

// startPresenceHubs starts n hubs sharing a fresh prefix, with a short
// presence interval and lease, and waits until each one's feed is
// subscribed.
func startPresenceHubs(t *testing.T, n int) []*hubtest.Server {
	t.Helper()
	return startHubsWith(t, n, wshub.Options{PresenceInterval: 20 * time.Millisecond, PresenceTTL: 3 * time.Second})
}

// transition returns the next cmd 21 transition on c as "user:online".
func transition(t *testing.T, c *hubtest.Conn) string {
	t.Helper()
	f := c.Expect(t, wshub.CmdPresence)
	require.Empty(t, f.Items)
	require.NotNil(t, f.Online)
	assert.Positive(t, f.TS)
	if *f.Online {
		return f.UserID + ":true"
	}
	return f.UserID + ":false"
}

func TestHubs_PresenceAcrossHubs(t *testing.T) {
	hubs := startPresenceHubs(t, 2)
	alice := dial(t, hubs[0], "alice")
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdPresence, IDs: []string{"bob", "carol", "dave"}})
	r := alice.Expect(t, wshub.CmdPresence)
	require.Len(t, r.Items, 3)
	assert.False(t, *r.Items[0].Online)

	bob1 := dial(t, hubs[1], "bob")
	assert.Equal(t, "bob:true", transition(t, alice), "a connection on the other process")
	// Hub.Online spans processes. (alice's own connect is reported by hub
	// 0 within its presence interval: wait for it, bounded.)
	require.Eventually(t, func() bool {
		online, err := hubs[0].Hub.Online(context.Background(), "bob", "alice", "carol")
		return err == nil && online[0] && online[1] && !online[2]
	}, waitBound, 5*time.Millisecond, "Hub.Online: bob and alice online, carol not")

	// A second connection of bob's on this process. Each hub reports its
	// changes in order, in one stream: carol's transition, which hub 0
	// marked after bob's connection, says hub 0 has reported bob.
	bob0 := dial(t, hubs[0], "bob")
	dial(t, hubs[0], "carol")
	assert.Equal(t, "carol:true", transition(t, alice), "bob was online already: nothing about him")

	// bob's connection on hub 1 closing is no transition: he is still on
	// hub 0. dave's transition, marked by hub 1 after bob left it, comes
	// after anything hub 1 would have announced about bob.
	bob1.WS.Close()
	require.Eventually(t, func() bool { return !hubs[1].Hub.IsOnline("bob") }, waitBound, time.Millisecond)
	dial(t, hubs[1], "dave")
	assert.Equal(t, "dave:true", transition(t, alice), "bob is still online on hub 0: nothing about him")

	bob0.WS.Close()
	assert.Equal(t, "bob:false", transition(t, alice))
	// And nothing more about him: a wrong announcement above would show
	// here, before carol's.
	carol := hubs[0].Hub.Conns("carol")
	require.Len(t, carol, 1)
	carol[0].Close(1000, "bye")
	assert.Equal(t, "carol:false", transition(t, alice))
}

func TestHubs_TypingAndReadEventsCrossHubs(t *testing.T) {
	hubs := startPresenceHubs(t, 2)
	alice := dial(t, hubs[0], "alice")
	bob := dial(t, hubs[1], "bob")
	alice2 := dial(t, hubs[1], "alice")

	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdTyping, DstID: "bob"})
	f := bob.Expect(t, wshub.CmdTyping)
	assert.Equal(t, "alice", f.UserID)
	assert.Equal(t, "bob", f.DstID)

	// A room with members on both hubs.
	join(t, alice, "r")
	join(t, bob, "r")
	join(t, alice2, "r")
	bob.Send(t, &wshub.Frame{Cmd: wshub.CmdTyping, DstID: "r", Room: true})
	for _, c := range []*hubtest.Conn{alice, alice2} {
		f := c.Expect(t, wshub.CmdTyping)
		assert.Equal(t, "bob", f.UserID)
		assert.True(t, f.Room)
	}
	bob.ExpectNothing(t) // not to the sending connection

	// A read marker: the peer and the reader's other device hear it,
	// across hubs.
	bob.Send(t, &wshub.Frame{Cmd: wshub.CmdSingle, DstID: "alice", CID: "m1", Content: "hi"})
	seq := bob.Expect(t, wshub.CmdReceipt).Seq
	for _, c := range []*hubtest.Conn{alice, alice2} {
		assert.Equal(t, "hi", c.Expect(t, wshub.CmdSingle).Content)
	}
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdRead, DstID: "bob", Seq: seq})
	for _, c := range []*hubtest.Conn{bob, alice2} {
		f := c.Expect(t, wshub.CmdRead)
		assert.Equal(t, "alice", f.UserID)
		assert.Equal(t, "bob", f.DstID)
		assert.Equal(t, seq, f.Seq)
	}
	alice.ExpectNothing(t)
}
