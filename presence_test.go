package wshub_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub"
	"github.com/wshub/wshub/hubtest"
)

// forEachPresenceStore runs fn as a subtest on a hub over each store of
// this module, with opts (and a short PresenceInterval unless opts sets
// one).
func forEachPresenceStore(t *testing.T, opts wshub.Options, fn func(t *testing.T, srv *hubtest.Server)) {
	for _, s := range inboxStores {
		t.Run(s.name, func(t *testing.T) {
			st := s.open(t)
			t.Cleanup(func() { assert.NoError(t, st.Close()) }) // after the hub's Shutdown
			o := opts
			o.Store = st
			o.Logger = slog.New(slog.DiscardHandler)
			if o.PresenceInterval == 0 {
				o.PresenceInterval = 20 * time.Millisecond
			}
			fn(t, hubtest.New(t, o))
		})
	}
}

// presenceOf returns "user:online" for each item of a cmd 21 reply.
func presenceOf(t *testing.T, f *wshub.Frame) []string {
	t.Helper()
	var out []string
	for _, it := range f.Items {
		require.Equal(t, wshub.CmdPresence, it.Cmd)
		require.NotNil(t, it.Online, "cmd 21 items always carry online")
		out = append(out, fmt.Sprintf("%s:%v", it.UserID, *it.Online))
	}
	return out
}

// nextPresence returns the next cmd 21 transition, skipping pongs.
func nextPresence(t *testing.T, c *hubtest.Conn) string {
	t.Helper()
	f := c.Expect(t, wshub.CmdPresence)
	require.Empty(t, f.Items, "a transition, not a reply")
	require.NotNil(t, f.Online)
	assert.Positive(t, f.TS)
	return fmt.Sprintf("%s:%v", f.UserID, *f.Online)
}

func TestHub_PresenceWatchAnswersStatesThenTransitions(t *testing.T) {
	forEachPresenceStore(t, wshub.Options{}, func(t *testing.T, srv *hubtest.Server) {
		bob := srv.Dial(t, "bob")
		alice := srv.Dial(t, "alice")

		alice.SendRaw(t, `{"cmd":21,"cid":"w1","ids":["bob","carol","bob"]}`)
		reply := alice.Expect(t, wshub.CmdPresence)
		assert.Equal(t, "w1", reply.CID)
		assert.Equal(t, []string{"bob:true", "carol:false"}, presenceOf(t, reply), "in the order asked, once each")

		// carol's first connection is a transition, her second is not.
		carol1 := srv.Dial(t, "carol")
		assert.Equal(t, "carol:true", nextPresence(t, alice))
		carol2 := srv.Dial(t, "carol")
		carol1.WS.Close()
		require.Eventually(t, func() bool { return len(srv.Hub.Conns("carol")) == 1 }, hubtest.Timeout, time.Millisecond)
		alice.ExpectNothing(t)

		// Her last connection closing is; so is bob's, who is watched too.
		carol2.WS.Close()
		assert.Equal(t, "carol:false", nextPresence(t, alice))
		bob.WS.Close()
		assert.Equal(t, "bob:false", nextPresence(t, alice))
		// Nobody else heard anything: presence goes to watchers only.
		alice.ExpectNothing(t)
	})
}

func TestHub_PresenceOfflineIsSentAsFalse(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{PresenceInterval: 10 * time.Millisecond})
	alice := srv.Dial(t, "alice")
	alice.SendRaw(t, `{"cmd":21,"ids":["bob"]}`)
	assert.Contains(t, rawNext(t, alice), `"userid":"bob","online":false`, "online:false is written out, not left out as empty")
	bob := srv.Dial(t, "bob")
	assert.Contains(t, rawNext(t, alice), `"userid":"bob","ts":`)
	bob.WS.Close()
	assert.Contains(t, rawNext(t, alice), `"online":false}`)
}

func TestHub_PresenceWatchReplacesThePreviousList(t *testing.T) {
	forEachPresenceStore(t, wshub.Options{}, func(t *testing.T, srv *hubtest.Server) {
		alice := srv.Dial(t, "alice")
		alice.Send(t, &wshub.Frame{Cmd: wshub.CmdPresence, IDs: []string{"bob"}})
		alice.Expect(t, wshub.CmdPresence)
		alice.Send(t, &wshub.Frame{Cmd: wshub.CmdPresence, IDs: []string{"carol"}})
		assert.Equal(t, []string{"carol:false"}, presenceOf(t, alice.Expect(t, wshub.CmdPresence)))

		srv.Dial(t, "bob") // no longer watched
		srv.Dial(t, "carol")
		assert.Equal(t, "carol:true", nextPresence(t, alice))
		alice.ExpectNothing(t)

		// An empty list watches nobody.
		alice.SendRaw(t, `{"cmd":21,"ids":[]}`)
		assert.Empty(t, alice.Expect(t, wshub.CmdPresence).Items)
		srv.Dial(t, "dave")
		srv.Dial(t, "carol")
		alice.ExpectNothing(t)
	})
}

func TestHub_PresenceAWatcherThatLeftGetsNothingAndOthersStillDo(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{PresenceInterval: 10 * time.Millisecond})
	alice1, alice2 := srv.Dial(t, "alice"), srv.Dial(t, "alice")
	for _, c := range []*hubtest.Conn{alice1, alice2} {
		c.Send(t, &wshub.Frame{Cmd: wshub.CmdPresence, IDs: []string{"bob"}})
		c.Expect(t, wshub.CmdPresence)
	}
	alice1.WS.Close()
	require.Eventually(t, func() bool { return len(srv.Hub.Conns("alice")) == 1 }, hubtest.Timeout, time.Millisecond)
	srv.Dial(t, "bob")
	assert.Equal(t, "bob:true", nextPresence(t, alice2))
}

// A storm of reconnects announces at most one transition per
// PresenceInterval: what a watcher receives is bounded by time, not by
// the number of flaps.
func TestHub_PresenceCoalescesFlaps(t *testing.T) {
	const interval = 300 * time.Millisecond
	forEachPresenceStore(t, wshub.Options{PresenceInterval: interval}, func(t *testing.T, srv *hubtest.Server) {
		alice := srv.Dial(t, "alice")
		alice.Send(t, &wshub.Frame{Cmd: wshub.CmdPresence, IDs: []string{"bob", "carol"}})
		alice.Expect(t, wshub.CmdPresence)

		const flaps = 40
		start := time.Now()
		for range flaps {
			bob := srv.Dial(t, "bob")
			bob.WS.Close()
			require.Eventually(t, func() bool { return !srv.Hub.IsOnline("bob") }, hubtest.Timeout, time.Millisecond)
		}
		storm := time.Since(start)
		srv.Dial(t, "carol") // a marker: its transition comes after bob's

		bobs := 0
		for {
			p := nextPresence(t, alice)
			if strings.HasPrefix(p, "carol:") {
				break
			}
			bobs++
		}
		// Each interval announces bob at most once; the storm spans at most
		// storm/interval + 1 intervals, +1 for the one carol's is in.
		bound := int(storm/interval) + 2
		t.Logf("%d flaps in %v: %d transitions announced (bound %d)", flaps, storm, bobs, bound)
		assert.LessOrEqual(t, bobs, min(bound, 2*flaps))
		assert.Less(t, bobs, 2*flaps, "not one per flap")
	})
}

func TestHub_PresenceRoomListsMembersToMembersOnly(t *testing.T) {
	forEachPresenceStore(t, wshub.Options{}, func(t *testing.T, srv *hubtest.Server) {
		ctx := context.Background()
		for _, u := range []string{"alice", "bob", "dave"} {
			require.NoError(t, srv.Hub.Join(ctx, u, "r"))
		}
		alice := srv.Dial(t, "alice")
		srv.Dial(t, "dave")
		carol := srv.Dial(t, "carol")

		alice.SendRaw(t, `{"cmd":21,"cid":"m","dstid":"r","room":true}`)
		reply := alice.Expect(t, wshub.CmdPresence)
		assert.Equal(t, "m", reply.CID)
		assert.Equal(t, "r", reply.DstID)
		assert.True(t, reply.Room)
		assert.ElementsMatch(t, []string{"alice:true", "bob:false", "dave:true"}, presenceOf(t, reply))

		// Listing does not watch.
		srv.Dial(t, "bob")
		alice.ExpectNothing(t)

		carol.SendRaw(t, `{"cmd":21,"cid":"x","dstid":"r","room":true}`)
		e := carol.Expect(t, wshub.CmdError)
		assert.Equal(t, 403, e.Code)
		assert.Equal(t, "x", e.CID)
	})
}

func TestHub_PresenceBadRequests(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	alice := srv.Dial(t, "alice")
	ids := make([]string, wshub.MaxWatch+1)
	for i := range ids {
		ids[i] = fmt.Sprint("u", i)
	}
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdPresence, CID: "big", IDs: ids})
	e := alice.Expect(t, wshub.CmdError)
	assert.Equal(t, 400, e.Code)
	assert.Equal(t, "big", e.CID)

	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdPresence, CID: "long", IDs: []string{strings.Repeat("x", wshub.MaxIDLen+1)}})
	e = alice.Expect(t, wshub.CmdError)
	assert.Equal(t, 400, e.Code)
	assert.Equal(t, "long", e.CID)

	alice.SendRaw(t, `{"cmd":21,"cid":"noroom","room":true}`)
	e = alice.Expect(t, wshub.CmdError)
	assert.Equal(t, 400, e.Code)

	// MaxWatch ids are fine.
	alice.Send(t, &wshub.Frame{Cmd: wshub.CmdPresence, IDs: ids[:wshub.MaxWatch]})
	assert.Len(t, alice.Expect(t, wshub.CmdPresence).Items, wshub.MaxWatch)
}

func TestHub_OnlineReportsThisHubsUsers(t *testing.T) {
	srv := hubtest.New(t, wshub.Options{})
	srv.Dial(t, "bob")
	got, err := srv.Hub.Online(context.Background(), "alice", "bob")
	require.NoError(t, err)
	assert.Equal(t, []bool{false, true}, got)
	_, err = srv.Hub.Online(context.Background(), "")
	assert.ErrorIs(t, err, wshub.ErrBadID)
}
