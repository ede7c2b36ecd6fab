package redisstore_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wshub/wshub/store"
	"github.com/wshub/wshub/store/redisstore"
)

// TestSignal_RoundTrip: a Signal of one Store reaches the subscribers of
// every Store of the prefix, its own included, with its fields intact,
// in feed order with the other announcements; it stores nothing.
func TestSignal_RoundTrip(t *testing.T) {
	prefix := newPrefix("signal")
	a, client := newStore(t, redisstore.Options{Prefix: prefix})
	b, _ := newStore(t, redisstore.Options{Prefix: prefix})
	subA, subB := subscribe(t, a), subscribe(t, b)
	ctx := t.Context()
	for _, st := range []*redisstore.Store{a, b} {
		require.NoError(t, st.Follow(ctx, []string{"alice", "b\x00b", "carol", "dave"}, []string{"room:1", "room:2"}, true))
	}

	sigs := []store.Signal{
		{Users: []string{"alice", "b\x00b"}, Room: "room:1", Origin: "conn-7", Data: []byte(`{"cmd":20,"typing":true}` + "\x00\xff")},
		{Room: "room:2", Data: []byte("x")},
		{Users: []string{"carol"}},
	}
	require.NoError(t, a.Signal(ctx, sigs[0]))
	require.NoError(t, a.Join(ctx, "room:2", "dave"))
	require.NoError(t, b.Signal(ctx, sigs[1]))
	require.NoError(t, a.Signal(ctx, store.Signal{Data: []byte("to nobody")}), "nobody: nothing published")
	require.NoError(t, b.Signal(ctx, sigs[2]))
	// A signal is announced on the channel of each of its users and of its
	// room, each copy naming only that one.
	want := []store.Event{
		{Kind: store.EventSignal, Signal: store.Signal{Users: []string{"alice"}, Origin: "conn-7", Data: sigs[0].Data}},
		{Kind: store.EventSignal, Signal: store.Signal{Users: []string{"b\x00b"}, Origin: "conn-7", Data: sigs[0].Data}},
		{Kind: store.EventSignal, Signal: store.Signal{Room: "room:1", Origin: "conn-7", Data: sigs[0].Data}},
		{Kind: store.EventJoin, Room: "room:2", User: "dave"},
		{Kind: store.EventSignal, Signal: sigs[1]},
		{Kind: store.EventSignal, Signal: sigs[2]},
	}
	assert.Equal(t, want, withoutSentinels(subA.sentinel(t, b)))
	assert.Equal(t, want, withoutSentinels(subB.sentinel(t, a)))
	for _, k := range keysWithPrefix(t, client, prefix) {
		assert.NotContains(t, k, "room:1", "a signal stores nothing")
	}
}

// TestFeed_MalformedSignalOrPresenceBreaksSubscribe: a signal or presence
// announcement that is truncated or malformed is ErrCorrupt, like any
// other foreign payload; well-formed ones written by hand decode.
func TestFeed_MalformedSignalOrPresenceBreaksSubscribe(t *testing.T) {
	for _, payload := range []string{
		"s", "s\x01", "s\x01\x05ab", "s\x01\x00\x00\x00", // truncated, empty user
		"s\x00\x00\x00", "s\x00\x00", "s\x02\x01a\x00\x00", "s\x01\x01a\x00", "s\x01\x01a\x00\x05ab", "s\xff\xff\xff\xff",
		"p", "p1", "p1\x05", "p2\x05alice", "p1\xff\xff", "p\x00\x05alice",
	} {
		t.Run(fmt.Sprintf("%q", payload), func(t *testing.T) {
			prefix := newPrefix("foreign")
			s, client := newStore(t, redisstore.Options{Prefix: prefix})
			sub := subscribe(t, s)
			require.NoError(t, client.SPublish(t.Context(), prefix+"{presence}", payload).Err())
			err := sub.result(t)
			assert.ErrorIs(t, err, redisstore.ErrCorrupt)
			assert.ErrorIs(t, err, redisstore.ErrFeedBroken)
		})
	}

	prefix := newPrefix("handmade")
	s, client := newStore(t, redisstore.Options{Prefix: prefix})
	sub := subscribe(t, s)
	for _, payload := range []string{"p1\x05alice", "p0\xac\x02bob", "s\x01\x01a\x00\x00", "s\x00\x01r\x01o\x00\xff"} {
		require.NoError(t, client.SPublish(t.Context(), prefix+"{presence}", payload).Err())
	}
	assert.Equal(t, []store.Event{
		{Kind: store.EventPresence, User: "alice", Online: true, TS: 5},
		{Kind: store.EventPresence, User: "bob", Online: false, TS: 300},
		{Kind: store.EventSignal, Signal: store.Signal{Users: []string{"a"}}},
		{Kind: store.EventSignal, Signal: store.Signal{Room: "r", Origin: "o", Data: []byte("\x00\xff")}},
	}, sub.sentinel(t, s))
}
